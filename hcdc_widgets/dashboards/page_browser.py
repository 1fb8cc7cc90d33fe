"""The catalog browser: targets, their observations, detections and contrast curves; reports; exports.

Only what the viewer may see is listed (every query goes through
:mod:`hcdc.access`); the exports hold exactly the current selection.
"""

from __future__ import annotations

from datetime import date

import ipywidgets as w
import pandas as pd

from hcdc.dashboards.context import reader_session
from hcdc.dashboards.queries import (
    detection_spectra,
    filter_choices,
    observation_detail,
    target_detections,
    target_limits,
    target_observations,
    targets_frame,
)
from hcdc.dashboards.reference import load_curves
from hcdc.settings import get_settings

from . import figures
from .embed import plot_html
from .ui import (
    Column,
    FilterBar,
    Page,
    cards,
    download_link,
    esc,
    first_line,
    fmt,
    link,
    message,
    plural,
    reduction_url,
    section,
    table,
)

SCOPES = (
    ("targets in the list", "targets"),
    ("observations of the target", "observations"),
    ("detections of the target", "detections"),
    ("detection limits of the target", "limits"),
    ("sources of the target (across epochs)", "sources"),
)


class BrowserPage(Page):
    title = "Catalog browser"
    name = "browser"

    def build(self) -> w.Widget:
        with reader_session(self.catalog, self.principal) as session:
            choices = filter_choices(session, self.principal)
        if choices.n_observations == 0:
            return w.HTML(
                message(
                    "There is no observation you may see in the catalog yet (it is empty, or holds "
                    "only proprietary data of other programmes).",
                    "empty",
                    key="empty",
                )
            )
        self.targets = pd.DataFrame()
        self.observations = pd.DataFrame()
        self.detections = pd.DataFrame()
        self.spectra = pd.DataFrame()
        self.spectra_plot = w.HTML()
        self.limits = (pd.DataFrame(), pd.DataFrame())
        self.reference_curves, problems = load_curves(get_settings().reference_data, self.settings.reference_curves)
        self.filter_bar = FilterBar(choices, lambda _f: self.refresh_targets())
        self.search = w.Text(placeholder="name or alias", description="Search", layout=w.Layout(width="260px"))
        self.search.style.description_width = "70px"
        self.search.add_class("hcdc-search")
        self.search.observe(lambda _c: self.refresh_targets(), names="value")
        self.target_list = w.HTML()
        self.target = w.Dropdown(options=[], description="Target", layout=w.Layout(width="360px"))
        self.target.style.description_width = "70px"
        self.target.add_class("hcdc-target")
        self._quiet = False
        self.target.observe(lambda _c: None if self._quiet else self.refresh_target(), names="value")
        self.target_info = w.HTML()
        self.target_observations = w.HTML()
        self.target_detections = w.HTML()
        self.references = w.SelectMultiple(
            options=[(c.label, i) for i, c in enumerate(self.reference_curves)],
            value=(),
            description="Compare",
            rows=min(4, max(1, len(self.reference_curves))),
            layout=w.Layout(width="520px"),
        )
        self.references.style.description_width = "70px"
        self.references.add_class("hcdc-references")
        self.references.observe(lambda _c: self.refresh_curves(), names="value")
        reference_note = w.HTML(
            message("; ".join(esc(p) for p in problems), "warning", key="references-missing")
            if problems
            else '<span class="hcdc-note">published curves for comparison (ctrl-click for several)</span>'
        )
        self.curves = w.HTML()
        self.sources_list = w.HTML()
        self.source = w.Dropdown(options=[], description="Source", layout=w.Layout(width="420px"))
        self.source.style.description_width = "70px"
        self.source.add_class("hcdc-source")
        self.source.observe(lambda _c: None if self._quiet else self.refresh_source(), names="value")
        self.source_plot = w.HTML()
        self.sources = []
        self.observation = w.Dropdown(options=[], description="Observation", layout=w.Layout(width="640px"))
        self.observation.style.description_width = "90px"
        self.observation.add_class("hcdc-observation")
        self.observation.observe(lambda _c: None if self._quiet else self.refresh_observation(), names="value")
        self.observation_info = w.HTML()
        self.scope = w.Dropdown(
            options=SCOPES, value="observations", description="Export", layout=w.Layout(width="360px")
        )
        self.scope.style.description_width = "70px"
        self.scope.add_class("hcdc-export-scope")
        buttons = []
        for fmt_name, label in (("csv", "CSV"), ("ecsv", "ECSV"), ("votable", "VOTable")):
            button = w.Button(
                description=label, tooltip=f"export the selection as {label}", layout=w.Layout(width="100px")
            )
            button.add_class(f"hcdc-export-{fmt_name}")
            button.on_click(lambda _b, f=fmt_name: self.export(f))
            buttons.append(button)
        self.download = w.HTML()
        page = w.VBox(
            [
                w.HBox([self.search], layout=w.Layout(align_items="center")),
                self.filter_bar.widget,
                section("Targets", self.target_list, key="targets"),
                section("Target", w.HBox([self.target]), self.target_info, key="target"),
                section("Observations of the target", self.target_observations, key="target-observations"),
                section(
                    "Detections",
                    self.target_detections,
                    key="detections",
                    note="Point sources found by post-processing, with S/N, separation, position angle (east of "
                    "north), contrast and vetting status.",
                ),
                section(
                    "Spectra",
                    self.spectra_plot,
                    key="spectra",
                    note="Contrast of each IFS detection in every channel, with 1-sigma errors (hcdc catalog spectra).",
                ),
                section(
                    "Detection limits",
                    w.HBox([self.references, reference_note], layout=w.Layout(align_items="center")),
                    self.curves,
                    key="curves",
                ),
                section(
                    "Sources across epochs",
                    self.sources_list,
                    w.HBox([self.source]),
                    self.source_plot,
                    key="sources",
                    note="Detections of several epochs linked into sources; co-moving or background when the odds "
                    "reach 100:1, from the epochs you may see (hcdc catalog sources).",
                ),
                section("Observation", w.HBox([self.observation]), self.observation_info, key="observation"),
                section(
                    "Export the selection",
                    w.HBox([self.scope, *buttons], layout=w.Layout(align_items="center")),
                    self.download,
                    key="export",
                    note="CSV, ECSV (with units) or VOTable of exactly what is selected above.",
                ),
            ],
            layout=w.Layout(width="100%"),
        )
        self.refresh_targets()
        return page

    # -- targets --------------------------------------------------------------------------------

    def refresh_targets(self) -> None:
        def run():
            with reader_session(self.catalog, self.principal) as session:
                self.targets = targets_frame(session, self.principal, self.filter_bar.filters, self.search.value)
            self.target_list.value = self._targets_html()
            options = [
                (f"{r['name']} ({plural(int(r['n_observations']), 'observation')})", int(r["id"]))
                for _, r in self.targets.iterrows()
            ]
            current = self.target.value
            values = [v for _l, v in options]
            self._quiet = True
            try:
                self.target.options = options
                self.target.value = (current if current in values else values[0]) if values else None
            finally:
                self._quiet = False
            self.refresh_target()
            self.download.value = ""

        self.guard("list the targets", run, target=self.target_list)

    def _targets_html(self) -> str:
        if self.targets.empty:
            return message("No target matches the search and filters.", "empty", key="no-targets")
        summary = cards(
            [
                (len(self.targets), "targets", "n_targets"),
                (int(self.targets["n_observations"].sum()), "observations", "n_observations"),
                (int(self.targets["n_detections"].sum()), "detections", "n_detections"),
            ]
        )
        return summary + table(
            self.targets,
            [
                Column("name", "target"),
                Column("ra_deg", "RA [°]", ".4f"),
                Column("dec_deg", "Dec [°]", ".4f"),
                Column("spectral_type", "SpT"),
                Column("distance_pc", "d [pc]", ".1f"),
                Column("age_myr", "age [Myr]", ".0f"),
                Column("mag_H", "H", ".2f"),
                Column("mag_K", "K", ".2f"),
                Column("n_observations", "obs."),
                Column("first_night", "first"),
                Column("last_night", "last"),
                Column("n_detections", "detections"),
                Column("n_limits", "limits"),
            ],
            key="targets",
            max_rows=self.settings.table_rows,
        )

    # -- one target -----------------------------------------------------------------------------

    @property
    def target_row(self) -> dict | None:
        if self.target.value is None or self.targets.empty:
            return None
        rows = self.targets[self.targets["id"] == self.target.value]
        return rows.iloc[0].to_dict() if len(rows) else None

    def refresh_target(self) -> None:
        def run():
            row = self.target_row
            if row is None:
                self.observations, self.detections = pd.DataFrame(), pd.DataFrame()
                self.limits = (pd.DataFrame(), pd.DataFrame())
                for widget in (
                    self.target_info,
                    self.target_observations,
                    self.target_detections,
                    self.curves,
                    self.observation_info,
                    self.sources_list,
                    self.source_plot,
                ):
                    widget.value = ""
                self._quiet = True
                try:
                    self.observation.options = []
                finally:
                    self._quiet = False
                return
            filters = self.filter_bar.filters
            with reader_session(self.catalog, self.principal) as session:
                self.observations = target_observations(session, self.principal, int(row["id"]), filters, self.settings)
                self.detections = target_detections(session, self.principal, int(row["id"]), filters)
                ids = self.detections["id"] if "id" in self.detections else []
                self.spectra = detection_spectra(session, self.principal, ids)
                self.limits = target_limits(session, self.principal, int(row["id"]), filters)
            self.target_info.value = self._target_html(row)
            self.target_observations.value = self._observations_html()
            self.target_detections.value = self._detections_html()
            self.spectra_plot.value = self._spectra_html(row)
            self.refresh_curves()
            self.refresh_sources(row)
            options = [
                (
                    f"{r['night'].isoformat()}  {r['instrument']} {r['mode'] or ''} {r['filter'] or ''}  "
                    f"#{int(r['id'])}",
                    int(r["id"]),
                )
                for _, r in self.observations.iterrows()
            ]
            self._quiet = True
            try:
                self.observation.options = options
                self.observation.value = options[-1][1] if options else None
            finally:
                self._quiet = False
            self.refresh_observation()
            self.download.value = ""

        self.guard("show the target", run, target=self.target_info)

    def _target_html(self, row: dict) -> str:
        def value(name: str, spec: str, unit: str = "") -> str:
            text = fmt(row[name], spec)
            return f"{text}{unit}" if text else "–"

        properties = [
            ("RA", value("ra_deg", ".5f", "°")),
            ("Dec", value("dec_deg", ".5f", "°")),
            ("spectral type", value("spectral_type", "")),
            ("parallax", value("parallax_mas", ".3f", " mas")),
            ("distance", value("distance_pc", ".1f", " pc")),
            ("age", value("age_myr", ".0f", " Myr")),
            ("J / H / K", " / ".join(value(f"mag_{b}", ".2f") for b in "JHK")),
        ]
        body = "".join(f"<div><span class='hcdc-note'>{esc(k)}</span> {esc(v)}</div>" for k, v in properties)
        return (
            f'<div class="hcdc-target-card" data-hcdc="target-card" data-target="{esc(row["name"])}">'
            f'<h3>{esc(row["name"])}</h3><div class="hcdc-props">{body}</div></div>'
        )

    def _observations_html(self) -> str:
        if self.observations.empty:
            return message("No observation of this target within the filters.", "empty")
        separations = self.settings.contrast_separations_arcsec

        def report(record: dict) -> str:
            rid = record.get("report_reduction_id")
            if rid is None or pd.isna(rid):
                return '<span class="hcdc-note">none yet</span>'
            what = record.get("report_kind") or "report"
            label = f"{record.get('report_step') or 'reduction'} {what}"
            if record.get("report_status") not in (None, "done"):
                label += f" ({record['report_status']})"
            return link(reduction_url(int(rid), what), label, key="report")

        def release(record: dict) -> str:
            day = record.get("release_date")
            if isinstance(day, date) and day > date.today():
                return f'<span class="hcdc-proprietary" title="proprietary until {day}">until {day}</span>'
            return "public"

        columns = [
            Column("night", "night"),
            Column("key", "observation"),
            Column("instrument", "instrument"),
            Column("mode", "mode"),
            Column("filter", "filter"),
            Column("seeing_arcsec", 'seeing ["]', ".2f"),
            Column("tau0_ms", "τ0 [ms]", ".1f"),
        ]
        from hcdc.dashboards.config import contrast_column

        columns += [Column(contrast_column(s), f'contrast {s:g}"', ".2e") for s in separations]
        columns += [
            Column("n_detections", "detections"),
            Column("status", "status"),
            Column("release_date", "data", render=release),
            Column("report", "report", render=report),
        ]
        return table(self.observations, columns, key="target-observations", max_rows=self.settings.table_rows)

    def _detections_html(self) -> str:
        if self.detections.empty:
            return message("No detection for this target (within the filters).", "empty", key="no-detections")
        return table(
            self.detections,
            [
                Column("night", "night"),
                Column("observation", "observation"),
                Column("snr", "S/N", ".1f"),
                Column("sep_arcsec", 'sep ["]', ".3f"),
                Column("sep_err_arcsec", "±", ".3f"),
                Column("pa_deg", "PA [°]", ".1f"),
                Column("pa_err_deg", "±", ".1f"),
                Column("contrast", "contrast", ".2e"),
                Column("contrast_err", "±", ".1e"),
                Column("status", "status"),
                Column("step", "found by"),
            ],
            key="detections",
            max_rows=self.settings.table_rows,
        )

    def _spectra_html(self, row: dict) -> str:
        if self.spectra.empty:
            return message("No spectrum for this target (IFS detections have one).", "empty", key="no-spectra")
        fig = figures.spectra_figure(self.spectra, self.detections, f"{row['name']}: spectra of the detections")
        return plot_html(fig, "spectra")

    def refresh_curves(self) -> None:
        def run():
            limits, points = self.limits
            row = self.target_row
            if row is None:
                self.curves.value = ""
                return
            chosen = [self.reference_curves[i] for i in self.references.value]
            if limits.empty and not chosen and self.detections.empty:
                self.curves.value = message("No detection limit for this target yet.", "empty", key="no-limits")
                return
            references = [(c.label, c.separations_arcsec, c.contrasts) for c in chosen]
            fig = figures.contrast_curves_figure(
                limits, points, self.detections, references, f"{row['name']}: 5σ detection limits"
            )
            note = "" if len(limits) else message("No detection limit for this target yet.", "empty", key="no-limits")
            self.curves.value = note + plot_html(fig, "curves")

        self.guard("draw the contrast curves", run, target=self.curves)

    # -- sources across epochs ------------------------------------------------------------------

    def refresh_sources(self, row: dict) -> None:
        from hcdc import access
        from hcdc.catalog.models import Detection
        from hcdc.sources import source_rows

        def run():
            with reader_session(self.catalog, self.principal) as session:
                self.sources = source_rows(
                    session, access.visibility_filter(Detection, self.principal), target_name=row["name"]
                )
            if not self.sources:
                self.sources_list.value = message("No source linked for this target yet.", "empty", key="no-sources")
            else:
                frame = pd.DataFrame(self.sources)
                self.sources_list.value = table(
                    frame,
                    [
                        Column("source", "source"),
                        Column("known_name", "known as"),
                        Column("status", "status"),
                        Column("log10_odds", "log10 odds", ".1f"),
                        Column("n_epochs", "epochs"),
                        Column("first_epoch", "first", ".2f"),
                        Column("last_epoch", "last", ".2f"),
                        Column("sep_arcsec", 'sep ["]', ".3f"),
                        Column("pa_deg", "PA [°]", ".1f"),
                        Column("note", "note"),
                    ],
                    key="sources",
                    max_rows=self.settings.table_rows,
                )
            options = [
                (f"{r['source']}: {r['known_name'] or ''} {r['status']} ({r['n_epochs']} epochs)", int(r["source"]))
                for r in self.sources
                if r["n_epochs"] >= 1
            ]
            several = [o for o, r in zip(options, self.sources) if r["n_epochs"] >= 2]
            self._quiet = True
            try:
                self.source.options = options
                self.source.value = (several or options)[0][1] if options else None
            finally:
                self._quiet = False
            self.refresh_source()

        self.guard("list the sources", run, target=self.sources_list)

    def refresh_source(self) -> None:
        from hcdc import access
        from hcdc.catalog.models import Detection
        from hcdc.sources import source_track

        def run():
            if self.source.value is None:
                self.source_plot.value = ""
                return
            with reader_session(self.catalog, self.principal) as session:
                try:
                    track = source_track(
                        session, int(self.source.value), access.visibility_filter(Detection, self.principal)
                    )
                except ValueError as exc:
                    self.source_plot.value = message(esc(exc), "empty", key="no-source-plot")
                    return
            self.source_plot.value = plot_html(figures.source_track_figure(track, track["title"]), "source-track")

        self.guard("draw the source's background track", run, target=self.source_plot)

    # -- one observation ------------------------------------------------------------------------

    def refresh_observation(self) -> None:
        def run():
            if self.observation.value is None:
                self.observation_info.value = ""
                return
            with reader_session(self.catalog, self.principal) as session:
                detail = observation_detail(session, self.principal, int(self.observation.value))
            self.observation_info.value = self._observation_html(detail)

        self.guard("show the observation", run, target=self.observation_info)

    def _observation_html(self, detail: dict | None) -> str:
        if detail is None:
            return message("This observation is not visible to you.", "warning")
        obs = detail["observation"]
        facts = [
            ("key", obs["key"]),
            ("target", detail["target"]),
            ("programme", detail["programme"]),
            ("night", obs["night"]),
            ("set-up", f"{obs['instrument']} {obs['mode'] or ''} {obs['filter'] or ''} {obs['coronagraph'] or ''}"),
            ("DIT", f"{fmt(obs['dit_s'])} s"),
            ("science frames", obs["n_science_frames"]),
            ("field rotation", f"{fmt(obs['field_rotation_deg'], '.1f')}°"),
            ("seeing", f'{fmt(obs["seeing_arcsec"], ".2f")}"'),
            ("τ0", f"{fmt(obs['tau0_ms'], '.1f')} ms"),
            ("airmass", fmt(obs["airmass"], ".2f")),
            ("wind", f"{fmt(obs['wind_speed_ms'], '.1f')} m/s"),
            ("status", f"{obs['status']}{': ' + obs['status_reason'] if obs['status_reason'] else ''}"),
            ("release date", obs["release_date"]),
        ]
        body = "".join(f"<div><span class='hcdc-note'>{esc(k)}</span> {esc(fmt(v))}</div>" for k, v in facts)
        reductions = []
        for rid, step, status, finished, report, notebook, error in detail["reductions"]:
            links = []
            if report:
                links.append(link(reduction_url(rid, "report"), "report", key="observation-report"))
            if notebook:
                links.append(link(reduction_url(rid, "notebook"), "executed notebook", key="observation-notebook"))
            reason = f" — {esc(first_line(error))}" if status == "failed" and error else ""
            reductions.append(
                f"<li>{esc(step)}: <span class='hcdc-state hcdc-state-{esc(status)}'>{esc(status)}</span>"
                f" {esc(fmt(finished))}{reason} {' · '.join(links)}</li>"
            )
        products = "".join(
            f"<li>{esc(kind)} ({esc(fmt(size / 1e6, '.1f'))} MB)</li>" for _pid, kind, size, _meta in detail["products"]
        )
        return (
            f'<div class="hcdc-observation-card" data-hcdc="observation-card" data-id="{obs["id"]}">'
            f'<div class="hcdc-props">{body}</div>'
            f'<h4>Reductions</h4><ul data-hcdc="reductions">{"".join(reductions) or "<li>none yet</li>"}</ul>'
            f'<h4>Products</h4><ul data-hcdc="products">{products or "<li>none yet</li>"}</ul></div>'
        )

    # -- exports --------------------------------------------------------------------------------

    def export(self, fmt_name: str) -> None:
        from hcdc.dashboards import exports  # astropy: loaded on the first export only

        def run():
            scope = self.scope.value
            row = self.target_row
            meta = {
                "exported_by": self.viewer.username,
                "selection": self.filter_bar.filters.describe(),
                "search": self.search.value or "",
            }
            if scope == "targets":
                table_ = exports.targets_table(self.targets, meta)
                stem = "targets"
            elif row is None:
                self.download.value = message("Choose a target first.", "warning")
                return
            elif scope == "observations":
                with reader_session(self.catalog, self.principal) as session:
                    table_ = exports.selection_observations_table(
                        session, list(self.observations["id"]), {**meta, "target": row["name"]}
                    )
                stem = f"{row['name']}_observations"
            elif scope == "detections":
                table_ = exports.detections_table(self.detections, {**meta, "target": row["name"]})
                stem = f"{row['name']}_detections"
            elif scope == "sources":
                table_ = exports.sources_table(self.sources, {**meta, "target": row["name"]})
                stem = f"{row['name']}_sources"
            else:
                table_ = exports.limits_table(*self.limits, {**meta, "target": row["name"]})
                stem = f"{row['name']}_detection_limits"
            data = exports.serialise(table_, fmt_name)
            name = exports.file_name(stem, fmt_name)
            self.download.value = download_link(
                data,
                name,
                exports.MIME[fmt_name],
                f"download {name} ({plural(len(table_), 'row')})",
                key=f"download-{fmt_name}",
            )

        self.guard("export the selection", run, target=self.download)
