"""Post-processing catalog observations: detections and detection limits with provenance.

``postprocess_catalog_observation`` takes the calibrated cube of an
observation (the latest done ``preprocess`` reduction, or an external
registration), runs :func:`reduction.postproc.pipeline.postprocess` on every
wavelength, writes residuals, S/N maps, detection and contrast-curve tables,
and records ``detections`` and ``detection_limits`` rows tied to the
reduction. A failure is recorded with its reason, never raised.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from reduction.instruments import by_name
from reduction.postproc.budget import Systematics, instrument_systematics
from reduction.postproc.pipeline import REFERENCE_ALGORITHMS, PostprocessParameters, PostprocessStep
from reduction.postproc.products import write_products
from reduction.postproc.tables import catalog_detections, catalog_limit, contrast_table, detections_table

from .catalog.db import Catalog
from .catalog.models import (
    Detection,
    DetectionLimit,
    DetectionLimitPoint,
    Observation,
    Product,
    Reduction,
)
from .outcome import StepOutcome
from .processing import _finish, start_reduction
from .recording import inputs_fingerprint, record_products, reduction_provenance
from .reports import product_folder

STEP = PostprocessStep.name
#: A candidate whose arc swept by the field rotation is shorter than this many FWHM is kept but
#: flagged ``low-rotation``: ADI cannot tell it from a quasi-static speckle there (self-subtraction,
#: static speckle pairs), so it is not counted as a detection.
MIN_ARC_FWHM = 1.0
#: Multi-band (DBI, IFS) vetting: a point source is at the same place at every wavelength, a
#: speckle moves radially outwards by r x (λ2/λ1 - 1). A candidate is confirmed when another band has
#: one closer to its own position than to where a speckle would have gone, and within
#: max(CONFIRM_MIN_PX, CONFIRM_CHROMATIC_FRACTION x r x (λ2/λ1 - 1), CONFIRM_SIGMAS x σ) pixels, σ the
#: two positions' combined error when both have one (two fits of one bright source 1.4σ apart must not
#: be called a speckle); otherwise it is kept with status ``single-band`` (the SPHERE surveys' first
#: vetting test).
CONFIRM_MIN_PX = 0.75
CONFIRM_CHROMATIC_FRACTION = 0.5
#: 99.7 % of the distances between two measurements of one point source (2-D Gaussian: Rayleigh)
CONFIRM_SIGMAS = 3.44
SOURCE_STEPS = ("preprocess", "external-registration")
#: The products of a source reduction that post-processing reads.
INPUT_KINDS = ("cube", "angles", "psf")


log = logging.getLogger(__name__)


def archive_references(catalog: Catalog, observation_id: int, frame_shape, params: PostprocessParameters):
    """The reference library of the RDI/ARDI algorithms in ``params``, from the catalog; or None.

    Observations with the same set-up, of other targets only (:func:`hcdc.references.reference_library`),
    and only those the science observation's own programme may see: released ones and the programme's
    own. A reference's frames shape the principal components subtracted from the science frames, so
    they leave a (faint) imprint in the residuals, which the science programme's PI sees as soon as the
    reduction exists: a proprietary observation of another programme is therefore never a reference,
    not even in the data center's own campaigns, until it is released. Returns ``(library, params,
    note)``: when no reference exists, a main RDI/ARDI algorithm is an error, other ones are left out of
    ``params`` and ``note`` says why.
    """
    from .access import Principal, visibility_filter
    from .references import reference_library

    needs = {params.subtraction.algorithm, *params.other_algorithms} & set(REFERENCE_ALGORITHMS)
    if not needs:
        return None, params, None
    try:
        with catalog.session() as session:
            science = session.get(Observation, observation_id)
            audience = Principal(
                f"programme-{science.programme_id}",
                programme_ids=frozenset({science.programme_id}) if science.programme_id else frozenset(),
            )
            visible_ids = set(session.scalars(select(Observation.id).where(visibility_filter(Observation, audience))))
            library = reference_library(session, observation_id, frame_shape=frame_shape, visible_ids=visible_ids)
    except LookupError as exc:
        if params.subtraction.algorithm in REFERENCE_ALGORITHMS:
            raise NoInputError(f"{params.subtraction.algorithm}: {exc}") from None
        kept = ",".join(a for a in params.other_algorithms if a not in REFERENCE_ALGORITHMS)
        note = f"{', '.join(sorted(needs))} not run: {exc}"
        log.warning("observation %s: %s", observation_id, note)
        return None, dataclasses.replace(params, confirm_with=kept), note
    return library, params, None


class NoInputError(LookupError):
    """The observation has no calibrated cube to post-process yet."""


def source_reduction(session, observation_id: int, source_reduction_id: int | None = None) -> Reduction:
    """The reduction whose cube is post-processed: the given one, or the newest done source."""
    if source_reduction_id is not None:
        reduction = session.get(Reduction, source_reduction_id)
        if reduction is None or reduction.status != "done":
            raise NoInputError(f"reduction {source_reduction_id} is not a done reduction")
        return reduction
    newest = newest_source_reductions(session, [observation_id]).get(observation_id)
    if newest is None:
        raise NoInputError(f"observation {observation_id} has no calibrated cube (run the pre-processing first)")
    return session.get(Reduction, newest)


def newest_source_reductions(session, observation_ids: list[int]) -> dict[int, int]:
    """``{observation id: id of its newest done source reduction}``, in one query: the cube post-processing
    reads (pre-processing, or registration of an external cube; the latest finished, then the highest id).

    The one definition of that choice: :func:`source_reduction` for one observation, and the campaign
    planner (:func:`hcdc.pipeline.runner.step_inputs`) for thousands at once.
    """
    newest: dict[int, int] = {}
    for observation_id, reduction_id in session.execute(
        select(Reduction.observation_id, Reduction.id)
        .where(
            Reduction.observation_id.in_(observation_ids),
            Reduction.step.in_(SOURCE_STEPS),
            Reduction.status == "done",
        )
        .order_by(Reduction.observation_id, Reduction.finished_at.desc(), Reduction.id.desc())
    ):
        newest.setdefault(observation_id, reduction_id)
    return newest


def input_products(reduction: Reduction) -> dict[str, Product]:
    products = {p.kind: p for p in reduction.products if p.kind in INPUT_KINDS}
    missing = set(INPUT_KINDS) - set(products)
    if missing:
        raise NoInputError(f"reduction {reduction.id} lacks its {', '.join(sorted(missing))} product(s)")
    return products


def postprocess_catalog_observation(
    catalog: Catalog,
    observation_id: int,
    data_dir: Path,
    params: PostprocessParameters = PostprocessParameters(),
    *,
    source_reduction_id: int | None = None,
    campaign_id: int | None = None,
    reduction_id: int | None = None,
) -> StepOutcome:
    """Post-process one observation (every wavelength) and record detections and limits."""
    if reduction_id is None:
        reduction_id = start_reduction(
            catalog,
            observation_id,
            STEP,
            PostprocessStep.version,
            params.to_dict(),
            params.fingerprint(),
            campaign_id=campaign_id,
        )
    out_dir = product_folder(data_dir, observation_id, STEP, reduction_id)
    paths: dict[str, Path] = {}
    product_meta: dict[str, dict] = {}
    n_detections = 0
    science_seconds = 0.0
    try:
        inputs = load_inputs(catalog, observation_id, reduction_id, source_reduction_id)
        cube_meta, target_id, release = inputs.cube_meta, inputs.target_id, inputs.release
        pixel_scale, provenance = inputs.pixel_scale, inputs.provenance
        instrument, filter_name = inputs.instrument, inputs.filter_name
        star_fluxes = cube_meta.get("star_flux") or []
        wavelengths = cube_meta.get("wavelengths_um") or []
        cube, angles, psf = inputs.cube, inputs.angles, inputs.psf
        rotation_rad = float(np.deg2rad(np.ptp(np.rad2deg(np.unwrap(np.deg2rad(angles))))))
        cubes = cube if cube.ndim == 4 else cube[None]
        psfs = psf if psf.ndim == 3 else np.repeat(psf[None], len(cubes), axis=0)
        library, params, reference_note = archive_references(catalog, observation_id, cubes.shape[-2:], params)
        if library is not None:
            with catalog.session() as session:
                reduction = session.get(Reduction, reduction_id)
                hashes = [
                    p.sha256
                    for r in library.reduction_ids
                    for p in session.get(Reduction, r).products
                    if p.kind == "cube"
                ]
                # traceable without naming other programmes' observations in this reduction's products: the
                # headers get the kind and the combined checksum, the catalog row the reductions
                reduction.inputs = list(reduction.inputs or []) + [
                    {
                        "kind": "reference-library",
                        "sha256": inputs_fingerprint(hashes),
                        "reduction_ids": list(library.reduction_ids),
                    }
                ]
                provenance = reduction_provenance(reduction)
        out_dir.mkdir(parents=True, exist_ok=True)
        detections: list[Detection] = []
        limits: list[DetectionLimit] = []
        for band, (band_cube, band_psf) in enumerate(zip(cubes, psfs)):
            star_flux = float(star_fluxes[band]) if band < len(star_fluxes) and star_fluxes[band] else None
            wavelength = float(wavelengths[band]) if band < len(wavelengths) else None
            # the science time covers what a plain script would do too: compute and write the products
            systematics = observation_systematics(instrument, filter_name, cube_meta, band)
            t0 = time.perf_counter()
            result = PostprocessStep()(
                params,
                cube=band_cube,
                angles=angles,
                psf=band_psf,
                pixel_scale=pixel_scale,
                star_flux=star_flux,
                systematics=systematics,
                reference_cube=None if library is None else library.frames[min(band, len(library.frames) - 1)],
            )
            paths.update(
                write_products(
                    result,
                    params,
                    out_dir,
                    {
                        **provenance,
                        "band": band + 1,
                        "wave_um": wavelength,
                        "systematics": result.systematics.to_dict(),
                    },
                    pixel_scale=pixel_scale,
                    star_flux=star_flux,
                    suffix=f"_b{band + 1}" if len(cubes) > 1 else "",
                )
            )
            suffix = f"_b{band + 1}" if len(cubes) > 1 else ""
            # the budget's inputs, with the table of detections they apply to (hcdc provenance --detection)
            product_meta[f"detections{suffix}"] = {
                "band": band + 1,
                "wavelength_um": wavelength,
                "systematics": result.systematics.to_dict(),
                "algorithms": [params.subtraction.algorithm, *params.other_algorithms],
                **({"reference_library": reference_note} if reference_note else {}),
                **(
                    {"reference_library": f"{len(library.observation_ids)} observation(s) of other targets"}
                    if library is not None
                    else {}
                ),
            }
            table = detections_table(result, pixel_scale, star_flux)
            curve = contrast_table(result.contrast)
            science_seconds += time.perf_counter() - t0
            fwhm = float(result.psf.fwhm)
            for row, fields in zip(table, catalog_detections(table, wavelength)):
                arc_fwhm = float(row["sep_px"]) * rotation_rad / fwhm
                status = "candidate" if arc_fwhm >= MIN_ARC_FWHM else "low-rotation"
                if status == "candidate" and not agreed(str(row["found_by"]), params):
                    status = "single-algorithm"
                detections.append(
                    Detection(
                        status=status,
                        reduction_id=reduction_id,
                        observation_id=observation_id,
                        target_id=target_id,
                        release_date=release,
                        **fields,
                    )
                )
            # the main algorithm's limit, then each other algorithm's own (confirm_with)
            for algorithm, contrast, table in (
                (params.subtraction.algorithm, result.contrast, curve),
                *((run.algorithm, run.contrast, contrast_table(run.contrast)) for run in result.others),
            ):
                fields = catalog_limit(table, contrast.sigma, algorithm, wavelength, star_flux)
                limits.append(limit_row(fields, reduction_id, observation_id, release))
        if len(cubes) > 1:
            _vet_across_bands(detections, pixel_scale)
        with catalog.session() as session:
            reduction = session.get(Reduction, reduction_id)
            session.add_all(detections + limits)
            record_products(reduction, paths, observation_id=observation_id, release_date=release, meta=product_meta)
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


@dataclasses.dataclass
class PostprocessInputs:
    """What a post-processing step reads of an observation: the calibrated cube, angles and PSF of its
    source reduction, their metadata, and the reduction's provenance (its inputs recorded)."""

    cube: np.ndarray
    angles: np.ndarray
    psf: np.ndarray
    cube_meta: dict
    target_id: int | None
    release: Any
    pixel_scale: float
    provenance: dict
    instrument: Any
    filter_name: str | None


