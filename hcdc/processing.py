"""Running pre-processing for catalog observations and recording what it made.

``preprocess_catalog_observation`` gathers an observation's raw files and
matched calibrations from the catalog, runs :func:`reduction.preprocess.preprocess_observation`,
writes the products (FITS with provenance in their headers) under
``<data dir>/products/obs<id>/preprocess/``, and records a ``reductions`` row
(parameters, inputs with sha256, code version, git commit, environment lock
hash, host, times, status, problems), its ``products`` and the reduced
calibrations (``calibrations`` rows, deduplicated on their input files).
A failure is recorded with its reason and never raises to the caller.
"""

from __future__ import annotations

import platform
import subprocess
import time
import traceback
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import select

from reduction.fitsio_products import write_image
from reduction.instruments import by_name
from reduction.preprocess import (
    ObservationFiles,
    Preprocess,
    PreprocessingError,
    PreprocessParameters,
    write_products,
)
from reduction.rawio import sha256_file

from .catalog.db import Catalog
from .catalog.models import Calibration, Observation, ObservationCalibration, RawFile, Reduction
from .outcome import StepOutcome
from .recording import inputs_fingerprint, record_products, reduction_provenance
from .reports import product_folder

REPO = Path(__file__).resolve().parents[1]


def code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hcdc")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0+unknown"


