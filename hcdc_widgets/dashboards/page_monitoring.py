"""The instrument-monitoring dashboard (widgets around :mod:`hcdc.dashboards.monitoring`)."""

from __future__ import annotations

import ipywidgets as w

from hcdc.dashboards.config import contrast_column
from hcdc.dashboards.context import reader_session
from hcdc.dashboards.monitoring import MonitoringData, build_monitoring
from hcdc.dashboards.queries import Filters, filter_choices

from . import figures
from .embed import document_html
from .ui import Column, FilterBar, Page, cards, esc, message, plural, section, table


class MonitoringPage(Page):
    title = "Instrument monitoring"
    name = "monitoring"

    def build(self) -> w.Widget:
        with reader_session(self.catalog, self.principal) as session:
            choices = filter_choices(session, self.principal)
        if choices.n_observations == 0:
            with self.catalog.session() as session:
                from sqlalchemy import func, select

                from hcdc.catalog.models import Observation

                total = session.scalar(select(func.count(Observation.id))) or 0
            text = (
                "The catalog has no observation yet: ingest raw data (<code>hcdc ingest DIR</code>) and the "
                "trends appear here."
                if total == 0
                else f"None of the catalog's {total} observations is visible to you yet (proprietary data of other "
                f"programmes)."
            )
            return w.HTML(message(text, "empty", key="empty"))
        self.summary = w.HTML()
        self.flags = w.HTML()
        self.conditions = w.HTML()
        self.detector = w.HTML()
        self.instrument = w.HTML()
        self.contrast = w.HTML()
        self.recent = w.HTML()
        self.plots = w.HTML(layout=w.Layout(display="none"))  # the shared bokeh document (set last)
        self.filter_bar = FilterBar(choices, self.refresh)
        separations = ", ".join(f'{s:g}"' for s in self.settings.contrast_separations_arcsec)
        page = w.VBox(
            [
                self.filter_bar.widget,
                self.summary,
                section(
                    "Flagged nights",
                    self.flags,
                    key="flags",
                    note="Each night is compared with a rolling baseline of the preceding nights "
                    f"({self.settings.baseline.nights} nights; thresholds in the dashboards configuration).",
                ),
                section(
                    "Achieved contrast against the conditions",
                    self.contrast,
                    key="contrast",
                    note=f"5σ contrast at {separations} from the latest detection limit of each observation. "
                    "Against time (red: night flagged), and against seeing and coherence time "
                    "(colour: the night's verdict — orange atmosphere, red instrument).",
                ),
                section(
                    "Observing conditions",
                    self.conditions,
                    key="conditions",
                    note="Red: night flagged against the rolling baseline (grey dashed line).",
                ),
                section(
                    "Detector health (reduced calibrations)",
                    self.detector,
                    key="detector",
                    note="Master darks ●, backgrounds ■, flats ▲; red: night flagged for that series.",
                ),
                section("Star centring and rejected frames", self.instrument, key="instrument"),
                section("Latest observations", self.recent, key="recent"),
                self.plots,
            ],
            layout=w.Layout(width="100%"),
        )
        self.refresh(Filters())
        return page

    def refresh(self, filters: Filters) -> None:
        self.summary.value = message("Loading…", "info")

        def run():
            with reader_session(self.catalog, self.principal) as session:
                data = build_monitoring(session, self.principal, filters, self.settings)
            self.render(data)

        self.guard("load the monitoring data", run, target=self.summary)

    # -- rendering ------------------------------------------------------------------------------

    def render(self, data: MonitoringData) -> None:
        obs = data.observations
        n_nights = obs["night"].nunique() if len(obs) else 0
        columns = data.contrast_columns()
        with_contrast = int(obs[columns].notna().any(axis=1).sum()) if len(obs) else 0
        items = [
            (len(obs), "observations", "n_observations"),
            (n_nights, "nights", "n_nights"),
            (len(data.calibrations), "reduced calibrations", "n_calibrations"),
            (with_contrast, "with a contrast curve", "n_with_contrast"),
            (len(data.flagged), "flagged nights", "n_flagged"),
        ]
        notes = "".join(message(esc(n), "info", key="note") for n in data.notes)
        if not len(obs):
            notes += message(
                f"No observation matches the filters ({esc(data.filters.describe())}).", "empty", key="no-match"
            )
        self.flags.value = self._flags_html(data)
        # one bokeh document for the four sections: the observations travel once
        diagnosis = (
            obs["night"]
            .map(dict(zip(data.flagged["night"], data.flagged["diagnosis"])) if len(data.flagged) else {})
            .fillna("")
        )
        has = {
            "contrast": len(obs) > 0 and any(obs[c].notna().any() for c in columns),
            "conditions": len(obs) > 0,
            "detector": len(data.calibrations) > 0,
            "instrument": len(obs) > 0 and obs["n_frames"].notna().any(),
        }
        empty = {
            "contrast": "No detection limit yet for these observations.",
            "conditions": "No observation in this selection.",
            "detector": "No reduced calibration yet for this selection (they are written by pre-processing).",
            "instrument": "No pre-processed cube yet for these observations.",
        }
        roots = {}
        if len(obs):
            source = figures.monitoring_source(
                obs, data.verdicts, data.separations, diagnosis, max_points=self.settings.max_plot_points
            )
            if figures.is_nightly(source):
                notes += message(
                    f"{len(obs):,} observations on {n_nights:,} nights: the plots show one point per night (its "
                    f"median; a bar over its range; red: the night is flagged). Narrow the filters to fewer than "
                    f"{self.settings.max_plot_points:,} observations to see each one; the table and the exports "
                    f"hold every observation.",
                    "info",
                    key="nightly",
                )
            if has["contrast"]:
                roots["contrast"] = figures.contrast_layout(obs, data.verdicts, data.separations, diagnosis, source)
            roots["conditions"] = figures.conditions_layout(obs, data.verdicts, source)
            if has["instrument"]:
                roots["instrument"] = figures.instrument_layout(obs, data.verdicts, source)
        if has["detector"]:
            roots["detector"] = figures.detector_layout(data.calibrations, data.verdicts)
        places, payload = document_html(roots) if roots else ({}, "")
        for name, widget in (
            ("contrast", self.contrast),
            ("conditions", self.conditions),
            ("detector", self.detector),
            ("instrument", self.instrument),
        ):
            widget.value = places.get(name) or message(esc(empty[name]), "empty", key=f"empty-{name}")
        if data.calibrations_without_night:
            self.detector.value += message(
                f"{plural(data.calibrations_without_night, 'reduced calibration')} without "
                f"a night (bad-pixel maps) are not trended.",
                "info",
            )
        self.recent.value = self._recent_html(data)
        self.plots.value = payload  # after every placeholder: the plots are drawn now
        self.summary.value = cards(items) + notes  # last: when the numbers show, everything else is there

    def _flags_html(self, data: MonitoringData) -> str:
        if data.flagged.empty:
            evaluated = int((data.verdicts["basis"] != "none").sum()) if len(data.verdicts) else 0
            if evaluated == 0:
                return message(
                    "No night could be compared with a baseline yet (too few nights).", "info", key="no-flags"
                )
            return message("No night stands out against its rolling baseline.", "ok", key="no-flags")
        rows = []
        for _, row in data.flagged.sort_values("night", ascending=False).iterrows():
            reasons = "".join(f"<li>{esc(r)}</li>" for r in row["reasons"])
            rows.append(
                f'<tr data-night="{row["night"].isoformat()}"><td data-col="night">{row["night"].isoformat()}'
                f'</td><td data-col="diagnosis"><b>{esc(row["diagnosis"])}</b></td>'
                f'<td data-col="categories">{esc(row["categories"])}</td>'
                f'<td data-col="reasons"><ul>{reasons}</ul></td></tr>'
            )
        return (
            f'<div class="hcdc-table-wrap"><table class="hcdc-table" data-hcdc="flagged-nights" '
            f'data-rows="{len(rows)}"><thead><tr><th>night</th><th>verdict</th><th>what</th><th>why</th></tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
        )

    def _recent_html(self, data: MonitoringData) -> str:
        obs = data.observations
        if obs.empty:
            return message("No observation in this selection.", "empty")
        latest = obs.sort_values(["time", "id"], ascending=False)
        flags = data.flag_of_observations().reindex(latest.index)
        latest = latest.assign(flagged=flags.values)
        columns = [
            Column("night", "night"),
            Column("key", "observation"),
            Column("target", "target"),
            Column("instrument", "instrument"),
            Column("mode", "mode"),
            Column("filter", "filter"),
            Column("seeing_arcsec", 'seeing ["]', ".2f"),
            Column("tau0_ms", "τ0 [ms]", ".1f"),
            Column("airmass", "airmass", ".2f"),
            Column("wind_speed_ms", "wind [m/s]", ".1f"),
        ]
        for separation in data.separations:
            columns.append(Column(contrast_column(separation), f'contrast {separation:g}"', ".2e"))
        columns += [Column("rejected_fraction", "rejected", ".0%"), Column("flagged", "night flagged for")]
        return table(latest, columns, key="observations", max_rows=self.settings.table_rows)