def load_inputs(
    catalog: Catalog, observation_id: int, reduction_id: int, source_reduction_id: int | None = None
) -> PostprocessInputs:
    """Record the source reduction's products as ``reduction_id``'s inputs and read them (NoInputError when a
    product is missing on disk)."""
    with catalog.session() as session:
        observation = session.get(Observation, observation_id)
        source = source_reduction(session, observation_id, source_reduction_id)
        products = input_products(source)
        cube_meta = products["cube"].meta or {}
        reduction = session.get(Reduction, reduction_id)
        reduction.inputs = [
            {"reduction_id": source.id, "kind": p.kind, "path": p.path, "sha256": p.sha256} for p in products.values()
        ]
        provenance = reduction_provenance(reduction)
        paths_in = {kind: Path(p.path) for kind, p in products.items()}
        fixed = dict(
            cube_meta=cube_meta,
            target_id=observation.target_id,
            release=observation.release_date,
            pixel_scale=cube_meta.get("pixel_scale_arcsec") or observation.pixel_scale_arcsec,
            provenance=provenance,
            instrument=by_name(observation.instrument),
            filter_name=observation.filter,
        )
    for kind, path in paths_in.items():
        if not path.is_file():
            raise NoInputError(f"{kind} product {path} is missing on disk")
    return PostprocessInputs(
        cube=fits.getdata(paths_in["cube"]).astype(float),
        angles=np.asarray(fits.getdata(paths_in["angles"]), dtype=float).ravel(),
        psf=fits.getdata(paths_in["psf"]).astype(float),
        **fixed,
    )