def git_commit() -> str | None:
    """The commit of the code that runs (None outside a git checkout)."""
    try:
        # the services run as their own account, not the checkout's owner: git would refuse the repository
        result = subprocess.run(
            ["git", "-c", f"safe.directory={REPO}", "-C", str(REPO), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def environment_sha256() -> str | None:
    """sha256 of requirements.lock, the pinned environment."""
    lock = REPO / "requirements.lock"
    return sha256_file(lock) if lock.exists() else None


def observation_files(session, observation: Observation) -> ObservationFiles:
    """The raw inputs of an observation from the catalog (frames + calibration links)."""
    frames = session.scalars(
        select(RawFile).where(RawFile.observation_id == observation.id, RawFile.status == "accepted")
    ).all()
    by_kind: dict[str, list[Path]] = defaultdict(list)
    for frame in sorted(frames, key=lambda f: f.date_obs):
        by_kind[frame.kind].append(Path(frame.path))
    per_dit: dict[str, dict[float, list[Path]]] = defaultdict(lambda: defaultdict(list))
    flats: list[Path] = []
    lamps: dict[str, list[Path]] = defaultdict(list)  # IFS: wave, specpos
    for link, raw in session.execute(
        select(ObservationCalibration, RawFile)
        .join(RawFile, RawFile.id == ObservationCalibration.raw_file_id)
        .where(ObservationCalibration.observation_id == observation.id, RawFile.status == "accepted")
    ):
        if link.role == "flat":
            flats.append(Path(raw.path))
        elif link.role in ("wave", "specpos"):
            lamps[link.role].append(Path(raw.path))
        elif link.for_dit_s is not None:
            per_dit[link.role][round(link.for_dit_s, 2)].append(Path(raw.path))

    def freeze(role: str) -> dict[float, tuple[Path, ...]]:
        return {dit: tuple(sorted(paths)) for dit, paths in per_dit[role].items()}

    return ObservationFiles(
        instrument=observation.instrument,
        filter=observation.filter or "",
        science=tuple(by_kind["science"]),
        center=tuple(by_kind["center"]),
        flux=tuple(by_kind["flux"]),
        skies=freeze("sky"),
        backgrounds=freeze("background"),
        darks=freeze("dark"),
        flats=tuple(sorted(flats)),
        wave=tuple(sorted(lamps["wave"])),
        specpos=tuple(sorted(lamps["specpos"])),
    )


def start_reduction(
    catalog: Catalog,
    observation_id: int,
    step: str,
    step_version: str,
    parameters: dict,
    parameters_sha256: str,
    *,
    campaign_id: int | None = None,
    signature: str | None = None,
    papermill_run_id: str | None = None,
    notebook_path: str | None = None,
) -> int:
    """Create the ``reductions`` row of a step about to run (status ``running``); return its id."""
    with catalog.session() as session:
        observation = session.get(Observation, observation_id)
        if observation is None:
            raise KeyError(f"no observation {observation_id} in the catalog")
        reduction = Reduction(
            observation_id=observation_id,
            campaign_id=campaign_id,
            step=step,
            step_version=step_version,
            parameters=parameters,
            parameters_sha256=parameters_sha256,
            signature=signature,
            inputs=[],
            code_version=code_version(),
            git_commit=git_commit(),
            environment_sha256=environment_sha256(),
            host=platform.node(),
            status="running",
            attempts=1,
            started_at=datetime.now(timezone.utc),
            release_date=observation.release_date,
            papermill_run_id=papermill_run_id,
            notebook_path=notebook_path,
        )
        session.add(reduction)
        session.flush()
        return reduction.id


def _finish(
    catalog: Catalog, reduction_id: int, status: str, error: str | None, science_seconds: float | None = None
) -> None:
    with catalog.session() as session:
        reduction = session.get(Reduction, reduction_id)
        reduction.status = status
        reduction.error = error
        reduction.finished_at = datetime.now(timezone.utc)
        reduction.science_seconds = science_seconds


def preprocess_catalog_observation(
    catalog: Catalog,
    observation_id: int,
    data_dir: Path,
    params: PreprocessParameters = PreprocessParameters(),
    campaign_id: int | None = None,
    reduction_id: int | None = None,
) -> StepOutcome:
    """Pre-process one catalog observation and record everything (see module docstring).

    ``reduction_id`` names a row created beforehand (by the pipeline runner, with
    its signature and notebook); otherwise one is created here.
    """
    step = Preprocess()
    if reduction_id is None:
        reduction_id = start_reduction(
            catalog,
            observation_id,
            step.name,
            step.version,
            params.to_dict(),
            params.fingerprint(),
            campaign_id=campaign_id,
        )
    with catalog.session() as session:
        observation = session.get(Observation, observation_id)
        files = observation_files(session, observation)
        release = observation.release_date
        reduction = session.get(Reduction, reduction_id)
        reduction.inputs = [{"path": str(p)} for p in files.all_paths()]
        started = reduction.started_at
    out_dir = product_folder(data_dir, observation_id, "preprocess", reduction_id)
    problems: tuple[str, ...] = ()
    error = None
    paths: dict[str, Path] = {}
    n_frames = n_rejected = 0
    result = None
    science_seconds = None
    try:
        t0 = time.perf_counter()
        result = step(params, observation_files=files)
        science_seconds = time.perf_counter() - t0
        with catalog.session() as session:
            reduction = session.get(Reduction, reduction_id)
            reduction.inputs = list(result.inputs)
            session.flush()
            provenance = reduction_provenance(
                reduction, date=started.isoformat(timespec="seconds") if started else None
            )
        t0 = time.perf_counter()
        paths = write_products(result, out_dir, provenance)
        # the science time covers what a plain script would do too: compute and write the products
        science_seconds += time.perf_counter() - t0
        problems = result.problems
        n_frames, n_rejected = len(result.frames), result.n_rejected
        with catalog.session() as session:
            reduction = session.get(Reduction, reduction_id)
            record_products(
                reduction,
                paths,
                observation_id=observation_id,
                release_date=release,
                meta={"cube": _cube_summary(result)},
            )
            science_seconds += _record_calibrations(
                session, result, files.instrument, files.filter, data_dir, reduction
            )
        status = "done"
    except PreprocessingError as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # recorded, never raised: one observation must not stop a batch
        status, error = "failed", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=5)}"
    _finish(
        catalog,
        reduction_id,
        status,
        error if error else ("; ".join(problems) or None),
        science_seconds if status == "done" else None,
    )
    return StepOutcome(
        observation_id=observation_id,
        step="preprocess",
        reduction_id=reduction_id,
        status=status,
        problems=problems,
        error=error,
        products={k: str(v) for k, v in paths.items()},
        n_frames=n_frames,
        n_rejected=n_rejected,
    )


