"""Post-processing of spectral (IFS) catalog observations: detections, spectra and limits with provenance.

``postprocess_spectral_catalog_observation`` takes the calibrated 4-D cube ``(λ, t, y, x)`` of an
observation (the latest done ``preprocess`` reduction), runs
:func:`reduction.postproc.spectral.postprocess_spectral` (ASDI, detection in the collapsed image,
spectral vetting, per-channel spectra and limits), writes its products and records one ``detections``
row per candidate (collapsed position and contrast, the error budget; ``speckle-like`` when the
spectral vetting says so), its ``spectra`` rows, and the ``detection_limits`` of every channel and of
the collapsed image (algorithm ``asdi`` per channel, ``asdi-collapsed``). A failure is recorded with its
reason, never raised.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

import numpy as np

from reduction.postproc.products import write_spectral_products
from reduction.postproc.spectral import SpectralParameters, SpectralPostprocessStep
from reduction.postproc.tables import (
    catalog_detections,
    catalog_spectral_limits,
    finite,
    spectral_detections_table,
    spectral_limits_table,
)

from .catalog.db import Catalog
from .catalog.models import Detection, Reduction, SpectrumPoint
from .outcome import StepOutcome
from .postprocessing import MIN_ARC_FWHM, NoInputError, limit_row, load_inputs, observation_systematics
from .processing import _finish, start_reduction
from .recording import record_products
from .reports import product_folder

STEP = SpectralPostprocessStep.name
ALGORITHM = "asdi"


def postprocess_spectral_catalog_observation(
    catalog: Catalog,
    observation_id: int,
    data_dir: Path,
    params: SpectralParameters = SpectralParameters(),
    *,
    source_reduction_id: int | None = None,
    campaign_id: int | None = None,
    reduction_id: int | None = None,
) -> StepOutcome:
    """Post-process one spectral observation and record detections, spectra and limits."""
    if reduction_id is None:
        reduction_id = start_reduction(
            catalog,
            observation_id,
            STEP,
            SpectralPostprocessStep.version,
            params.to_dict(),
            params.fingerprint(),
            campaign_id=campaign_id,
        )
    out_dir = product_folder(data_dir, observation_id, STEP, reduction_id)
    paths: dict[str, Path] = {}
    n_detections = 0
    science_seconds = 0.0
    try:
        inputs = load_inputs(catalog, observation_id, reduction_id, source_reduction_id)
        cube_meta, target_id, release = inputs.cube_meta, inputs.target_id, inputs.release
        cube, angles, psfs = inputs.cube, inputs.angles, inputs.psf
        star_flux = cube_meta.get("star_flux") or None
        wavelengths = cube_meta.get("wavelengths_um") or []
        if cube.ndim != 4:
            raise NoInputError(
                f"observation {observation_id}: a spectral cube (λ, t, y, x) is needed, got {cube.shape}"
            )
        if len(wavelengths) != cube.shape[0]:
            raise NoInputError(
                f"observation {observation_id}: {len(wavelengths)} wavelengths (wavelengths_um) for "
                f"{cube.shape[0]} channels"
            )
        if star_flux is not None and (len(star_flux) != cube.shape[0] or not all(finite(f) for f in star_flux)):
            star_flux = None  # contrasts need every channel's star flux; fluxes in cube units otherwise
        systematics = observation_systematics(inputs.instrument, inputs.filter_name, cube_meta, 0)
        t0 = time.perf_counter()
        result = SpectralPostprocessStep()(
            params,
            cube=cube,
            angles=angles,
            psfs=psfs,
            wavelengths=np.asarray(wavelengths, dtype=float),
            pixel_scale=inputs.pixel_scale,
            star_flux=None if star_flux is None else np.asarray(star_flux, dtype=float),
            systematics=systematics,
        )
        paths.update(
            write_spectral_products(
                result, params, out_dir, {**inputs.provenance, "systematics": systematics.to_dict(), "band": "all"}
            )
        )
        table = spectral_detections_table(result)
        limits_rows = catalog_spectral_limits(spectral_limits_table(result), ALGORITHM)
        science_seconds = time.perf_counter() - t0
        rotation_rad = float(np.deg2rad(np.ptp(np.rad2deg(np.unwrap(np.deg2rad(angles))))))
        fwhm = float(np.mean(result.fwhm))
        mean_wavelength = float(np.mean(wavelengths))
        detections = []
        for row, item, fields in zip(table, result.candidates, catalog_detections(table, mean_wavelength)):
            arc_fwhm = float(row["sep_px"]) * rotation_rad / fwhm
            status = item.status
            if status == "candidate" and arc_fwhm < MIN_ARC_FWHM:
                status = "low-rotation"
            detection = Detection(
                status=status,
                reduction_id=reduction_id,
                observation_id=observation_id,
                target_id=target_id,
                release_date=release,
                **fields,
            )
            detection.spectrum = [
                SpectrumPoint(wavelength_um=float(w), contrast=finite(c), contrast_err=finite(e), snr=finite(s))
                for w, c, e, s in zip(
                    item.spectrum.wavelengths_um,
                    item.spectrum.contrast,
                    item.spectrum.contrast_err,
                    item.spectrum.snr,
                )
            ]
            detections.append(detection)
        limits = [limit_row(fields, reduction_id, observation_id, release) for fields in limits_rows]
        with catalog.session() as session:
            reduction = session.get(Reduction, reduction_id)
            session.add_all(detections + limits)
            record_products(
                reduction,
                paths,
                observation_id=observation_id,
                release_date=release,
                meta={"detections": {"wavelengths_um": [float(w) for w in wavelengths], "algorithm": ALGORITHM}},
            )
        n_detections = len(detections)
        status, error = "done", None
    except NoInputError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # recorded, never raised
        status, error = "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    _finish(catalog, reduction_id, status, error, science_seconds if status == "done" else None)
    return StepOutcome(
        observation_id=observation_id,
        step=STEP,
        status=status,
        reduction_id=reduction_id,
        error=error,
        products={k: str(v) for k, v in paths.items()},
        n_detections=n_detections,
    )