def limit_row(fields: dict, reduction_id: int, observation_id: int, release) -> DetectionLimit:
    """A ``detection_limits`` row with its points from :func:`reduction.postproc.tables.catalog_limit`'s fields."""
    limit = DetectionLimit(
        reduction_id=reduction_id,
        observation_id=observation_id,
        sigma=fields["sigma"],
        algorithm=fields["algorithm"],
        wavelength_um=fields["wavelength_um"],
        release_date=release,
    )
    limit.points.extend(DetectionLimitPoint(**point) for point in fields["points"])
    return limit


def observation_systematics(instrument, filter_name: str | None, cube_meta: dict, band: int) -> Systematics:
    """What band ``band`` of an observation adds to its detections' errors (reduction.postproc.budget).

    The instrument's published calibration, and what the pre-processing (or the registration) measured:
    the star centre's uncertainty and how it was found, the star flux's relative uncertainty. A cube made
    before these were recorded has its centre term unmeasured (NaN, status ``given``).
    """

    def per_band(key: str) -> float:
        values = cube_meta.get(key) or []
        value = values[band] if band < len(values) else None
        return float("nan") if value is None else float(value)

    status = cube_meta.get("centre_status") or "given"
    centre_source = {
        "waffle": "waffle spots of the CENTER frames: the larger of the files' scatter and the diagonals' asymmetry",
        "centre-from-header": "SEQ CORO XC/YC: the pre-processing's header_centre_uncertainty_px",
        "coronagraph-core": "the coronagraphic core of a science frame (IFS fallback)",
        "fitted": "2-D Gaussian fit per frame at registration: scatter of the fitted centres",
        "given": "as registered (the provider's centring; its stated or default uncertainty)",
    }.get(status, status)
    return instrument_systematics(
        instrument,
        filter_name,
        centre_px=per_band("centre_uncertainty_px"),
        centre_status=status,
        centre_source=centre_source,
        star_flux_rel=per_band("star_flux_rel_err"),
        star_flux_source="scatter of the FLUX files' fluxes and the neutral density's transmission",
    )