def _cube_summary(result) -> dict:
    """What monitoring trends per observation (stored with the cube product)."""
    return {
        "problems": list(result.problems),
        "n_frames": len(result.frames),
        "n_rejected": result.n_rejected,
        "centres_detector_xy": [list(c) for c in (result.centres_detector_xy or ())],
        "fwhm_px": list(result.fwhm_px or ()),
        "star_flux": list(result.star_flux or ()),
        "wavelengths_um": list(result.wavelengths_um),
        "pixel_scale_arcsec": result.pixel_scale_arcsec,
        # what the post-processing's error budget needs (reduction.postproc.budget)
        "centre_status": result.centre_status,
        "centre_uncertainty_px": [_json_number(v) for v in (result.centre_uncertainty_px or ())],
        "star_flux_rel_err": [_json_number(v) for v in (result.star_flux_rel_err or ())],
    }


def _json_number(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _record_calibrations(session, result, instrument: str, filter_: str, data_dir: Path, reduction: Reduction) -> float:
    """Write each reduced calibration once (keyed on its input files) and record it.

    Returns the seconds spent writing the FITS files (products, part of the science time).
    """
    writing = 0.0
    folder = data_dir / "calibrations" / instrument
    folder.mkdir(parents=True, exist_ok=True)
    fingerprints = {name: inputs_fingerprint(c.input_sha256) for name, c in result.reduced_calibrations.items()}
    existing = set(
        session.execute(
            select(Calibration.kind, Calibration.inputs_sha256).where(
                Calibration.instrument == instrument, Calibration.inputs_sha256.in_(set(fingerprints.values()))
            )
        ).all()
    )
    for name, calibration in result.reduced_calibrations.items():
        fingerprint = fingerprints[name]
        if (calibration.kind, fingerprint) in existing:
            continue
        path = folder / f"{calibration.kind}_{fingerprint[:12]}.fits"
        provenance = {
            "step": "calibration",
            "kind": calibration.kind,
            "dit": calibration.dit_s,
            "inputs": fingerprint,
            "code_version": code_version(),
            "parameters": {"quality": {k: v for k, v in calibration.quality.items() if isinstance(v, (int, float))}},
        }
        t0 = time.perf_counter()
        write_image(path, calibration.image, provenance, dtype=calibration.image.dtype)
        writing += time.perf_counter() - t0
        date_obs = None
        if calibration.date_obs:
            try:
                date_obs = datetime.fromisoformat(calibration.date_obs).replace(tzinfo=timezone.utc)
            except ValueError:
                date_obs = None
        # calibrations are public at once (ESO): a reduced one is released when its frames were taken
        released = (date_obs or datetime.now(timezone.utc)).date()
        (product,) = record_products(
            reduction,
            {calibration.kind: path},
            observation_id=None,
            release_date=released,
            meta={calibration.kind: {"inputs_sha256": list(calibration.input_sha256)}},
        )
        session.flush()
        session.add(
            Calibration(
                instrument=instrument,
                kind=calibration.kind,
                dit_s=calibration.dit_s,
                filter=filter_
                if calibration.kind
                in (
                    "master_flat",
                    "master_background",
                    "master_sky",
                    "ifs_spectra_positions",
                    "ifs_wavelength_solution",
                )
                else None,
                night=None if date_obs is None else by_name(instrument).night_of(date_obs),
                date_obs=date_obs,
                product_id=product.id,
                inputs_sha256=fingerprint,
                quality={
                    **{
                        k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                        for k, v in calibration.quality.items()
                    },
                    "inputs_sha256": fingerprint,
                },
            )
        )
        existing.add((calibration.kind, fingerprint))
    return writing
