"""The logic behind the reduction panel, without widgets (tested on its own).

:class:`InteractiveReduction` loads one of the user's observations through the
catalog service, runs :func:`reduction.postproc.pipeline.postprocess` — the
function and parameter object the batch step uses — characterises a candidate
by NEGFC on request, saves the result as the user's reduction (the *service*
checks the rights and records provenance and release dates) and exports the
parameters as a papermill job for the batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
import shlex
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from reduction.postproc import pipeline
from reduction.postproc.pipeline import CharacterisationParameters, CharacterisationStep, PostprocessParameters

#: the batch step the exported job runs, and its notebook (relative to the repository)
#: the pipeline step an exported batch job runs (its notebook and version come from the step registry)
BATCH_STEP = "postprocess"


def describe_error(exc: BaseException) -> str:
    """One line for a person (no traceback): the service's sentence, or the parameter check's."""
    from hcdc.client import CatalogError

    if isinstance(exc, CatalogError):
        status = f" ({exc.status})" if getattr(exc, "status", None) else ""
        return f"{type(exc).__name__}{status}: {exc.message}".splitlines()[0]
    if isinstance(exc, (ValueError, TypeError)):
        return f"invalid input: {exc}".splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


@dataclasses.dataclass
class RunOutcome:
    """One interactive run: its parameters, result and time."""

    observation_id: int
    band: int
    params: PostprocessParameters
    result: Any  # PostprocessResult
    seconds: float
    started_at: datetime
    finished_at: datetime
    wavelength_um: float | None = None


class InteractiveReduction:
    """One PI's interactive post-processing session (see module docstring).

    Parameters
    ----------
    client : hcdc.client.CatalogClient, optional
        Default: ``CatalogClient()`` from the kernel's environment (URL and hub token).
    """

    def __init__(self, client=None):
        if client is None:
            from hcdc.client import CatalogClient

            client = CatalogClient()
        self.client = client
        self.inputs = None  # CalibratedInputs
        self.outcome: RunOutcome | None = None
        self.negfc: dict[int, Any] = {}
        self.saved: dict[str, Any] | None = None
        self._save_salt = secrets.token_bytes(16)  # save keys of this session only (see save)

    # -- catalog
    def observations(self) -> tuple[list[dict[str, Any]], str | None]:
        """(my observations, a note when there are none) — a user without programme gets the reason."""
        from hcdc.client import NotFound

        try:
            rows = self.client.observations(mine=True)
        except NotFound as exc:  # no programme: the service says why
            return [], exc.message
        if not rows:
            return [], "your programmes have no observations in the catalog yet"
        return rows, None

    def load(self, observation_id: int):
        """Download the calibrated cube, angles and PSF of one observation (through the service)."""
        self.inputs = self.client.load_calibrated(int(observation_id))
        self.outcome, self.negfc, self.saved = None, {}, None
        return self.inputs

    def catalog_spectra(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The catalog's spectra of the loaded observation: ``(detections with a spectrum, spectrum rows)``.

        What the catalog service shows me of that observation's detections (an IFS detection carries its
        contrast per channel; the service applies the access rule, as for every other row), of the newest
        reduction that has spectra. Spectrum rows have ``detection_id, wavelength_um, contrast,
        contrast_err, snr``.
        """
        if self.inputs is None:
            raise ValueError("load an observation first")
        detections = [d for d in self.client.detections(self.inputs.observation_id) if d.get("spectrum")]
        if detections:  # the newest reduction's only: an older campaign's spectra are superseded
            newest = max(d["reduction_id"] for d in detections)
            detections = [d for d in detections if d["reduction_id"] == newest]
        rows = [{"detection_id": d["id"], **point} for d in detections for point in d["spectrum"]]
        return detections, rows

    # -- science: the batch's function and parameters
    def run(
        self, params: PostprocessParameters, band: int = 0, progress: Callable[[str], None] | None = None
    ) -> RunOutcome:
        if self.inputs is None:
            raise ValueError("load an observation first")
        if not isinstance(params, PostprocessParameters):
            raise TypeError(f"expected PostprocessParameters, got {type(params).__name__}")
        cube, psf, star_flux, wavelength = self.inputs.band(band)
        if progress:
            progress(
                f"post-processing band {band + 1}/{self.inputs.n_bands} ({cube.shape[0]} frames "
                f"{cube.shape[1]}×{cube.shape[2]} px, {params.subtraction.algorithm})"
            )
        started = datetime.now(timezone.utc)
        t0 = time.perf_counter()
        result = pipeline.postprocess(
            cube,
            self.inputs.angles,
            psf,
            self.inputs.pixel_scale,
            star_flux=star_flux,
            params=params,
            systematics=self.systematics(band),
        )
        seconds = time.perf_counter() - t0
        self.outcome = RunOutcome(
            self.inputs.observation_id, band, params, result, seconds, started, datetime.now(timezone.utc), wavelength
        )
        self.negfc, self.saved = {}, None
        return self.outcome

    def systematics(self, band: int = 0):
        """The observation's systematic error terms, as the batch computes them (None: unknown instrument)."""
        from hcdc.postprocessing import observation_systematics
        from reduction.instruments import by_name

        info = self.inputs.info if self.inputs is not None else {}
        try:
            instrument = by_name(info.get("instrument") or "")
        except KeyError:
            return None
        return observation_systematics(instrument, info.get("filter"), info, band)

    def candidate(self, index: int) -> dict[str, Any]:
        """Position, S/N and contrast of candidate ``index`` (0-based), NEGFC values when fitted."""
        result = self._result()
        items = result.characterised
        if not 0 <= index < len(items):
            raise ValueError(f"no candidate #{index + 1}: this run found {len(items)}")
        item = items[index]
        cand = item.candidate
        fit = self.negfc.get(index) or item.negfc
        flux = fit.flux if fit is not None else None
        budget = item.budget if fit is item.negfc else None
        if fit is not None and budget is None and result.systematics is not None:
            budget = pipeline.negfc_budget(fit, result.pixel_scale, result.star_flux, result.systematics)
        star = result.star_flux
        scale = result.pixel_scale
        return {
            "id": index + 1,
            "x": cand.x,
            "y": cand.y,
            "sep_px": cand.separation_px,
            "sep_arcsec": cand.separation_px * scale,
            "pa_deg": cand.pa_deg,
            "snr": cand.snr,
            "fpf": cand.fpf,
            "significance": cand.significance,
            "negfc": None
            if fit is None
            else {
                "x": fit.x,
                "y": fit.y,
                "sep_arcsec": fit.separation_px * scale,
                "pa_deg": fit.pa_deg,
                "flux": fit.flux,
                "contrast": (flux / star) if star else None,
                "uncertainty": None if fit.uncertainty is None else list(fit.uncertainty.total),
                "budget": None
                if budget is None
                else {
                    "sep_arcsec": dict(budget.separation_arcsec, total=budget.separation_total),
                    "pa_deg": dict(budget.pa_deg, total=budget.pa_total),
                    "contrast": dict(budget.contrast, total=budget.contrast_total),
                    "centre_status": budget.centre_status,
                },
            },
            "note": item.note,
        }

    def characterise(self, index: int, params: CharacterisationParameters | None = None):
        """NEGFC of candidate ``index`` with the run's (or the given) characterisation parameters."""
        outcome = self._outcome()
        result = outcome.result
        items = result.characterised
        if not 0 <= index < len(items):
            raise ValueError(f"no candidate #{index + 1}: this run found {len(items)}")
        params = params or outcome.params.characterisation
        cube, _psf, _flux, _wave = self.inputs.band(outcome.band)
        if result.recentering is not None:
            cube = result.recentering.cube
        if outcome.params.subtraction.algorithm == "cadi" and params.method == "pca":
            params = dataclasses.replace(params, method="cadi")
        params = dataclasses.replace(params, ncomp=min(params.ncomp, cube.shape[0]))
        cand = items[index].candidate
        fit = CharacterisationStep()(
            params, cube=cube, angles=self.inputs.angles, psf=result.psf.psf, fwhm=result.psf.fwhm, xy=(cand.x, cand.y)
        )
        self.negfc[index] = fit
        return fit

    # -- the catalog record
    def payload(self) -> dict[str, Any]:
        """What :meth:`save` sends: parameters, inputs (ids + sha256), detections, limits, images.

        The provenance (owner, time, code version, host) is the catalog service's own record.
        """
        from reduction.postproc.tables import catalog_detections, catalog_limit
        from reduction.postproc.tables import contrast_table as _contrast_table
        from reduction.postproc.tables import detections_table as _detections_table

        outcome = self._outcome()
        result = outcome.result
        if self.negfc:  # NEGFC fits done on request replace the candidates' ones
            items = tuple(
                dataclasses.replace(item, negfc=self.negfc.get(i, item.negfc), note=item.note)
                for i, item in enumerate(result.characterised)
            )
            result = dataclasses.replace(result, characterised=items)
        table = _detections_table(result, result.pixel_scale, result.star_flux)
        curve = _contrast_table(result.contrast)
        detections = catalog_detections(table, outcome.wavelength_um)
        limit = catalog_limit(
            curve, result.contrast.sigma, outcome.params.subtraction.algorithm, outcome.wavelength_um, result.star_flux
        )
        return {
            "parameters": outcome.params.to_dict(),
            "inputs": self.inputs.inputs,
            "detections": detections,
            "limits": [limit],
            "images": {"residuals": _image(result.subtraction.residuals), "snrmap": _image(result.detection.snr_map)},
        }

    def save(self) -> dict[str, Any]:
        """Record the run as *my* reduction (the service checks that I may).

        The save's key is the same for the same content in this session: saving again what was already
        saved (or what a restarting service may or may not have recorded) returns the recorded reduction
        with ``already_saved`` instead of a second copy; a changed run (new candidate fits) is a new save.
        """
        outcome = self._outcome()
        payload = self.payload()
        content = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()
        payload["save_key"] = hashlib.sha256(self._save_salt + content).hexdigest()[:48]
        self.saved = self.client.save_reduction(outcome.observation_id, payload)
        return self.saved

    def export_job(
        self, path: str | Path, params: PostprocessParameters | None = None, observation_id: int | None = None
    ) -> dict[str, Any]:
        """Write the batch job (YAML) that runs the same reduction with papermill; returns its content."""
        import yaml

        from hcdc.pipeline.steps import step_specs

        spec = step_specs()[BATCH_STEP]
        notebook = f"notebooks/pipeline/{spec.notebook}"
        if params is None:
            params = self._outcome().params
        if observation_id is None:
            if self.inputs is None:
                raise ValueError("load an observation first")
            observation_id = self.inputs.observation_id
        text = json.dumps(params.to_dict(), sort_keys=True, separators=(",", ":"))
        path = Path(path).expanduser()
        output = f"postprocess_obs{int(observation_id)}.ipynb"
        command = " ".join(
            [
                "papermill",
                "-k",
                "hcdc",
                notebook,
                output,
                "-p",
                "observation_id",
                str(int(observation_id)),
                "-p",
                "parameters",
                shlex.quote(text),
            ]
        )
        job = {
            "step": spec.name,
            "step_version": spec.version,
            "observation_id": int(observation_id),
            "parameters": text,
            "parameters_sha256": params.fingerprint(),
            "notebook": notebook,
            "command": command,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(job, sort_keys=False, width=10_000))
        return job

    # -- helpers
    def _outcome(self) -> RunOutcome:
        if self.outcome is None:
            raise ValueError("run the reduction first")
        return self.outcome

    def _result(self):
        return self._outcome().result


def _image(array) -> dict[str, Any]:
    import base64

    data = np.ascontiguousarray(np.nan_to_num(np.asarray(array, dtype="<f4")))
    return {"shape": list(data.shape), "data": base64.b64encode(data.tobytes()).decode()}