def agreed(found_by: str, params) -> bool:
    """Whether a candidate passes the multi-algorithm vetting (``single-algorithm`` otherwise).

    With other algorithms run (``confirm_with``), a candidate the main algorithm does not find is
    flagged, and with ``require_agreement`` also one that fewer than two algorithms find. With one
    algorithm nothing is compared and every candidate passes.
    """
    if not params.other_algorithms:
        return True
    algorithms = [a for a in found_by.split("+") if a]
    if params.subtraction.algorithm not in algorithms:
        return False
    return len(algorithms) >= 2 or not params.require_agreement


def _offset_arcsec(d: Detection) -> tuple[float, float]:
    """(east, north) offset of a detection from the star, arcsec."""
    return d.sep_arcsec * np.sin(np.deg2rad(d.pa_deg)), d.sep_arcsec * np.cos(np.deg2rad(d.pa_deg))


def _position_variance_arcsec2(d: Detection) -> float:
    """Positional variance (arcsec², per axis, averaged over radial and tangential), NaN without errors."""
    if d.sep_err_arcsec is None or d.pa_err_deg is None:
        return float("nan")
    tangential = d.sep_arcsec * np.deg2rad(d.pa_err_deg)
    return float(0.5 * (d.sep_err_arcsec**2 + tangential**2))


