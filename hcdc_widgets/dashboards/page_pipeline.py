"""The pipeline-status dashboard: campaigns, observations done/failed/pending, failures with links."""

from __future__ import annotations

import ipywidgets as w
import pandas as pd

from hcdc.dashboards.context import reader_session
from hcdc.dashboards.queries import (
    NO_CAMPAIGN,
    Filters,
    any_visible_reduction,
    campaign_reductions,
    campaigns_frame,
    count_unplanned,
    filter_choices,
    observation_states,
)

from . import figures
from .embed import plot_html
from .ui import (
    Column,
    FilterBar,
    Page,
    cards,
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


class PipelinePage(Page):
    title = "Pipeline status"
    name = "pipeline"

    def build(self) -> w.Widget:
        with reader_session(self.catalog, self.principal) as session:
            campaigns = campaigns_frame(session)
            choices = filter_choices(session, self.principal)
            any_reduction = any_visible_reduction(session, self.principal)
        self.campaigns = campaigns
        options = [
            (f"{row['name']} v{row['version']} ({row['status']})", int(row["id"])) for _, row in campaigns.iterrows()
        ]
        options += [("reductions outside campaigns", NO_CAMPAIGN), ("all reductions", -2)]
        self.campaign = w.Dropdown(
            options=options, value=options[0][1], description="Campaign", layout=w.Layout(width="420px")
        )
        self.campaign.style.description_width = "70px"
        self.campaign.add_class("hcdc-campaign")
        self.campaign.observe(lambda _c: self.refresh(), names="value")
        self.filter_bar = FilterBar(choices, lambda _f: self.refresh())
        self.header = w.HTML()
        self.summary = w.HTML()
        self.plots = w.HTML()
        self.failures = w.HTML()
        self.observations = w.HTML()
        intro = []
        if campaigns.empty:
            intro.append(
                w.HTML(
                    message(
                        "No campaign has been run on this catalog yet: the pipeline's systematic "
                        "reductions appear here per campaign. Reductions run by hand are listed "
                        "under 'reductions outside campaigns'.",
                        "empty",
                        key="no-campaign",
                    )
                )
            )
        if not any_reduction:
            if choices.n_observations == 0:
                text = "The catalog has no observation you may see, hence nothing to reduce yet."
                key = "empty"
            else:
                text = (
                    f"No reduction has run yet: {plural(choices.n_observations, 'observation')} "
                    f"{'waits' if choices.n_observations == 1 else 'wait'} for the pipeline."
                )
                key = "no-reductions"
            return w.VBox([*intro, w.HTML(message(esc(text), "empty", key=key))])
        page = w.VBox(
            [
                *intro,
                w.HBox([self.campaign]),
                self.filter_bar.widget,
                self.header,
                self.summary,
                section(
                    "Failures",
                    self.failures,
                    key="failures",
                    note="The latest attempt of each failed step, with its reason; the executed notebook "
                    "and the report open in a new tab.",
                ),
                section("Progress", self.plots, key="progress"),
                section("Observations", self.observations, key="observations"),
            ],
            layout=w.Layout(width="100%"),
        )
        self.refresh()
        return page

    @property
    def campaign_id(self) -> int | None:
        value = self.campaign.value
        return None if value == -2 else int(value)

    def refresh(self) -> None:
        self.summary.value = message("Loading…", "info")

        def run():
            filters = self.filter_bar.filters
            with reader_session(self.catalog, self.principal) as session:
                reductions = campaign_reductions(session, self.principal, self.campaign_id, filters)
                unplanned = count_unplanned(session, self.principal, self.campaign_id, filters)
            self.render(reductions, unplanned, filters)

        self.guard("load the pipeline status", run, target=self.summary)

    def render(self, reductions: pd.DataFrame, unplanned: int, filters: Filters) -> None:
        states = observation_states(reductions)
        counts = {s: int((states["state"] == s).sum()) for s in ("done", "failed", "running", "pending")}
        campaign_id = self.campaign_id
        if campaign_id not in (None, NO_CAMPAIGN) and len(self.campaigns):
            row = self.campaigns[self.campaigns["id"] == campaign_id].iloc[0]
            self.header.value = (
                f'<div class="hcdc-campaign-info" data-hcdc="campaign">'
                f"<b>{esc(row['name'])}</b> version {esc(row['version'])} — {esc(row['status'])}; "
                f"created {esc(fmt(row['created_at']))}"
                f"{', finished ' + esc(fmt(row['finished_at'])) if row['finished_at'] else ''}"
                f"{'<br>' + esc(row['description']) if row['description'] else ''}</div>"
            )
        else:
            self.header.value = ""
        summary = cards(
            [
                (len(states), "observations in the campaign", "n_campaign_observations"),
                (counts["done"], "done", "n_done"),
                (counts["failed"], "failed", "n_failed"),
                (counts["pending"] + counts["running"], "pending or running", "n_pending"),
                (unplanned, "not reduced in it yet", "n_unplanned"),
                (len(reductions), "reductions", "n_reductions"),
            ]
        )
        if reductions.empty:
            text = (
                "No reduction in this selection yet."
                if not self.campaigns.empty or campaign_id is not None
                else "No reduction yet."
            )
            self.failures.value = message(text, "empty", key="no-reductions")
            self.plots.value = message("Nothing to chart.", "empty")
            self.observations.value = message("No observation in this selection.", "empty")
            self.summary.value = summary
            return
        self.failures.value = self._failures_html(reductions)
        from bokeh.layouts import row as bokeh_row

        self.plots.value = plot_html(
            bokeh_row(figures.steps_figure(reductions), figures.timeline_figure(reductions)), "progress"
        )
        self.observations.value = table(
            states.sort_values(["state", "night"], ascending=[True, False]),
            [
                Column("night", "night"),
                Column("key", "observation"),
                Column("target", "target"),
                Column(
                    "state",
                    "state",
                    render=lambda r: f'<span class="hcdc-state hcdc-state-{esc(r["state"])}">{esc(r["state"])}</span>',
                ),
                Column("steps", "steps"),
                Column("failed_steps", "failed steps"),
            ],
            key="campaign-observations",
            max_rows=self.settings.table_rows,
            row_key="observation_id",
        )
        self.summary.value = summary  # last: when the numbers show, everything else is there

    def _failures_html(self, reductions: pd.DataFrame) -> str:
        latest = reductions.sort_values("id").groupby(["observation_id", "step"], dropna=False).tail(1)
        failed = latest[latest["state"] == "failed"].sort_values("finished_at", ascending=False, na_position="last")
        if failed.empty:
            return message("No failure in this selection.", "ok", key="no-failures")

        def links(record: dict) -> str:
            parts = []
            if record.get("notebook_path"):
                parts.append(link(reduction_url(record["id"], "notebook"), "executed notebook", key="notebook-link"))
            if record.get("report_path"):
                parts.append(link(reduction_url(record["id"], "report"), "report", key="report-link"))
            if record.get("log_path"):
                parts.append(link(reduction_url(record["id"], "log"), "log", key="log-link"))
            return " · ".join(parts) or '<span class="hcdc-note">no notebook recorded</span>'

        def reason(record: dict) -> str:
            error = record.get("error") or "(no reason recorded)"
            head = esc(first_line(error))
            rest = str(error).strip()
            if "\n" in rest or len(rest) > 160:
                return f"<details><summary>{head}</summary><pre>{esc(rest)}</pre></details>"
            return head

        return (
            table(
                failed,
                [
                    Column("night", "night"),
                    Column("key", "observation"),
                    Column("target", "target"),
                    Column("step", "step"),
                    Column("attempts", "attempts"),
                    Column("finished_at", "finished (UTC)"),
                    Column("error", "reason", render=reason),
                    Column("links", "notebook", render=links),
                ],
                key="failures",
                max_rows=self.settings.table_rows,
            )
            + f'<div class="hcdc-note">{plural(len(failed), "failed step")}.</div>'
        )
