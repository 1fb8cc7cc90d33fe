"""Register already-calibrated cubes from other instruments, as DIVA+ holds them.

A calibrated ADI cube (with its derotation angles and off-axis PSF) reduced
elsewhere becomes an observation of its instrument with ``origin='external'``;
its files are copied into the data directory (the catalog must not depend on a
user's folder) and recorded as products of an ``external-registration``
reduction whose parameters say where they came from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from reduction.instruments import by_name
from reduction.rawio import sha256_file

from .catalog.db import Catalog
from .catalog.models import Observation, Reduction
from .catalog.registry import add_months, ensure_programme, ensure_target
from .ingest import ensure_instruments
from .recording import record_products
from .reports import external_folder

STEP = "external-registration"
STEP_VERSION = "1"


class ExternalCubeError(ValueError):
    """An external cube that cannot be registered, naming the file."""


@dataclass(frozen=True)
class ExternalCube:
    """What describes a calibrated cube reduced outside HC-DC."""

    cube: Path
    angles: Path
    psf: Path
    pixel_scale_arcsec: float
    instrument: str
    target: str
    night: date
    programme: str | None = None
    pi: str | None = None
    filter: str | None = None
    release_date: date | None = None
    reference: str | None = None  #: publication or data set the cube comes from
    #: added to every angle of the file: its convention must give north up (a pupil or true-north offset the
    #: provider left out); recorded with ``angle_offset_source``
    angle_offset_deg: float = 0.0
    angle_offset_source: str | None = None
    #: re-centre the cube at registration: ``negative`` (vortex/AGPM dark hole) or ``positive`` 2-D Gaussian
    #: fits per frame (vip's cube_recenter_2dfit recipe); None keeps the provider's centring
    recenter: str | None = None
    #: 1-sigma (px per axis) of the provider's centring when the cube is not re-centred here
    centre_uncertainty_px: float = 1.0
    #: the star's flux in a 1-FWHM-diameter aperture, in cube units (gives contrasts)
    star_flux: float | None = None


@dataclass(frozen=True)
class RegistrationResult:
    observation_id: int
    key: str
    created: bool
    n_frames: int
    field_rotation_deg: float


def _load(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ExternalCubeError(f"{path}: {what} file does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            data = next((h.data for h in hdul if h.data is not None), None)
    except Exception as exc:
        raise ExternalCubeError(f"{path}: cannot read {what} as FITS: {exc}") from exc
    if data is None:
        raise ExternalCubeError(f"{path}: {what} file has no data array")
    return np.asarray(data)


def validate(spec: ExternalCube) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the three files against each other; return cube, angles, psf.

    Raises
    ------
    ExternalCubeError
        With the file and what is wrong.
    """
    cube = _load(spec.cube, "cube")
    angles = _load(spec.angles, "angles").astype(float).ravel()
    psf = _load(spec.psf, "PSF")
    if cube.ndim not in (3, 4):
        raise ExternalCubeError(f"{spec.cube}: cube must be (t, y, x) or (λ, t, y, x); got shape {cube.shape}")
    n_frames = cube.shape[-3]
    if angles.size != n_frames:
        raise ExternalCubeError(f"{spec.angles}: {angles.size} angles for {n_frames} frames in {spec.cube}")
    if not np.all(np.isfinite(angles)):
        raise ExternalCubeError(f"{spec.angles}: angles contain NaN or infinity")
    if psf.ndim not in (2, 3) or psf.shape[-1] > cube.shape[-1] or psf.shape[-2] > cube.shape[-2]:
        raise ExternalCubeError(f"{spec.psf}: PSF shape {psf.shape} does not fit frames of {cube.shape[-2:]}")
    if not np.isfinite(cube).any():
        raise ExternalCubeError(f"{spec.cube}: cube has no finite pixel")
    if not (0 < spec.pixel_scale_arcsec < 1):
        raise ExternalCubeError(f"pixel scale {spec.pixel_scale_arcsec} arcsec/px is not plausible")
    by_name(spec.instrument)  # raises KeyError with the known names
    if spec.recenter not in (None, "negative", "positive"):
        raise ExternalCubeError(f"recenter must be negative, positive or none; got {spec.recenter!r}")
    if spec.angle_offset_deg and not spec.angle_offset_source:
        raise ExternalCubeError("an angle offset needs its source (where the offset comes from)")
    if not (np.isfinite(spec.centre_uncertainty_px) and spec.centre_uncertainty_px >= 0):
        raise ExternalCubeError(f"centre uncertainty {spec.centre_uncertainty_px} px is not a number >= 0")
    if spec.star_flux is not None and not (np.isfinite(spec.star_flux) and spec.star_flux > 0):
        raise ExternalCubeError(f"star flux {spec.star_flux} is not a positive number")
    return cube, angles, psf