def same_point_source(
    d: Detection, other: Detection, min_arcsec: float, chromatic_fraction: float = CONFIRM_CHROMATIC_FRACTION
) -> bool:
    """Is ``other`` (another wavelength) the point source ``d`` rather than ``d``'s speckle? (see the
    multi-band vetting constants above; ``min_arcsec``: ``CONFIRM_MIN_PX`` at the coarser pixel scale;
    ``chromatic_fraction``: the allowance, as a fraction of the chromatic shift)."""
    if not (d.wavelength_um and other.wavelength_um) or other.wavelength_um == d.wavelength_um:
        return False
    ratio = other.wavelength_um / d.wavelength_um
    x, y = _offset_arcsec(d)
    ox, oy = _offset_arcsec(other)
    as_point = np.hypot(x - ox, y - oy)
    as_speckle = np.hypot(x * ratio - ox, y * ratio - oy)  # d's speckle seen at the other wavelength
    sigma = np.sqrt(_position_variance_arcsec2(d) + _position_variance_arcsec2(other))  # per axis
    tolerance = max(
        min_arcsec,
        chromatic_fraction * d.sep_arcsec * abs(ratio - 1),
        CONFIRM_SIGMAS * sigma if np.isfinite(sigma) else 0.0,
    )
    return bool(as_point <= tolerance and as_point < as_speckle)


def _vet_across_bands(detections: list[Detection], pixel_scale: float) -> None:
    """Flag candidates not seen at the same position in another band (``single-band``)."""
    for d in detections:
        if d.status != "candidate":
            continue
        if not any(same_point_source(d, other, CONFIRM_MIN_PX * pixel_scale) for other in detections):
            d.status = "single-band"
