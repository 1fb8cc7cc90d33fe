"""The reduction panel: from one of *my* observations to a saved reduction and a batch job.

::

    from hcdc_widgets import ReductionPanel
    panel = ReductionPanel()
    panel

1. **Observation** — my observations with their conditions (seeing, τ0, airmass,
   field rotation); *Load* downloads the calibrated cube, angles and PSF
   through the catalog service and shows a frame and the angles, and the
   catalog's spectra of its detections (IFS: contrast per channel, 1σ).
2. **Parameters** — a form built from :class:`PostprocessParameters` (the batch's).
3. **Run** — :func:`reduction.postproc.pipeline.postprocess`, with progress;
   then the residual image, S/N map with candidates and the contrast curve
   (bokeh, interactive).
4. **Candidate** — position, S/N, contrast; *NEGFC* fits it on request.
5. **Save** records the run as my reduction (the service checks my rights);
   **Export** writes the papermill job that redoes it in batch.

Every failure is one line in the status bar (the service's sentence for 401,
403, 404 and a user without programme), never a traceback.
"""

from __future__ import annotations

import html
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from reduction.postproc.pipeline import PostprocessParameters

from . import plots
from .forms import ParameterForm
from .session import InteractiveReduction, describe_error

CONDITIONS = (
    ("id", "id"),
    ("target", "target"),
    ("night", "night"),
    ("instrument", "instrument"),
    ("filter", "filter"),
    ("n_science_frames", "frames"),
    ("field_rotation_deg", "rotation (°)"),
    ("seeing_arcsec", 'seeing (")'),
    ("tau0_ms", "τ0 (ms)"),
    ("airmass", "airmass"),
    ("release_date", "release"),
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return html.escape("" if value is None else str(value))


def observations_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _k, label in CONDITIONS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(key))}</td>" for key, _l in CONDITIONS) + "</tr>" for row in rows
    )
    return (
        f'<table class="hcdc-observations" style="border-collapse:collapse;font-size:12px">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


class ReductionPanel(widgets.VBox):
    """Interactive post-processing of my observations (see module docstring).

    Parameters
    ----------
    client : hcdc.client.CatalogClient, optional
        Default: the kernel's (``$HCDC_SERVICE_URL`` and the hub token).
    export_dir : path, optional
        Where *Export* writes jobs (default: ``~/hcdc-jobs``).
    params : PostprocessParameters, optional
        Initial parameters.
    """

    def __init__(
        self,
        client=None,
        export_dir: str | Path | None = None,
        params: PostprocessParameters | None = None,
        load_table: bool = True,
    ):
        self.export_dir = Path(export_dir or Path.home() / "hcdc-jobs")
        self.status = widgets.HTML(layout=widgets.Layout(min_height="24px"))
        self.session: InteractiveReduction | None = None
        try:
            self.session = InteractiveReduction(client)
        except Exception as exc:  # e.g. no service configured: say so in the panel
            self._error(exc)

        # 1. observation
        self.observation = widgets.Dropdown(
            description="observation",
            options=[],
            style={"description_width": "90px"},
            layout=widgets.Layout(width="480px"),
        )
        self.observation_id = widgets.IntText(description="or id", layout=widgets.Layout(width="180px"))
        self.load_button = widgets.Button(description="Load", icon="download", button_style="primary")
        self.table = widgets.HTML()
        self.band = widgets.Dropdown(description="band", options=[("1", 0)], layout=widgets.Layout(width="180px"))
        self.frame = widgets.IntSlider(description="frame", min=0, max=0, continuous_update=False)
        self.inputs_view = widgets.HBox()
        self.inputs_info = widgets.HTML()
        self.spectra_view = widgets.HTML()
        # 2. parameters
        self.form = ParameterForm(PostprocessParameters, params)
        # 3. run
        self.run_button = widgets.Button(description="Run", icon="play", button_style="success")
        self.progress = widgets.IntProgress(value=0, min=0, max=100, layout=widgets.Layout(width="300px"))
        self.progress_label = widgets.HTML()
        self.results_view = widgets.HBox(layout=widgets.Layout(flex_flow="row wrap"))
        self.summary = widgets.HTML()
        # 4. candidate
        self.candidate = widgets.Dropdown(description="candidate", options=[], layout=widgets.Layout(width="260px"))
        self.negfc_button = widgets.Button(description="NEGFC", icon="crosshairs")
        self.candidate_info = widgets.HTML()
        # 5. save / export
        self.save_button = widgets.Button(
            description="Save as my reduction", icon="save", layout=widgets.Layout(width="200px")
        )
        self.export_button = widgets.Button(
            description="Export batch job", icon="file-export", layout=widgets.Layout(width="200px")
        )
        self.export_info = widgets.HTML()

        self.load_button.on_click(lambda _b: self.load())
        self.run_button.on_click(lambda _b: self.run())
        self.negfc_button.on_click(lambda _b: self.characterise())
        self.save_button.on_click(lambda _b: self.save())
        self.export_button.on_click(lambda _b: self.export())
        self.candidate.observe(lambda _c: self._show_candidate(), names="value")
        self.frame.observe(lambda _c: self._show_inputs(), names="value")
        self.observation.observe(self._picked, names="value")

        section = lambda title: widgets.HTML(f"<h4 style='margin:8px 0 2px'>{title}</h4>")  # noqa: E731
        super().__init__(
            children=[
                self.status,
                section("1. Observation"),
                self.table,
                widgets.HBox([self.observation, self.observation_id, self.load_button]),
                widgets.HBox([self.band, self.frame]),
                self.inputs_info,
                self.inputs_view,
                self.spectra_view,
                section("2. Parameters"),
                self.form,
                section("3. Run"),
                widgets.HBox([self.run_button, self.progress, self.progress_label]),
                self.summary,
                self.results_view,
                section("4. Candidate"),
                widgets.HBox([self.candidate, self.negfc_button]),
                self.candidate_info,
                section("5. Save and export"),
                widgets.HBox([self.save_button, self.export_button]),
                self.export_info,
            ]
        )
        self.add_class("hcdc-reduction-panel")
        if load_table and self.session is not None:
            self.refresh()

    # -- status
    def _error(self, exc: BaseException) -> str:
        message = describe_error(exc)
        self.status.value = f'<div class="hcdc-status hcdc-error" style="color:#b00020">⚠ {html.escape(message)}</div>'
        return message

    def _info(self, message: str) -> None:
        self.status.value = f'<div class="hcdc-status hcdc-ok">{html.escape(message)}</div>'

    @property
    def message(self) -> str:
        """The status line as text (for tests and scripts)."""
        import re

        return html.unescape(re.sub(r"<[^>]+>", "", self.status.value)).replace("⚠ ", "").strip()

    def _guard(self, action, *args):
        if self.session is None:
            return None
        try:
            return action(*args)
        except Exception as exc:  # every failure: one line, no traceback
            self._error(exc)
            return None

    # -- 1. observation
    def refresh(self) -> None:
        def go():
            rows, note = self.session.observations()
            self.table.value = (
                observations_table(rows)
                if rows
                else '<div class="hcdc-observations-empty"><i>No observations of yours. '
                f"{html.escape(note or '')}</i></div>"
            )
            self.observation.options = [
                (
                    f"{r['id']}: {r.get('target') or '?'} {r.get('night')} "
                    f"{r.get('instrument') or ''} {r.get('filter') or ''}",
                    r["id"],
                )
                for r in rows
            ]
            if rows:
                self.observation.value = rows[0]["id"]
                self.observation_id.value = rows[0]["id"]
                self._info(f"{len(rows)} observation(s) of yours; pick one and press Load")
            else:  # no programme (the service's reason) or no observation yet
                self.status.value = (
                    f'<div class="hcdc-status hcdc-error" style="color:#b00020">'
                    f"⚠ {html.escape(note or 'no observations of yours')}</div>"
                )

        self._guard(go)

    def _picked(self, change) -> None:
        if change["new"] is not None:
            self.observation_id.value = change["new"]

    def load(self, observation_id: int | None = None) -> None:
        if observation_id is not None:
            self.observation_id.value = int(observation_id)

        def go():
            self.spectra_view.value = ""  # nothing of the previous observation stays if this load fails
            self._info(f"loading observation {self.observation_id.value} ...")
            inputs = self.session.load(self.observation_id.value)
            self.band.options = [
                (f"{i + 1}" + (f" ({w:.3f} µm)" if w else ""), i)
                for i, w in enumerate((inputs.wavelengths_um + [None] * inputs.n_bands)[: inputs.n_bands])
            ]
            self.band.value = 0
            cube = inputs.band(0)[0]
            self.frame.max = cube.shape[0] - 1
            self.frame.value = 0
            self.results_view.children, self.summary.value, self.candidate.options = (), "", []
            self._show_inputs()
            self._show_spectra()
            self._info(
                f"observation {inputs.observation_id} loaded: {cube.shape[0]} centred frames of "
                f"{cube.shape[1]}×{cube.shape[2]} px, {inputs.n_bands} band(s), "
                f"pixel scale {inputs.pixel_scale} arcsec"
            )

        self._guard(go)

    def _show_inputs(self) -> None:
        inputs = self.session.inputs if self.session else None
        if inputs is None:
            return
        cube = inputs.band(self.band.value or 0)[0]
        index = min(self.frame.value, cube.shape[0] - 1)
        self.inputs_info.value = (
            f"frame {index}: derotation angle {inputs.angles[index]:.2f}°; "
            f"angles {inputs.angles.min():.1f}° … {inputs.angles.max():.1f}°"
        )
        self.inputs_view.children = [
            plots.plot_widget(
                plots.image_figure(
                    cube[index], f"centred frame {index}", "frame", pixel_scale_arcsec=inputs.pixel_scale
                ),
                "frame",
            ),
            plots.plot_widget(plots.angles_figure(inputs.angles), "angles"),
        ]

    def _show_spectra(self) -> None:
        """The catalog's spectra of the loaded observation's detections (IFS), plotted; a line when none."""
        import pandas as pd

        from .dashboards import figures
        from .dashboards.embed import plot_html

        detections, rows = self.session.catalog_spectra()
        if not rows:
            self.spectra_view.value = (
                '<div class="hcdc-no-spectra"><i>No spectrum in the catalog for this observation '
                "(an IFS detection of a finished campaign has one).</i></div>"
            )
            return
        night = (self.session.inputs.info or {}).get("night") or ""
        frame = pd.DataFrame(
            [
                {
                    "id": d["id"],
                    "night": night,
                    "sep_arcsec": d["sep_arcsec"],
                    "pa_deg": d["pa_deg"],
                    "status": d.get("status") or "",
                }
                for d in detections
            ]
        )
        title = f"observation {self.session.inputs.observation_id}: catalog spectra of {len(detections)} detection(s)"
        self.spectra_view.value = plot_html(figures.spectra_figure(pd.DataFrame(rows), frame, title), "spectra")

    # -- 3. run
    def run(self) -> None:
        if self.session is None:
            return
        try:
            params = self.form.value
        except Exception as exc:
            self._error(exc)
            return
        done = threading.Event()
        start = time.perf_counter()

        def tick():  # progress while the (blocking) science runs
            while not done.wait(0.5):
                elapsed = time.perf_counter() - start
                self.progress.value = min(90, 10 + int(80 * (1 - np.exp(-elapsed / 15))))
                self.progress_label.value = f"running … {elapsed:.0f} s"

        def go():
            self.run_button.disabled = True
            self.progress.value, self.progress.bar_style = 5, "info"
            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
            try:
                outcome = self.session.run(params, band=self.band.value or 0, progress=self._info)
            finally:
                done.set()
                ticker.join()
                self.run_button.disabled = False
            self._show_results()
            self.progress.value, self.progress.bar_style = 100, "success"
            self.progress_label.value = f"done in {outcome.seconds:.1f} s"
            self._info(
                f"run finished in {outcome.seconds:.1f} s: {len(outcome.result.detection.candidates)} candidate(s)"
            )
            return outcome

        if self._guard(go) is None:
            self.progress.bar_style = "danger"
            self.progress_label.value = "failed"

    def _show_results(self) -> None:
        outcome = self.session.outcome
        result = outcome.result
        cands = result.detection.candidates
        self.results_view.children = [
            plots.plot_widget(
                plots.image_figure(
                    result.subtraction.residuals,
                    "residuals",
                    "residuals",
                    symmetric=True,
                    palette="Viridis256",
                    pixel_scale_arcsec=result.pixel_scale,
                    north_up=True,
                ),
                "residuals",
            ),
            plots.plot_widget(
                plots.image_figure(
                    result.detection.snr_map,
                    "S/N map",
                    "snrmap",
                    cands,
                    palette="Viridis256",
                    pixel_scale_arcsec=result.pixel_scale,
                    north_up=True,
                ),
                "snrmap",
            ),
            plots.plot_widget(plots.contrast_figure(result.contrast), "contrast"),
        ]
        self.summary.value = (
            f"FWHM {result.psf.fwhm:.2f} px; {len(cands)} candidate(s) above "
            f"{result.detection.threshold:g} ({result.detection.threshold_on})"
        )
        self.candidate.options = [
            (f"#{i + 1}: S/N {c.snr:.1f} at ({c.x:.1f}, {c.y:.1f})", i) for i, c in enumerate(cands)
        ]
        if cands:
            self.candidate.value = 0
        self._show_candidate()

    # -- 4. candidate
    def _show_candidate(self) -> None:
        if self.session is None or self.session.outcome is None or self.candidate.value is None:
            self.candidate_info.value = ""
            return
        try:
            c = self.session.candidate(self.candidate.value)
        except Exception as exc:
            self._error(exc)
            return
        rows = [
            ("position (x, y) px", f"{c['x']:.2f}, {c['y']:.2f}"),
            ("separation", f'{c["sep_arcsec"]:.4f}" ({c["sep_px"]:.2f} px)'),
            ("position angle", f"{c['pa_deg']:.2f}°"),
            ("S/N", f"{c['snr']:.2f}"),
            ("significance", f"{c['significance']:.2f} σ"),
        ]
        fit = c["negfc"]
        if fit:
            rows += [
                ("NEGFC separation", f'{fit["sep_arcsec"]:.4f}"'),
                ("NEGFC PA", f"{fit['pa_deg']:.2f}°"),
                ("NEGFC flux (1×FWHM)", f"{fit['flux']:.4g}"),
                ("contrast", f"{fit['contrast']:.3e}" if fit["contrast"] else "— (no star flux)"),
            ]
            if fit["uncertainty"]:
                u = fit["uncertainty"]
                rows.append(("1σ fit ⊕ speckle (sep px, PA °, flux)", f"{u[0]:.3g}, {u[1]:.3g}, {u[2]:.3g}"))
            budget = fit.get("budget")
            if budget:  # every term of the error budget, as the catalog will hold it
                for label, key, unit, fmt in (
                    ("1σ separation", "sep_arcsec", " mas", lambda v: f"{1000 * v:.2f}"),
                    ("1σ PA", "pa_deg", "°", lambda v: f"{v:.3f}"),
                    ("1σ contrast", "contrast", "", lambda v: f"{v:.2e}"),
                ):
                    terms = budget[key]
                    shown = ", ".join(
                        f"{name} {fmt(value)}" for name, value in terms.items() if name != "total" and value == value
                    )
                    total = terms["total"]
                    rows.append((label, f"{fmt(total) if total == total else '—'}{unit} ({shown})"))
                rows.append(("star centre", budget["centre_status"]))
        else:
            rows.append(("NEGFC", html.escape(c["note"] or "not fitted: press NEGFC")))
        self.candidate_info.value = (
            '<table class="hcdc-candidate">'
            + "".join(f"<tr><td>{k}</td><td><b>{v}</b></td></tr>" for k, v in rows)
            + "</table>"
        )

    def characterise(self) -> None:
        def go():
            if self.candidate.value is None:
                raise ValueError("no candidate selected (run first)")
            self._info(f"NEGFC of candidate #{self.candidate.value + 1} ...")
            params = self.form.value.characterisation
            self.session.characterise(self.candidate.value, params)
            self._show_candidate()
            self._info(f"NEGFC of candidate #{self.candidate.value + 1} done")

        self._guard(go)

    # -- 5. save / export
    def save(self) -> dict[str, Any] | None:
        def go():
            saved = self.session.save()
            how = "already saved" if saved.get("already_saved") else "saved"
            self._info(
                f"{how} as your reduction {saved['reduction_id']} ({saved['n_detections']} detection(s), "
                f"{saved['n_limits']} detection limit(s); release date {saved['release_date']})"
            )
            return saved

        return self._guard(go)

    def export(self) -> dict[str, Any] | None:
        def go():
            params = self.session.outcome.params if self.session.outcome else self.form.value
            obs = self.session.inputs.observation_id if self.session.inputs else self.observation_id.value
            path = self.export_dir / f"postprocess_obs{obs}.yaml"
            job = self.session.export_job(path, params, obs)
            self.export_info.value = (
                f"job written to <code>{html.escape(str(path))}</code>; run it with<br>"
                f"<code>{html.escape(job['command'])}</code>"
            )
            self._info(f"batch job written to {path}")
            job["path"] = str(path)
            return job

        return self._guard(go)

    def _ipython_display_(self):  # BokehJS (inline) once, then the panel
        from IPython.display import display

        display(plots.bokeh_setup())
        display(self._repr_mimebundle_(), raw=True)