def _prepare_cube(spec: ExternalCube, cube: np.ndarray, psf: np.ndarray, destination: Path) -> dict:
    """Write the registered cube (re-centred when asked); return what the post-processing needs to know of it."""
    meta: dict = {"pixel_scale_arcsec": spec.pixel_scale_arcsec}
    if spec.star_flux is not None:
        bands = cube.shape[0] if cube.ndim == 4 else 1
        meta["star_flux"] = [spec.star_flux] * bands
    if spec.recenter is None:
        shutil.copyfile(spec.cube, destination)
        bands = cube.shape[0] if cube.ndim == 4 else 1
        meta.update({"centre_status": "given", "centre_uncertainty_px": [spec.centre_uncertainty_px] * bands})
        return meta
    from reduction.postproc import normalize_psf, recenter_cube

    cubes = cube.astype(float) if cube.ndim == 4 else cube.astype(float)[None]
    psfs = psf if psf.ndim == 3 else np.repeat(psf[None], len(cubes), axis=0)
    centred, errors = [], []
    for band_cube, band_psf in zip(cubes, psfs):
        fwhm = normalize_psf(np.asarray(band_psf, dtype=float)).fwhm
        result = recenter_cube(band_cube, fwhm, negative=spec.recenter == "negative")
        centred.append(result.cube)
        errors.append(result.centre_scatter_px)
    data = np.stack(centred) if cube.ndim == 4 else centred[0]
    header = fits.Header()
    header["HIERARCH HCDC RECENTER"] = (spec.recenter, "2-D Gaussian fit per frame at registration")
    fits.writeto(destination, data.astype(np.float32), header, overwrite=True)
    meta.update({"centre_status": "fitted", "centre_uncertainty_px": errors, "recenter": spec.recenter})
    return meta


def register_external(
    catalog: Catalog, spec: ExternalCube, data_dir: Path, default_proprietary_months: int = 12
) -> RegistrationResult:
    """Register (idempotently) an external calibrated cube as an observation."""
    cube, angles, psf = validate(spec)
    hashes = {
        kind: sha256_file(path) for kind, path in (("cube", spec.cube), ("angles", spec.angles), ("psf", spec.psf))
    }
    options = {
        "angle_offset_deg": spec.angle_offset_deg,
        "angle_offset_source": spec.angle_offset_source,
        "recenter": spec.recenter,
        "centre_uncertainty_px": spec.centre_uncertainty_px,
        "star_flux": spec.star_flux,
    }
    # the same files registered with other options are another reduction of the data: another observation key
    digest = hashlib.sha256(("".join(hashes.values()) + json.dumps(options, sort_keys=True)).encode()).hexdigest()
    digest = digest[:10]
    angles = angles + spec.angle_offset_deg
    instrument = by_name(spec.instrument)
    key = "/".join(
        [instrument.name, spec.night.isoformat(), "external", spec.target.replace("/", "_"), spec.filter or "-", digest]
    )
    unwrapped = np.rad2deg(np.unwrap(np.deg2rad(angles)))
    rotation = float(unwrapped.max() - unwrapped.min())
    with catalog.session() as session:
        ensure_instruments(session)
        existing = session.scalar(select(Observation).where(Observation.key == key))
        if existing is not None:
            return RegistrationResult(existing.id, key, False, existing.n_science_frames, rotation)
        programme = ensure_programme(session, spec.programme, spec.pi)
        target = ensure_target(session, spec.target)
        release = spec.release_date or add_months(spec.night, default_proprietary_months)
        observation = Observation(
            key=key,
            instrument=instrument.name,
            target_id=target.id,
            programme_id=programme.id if programme else None,
            origin="external",
            night=spec.night,
            filter=spec.filter,
            n_science_files=1,
            n_science_frames=int(cube.shape[-3]),
            field_rotation_deg=rotation,
            pixel_scale_arcsec=spec.pixel_scale_arcsec,
            release_date=release,
            status="complete",
            external={
                "reference": spec.reference,
                "sources": {k: str(p) for k, p in (("cube", spec.cube), ("angles", spec.angles), ("psf", spec.psf))},
                "shape": list(cube.shape),
            },
        )
        session.add(observation)
        session.flush()
        now = datetime.now(timezone.utc)
        reduction = Reduction(
            observation_id=observation.id,
            step=STEP,
            step_version=STEP_VERSION,
            parameters={
                "pixel_scale_arcsec": spec.pixel_scale_arcsec,
                "reference": spec.reference,
                "instrument": instrument.name,
                "filter": spec.filter,
                **options,
            },
            inputs=[
                {"path": str(p), "sha256": hashes[k]}
                for k, p in (("cube", spec.cube), ("angles", spec.angles), ("psf", spec.psf))
            ],
            status="done",
            started_at=now,
            finished_at=now,
            release_date=release,
        )
        session.add(reduction)
        session.flush()
        folder = external_folder(data_dir, observation.id)
        folder.mkdir(parents=True, exist_ok=True)
        cube_meta = _prepare_cube(spec, cube, psf, folder / "cube.fits")
        if spec.angle_offset_deg:
            fits.writeto(folder / "angles.fits", angles.astype(np.float64), overwrite=True)
        else:
            shutil.copyfile(spec.angles, folder / "angles.fits")
        shutil.copyfile(spec.psf, folder / "psf.fits")
        for kind, source in (("cube", spec.cube), ("angles", spec.angles), ("psf", spec.psf)):
            meta = {"origin": "external", "source": str(source)}
            if kind == "cube":
                meta.update(cube_meta)
            if kind == "angles" and spec.angle_offset_deg:
                meta.update(
                    {"angle_offset_deg": spec.angle_offset_deg, "angle_offset_source": spec.angle_offset_source}
                )
            copied = kind == "psf" or (kind == "angles" and not spec.angle_offset_deg)
            record_products(
                reduction,
                {kind: folder / f"{kind}.fits"},
                observation_id=observation.id,
                release_date=release,
                meta={kind: meta},
                sha256={kind: hashes[kind]} if copied else None,
            )
        return RegistrationResult(observation.id, key, True, int(cube.shape[-3]), rotation)
