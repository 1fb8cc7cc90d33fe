"""Annular PCA-ADI with a rotation threshold (Absil et al. 2013; vip's ``pca_annular``).

The frame is cut into annuli of width ``asize`` from ``radius_int``. In each
annulus and for each frame, the PCA library holds only the frames that have
rotated by more than ``delta_rot`` FWHM at the annulus centre (so a companion
does not subtract itself), truncated to the ``max_frames_lib`` closest in
angle; the frame is projected on the first ``ncomp`` principal components of
that library and the residuals are derotated and median-combined.

Same geometry as ``vip_hci.psfsub.pca_annular`` (annulus radii, threshold
``2 atan(delta_rot FWHM / 2 r)``, library selection). One difference by
design: where an annulus leaves a frame with fewer library frames than
``min_frames_lib`` or than ``ncomp`` (typically the innermost annulus with a
large threshold), vip-hci 2.1.1 raises ``RuntimeError`` and returns nothing;
here that annulus is skipped, its pixels are NaN in the result, and the reason
is logged and kept in ``PsfSubtractionResult.annuli``.
"""

from __future__ import annotations

import logging

import numpy as np

from ._checks import check_angles, check_cube, check_ncomp, check_positive
from ._threads import blas_single_thread
from .geometry import polar_grid
from .pca import COLLAPSES, combine, principal_components, project_out, scale_matrix
from .results import AnnulusInfo, PsfSubtractionResult

log = logging.getLogger(__name__)


def pa_threshold(radius: float, fwhm: float, delta_rot: float) -> float:
    """Rotation (deg) that moves a point at ``radius`` by ``delta_rot`` FWHM (vip's formula)."""
    return float(np.rad2deg(2 * np.arctan(delta_rot * fwhm / (2 * radius))))


def library_indices(angles: np.ndarray, frame: int, threshold: float, max_frames: int) -> np.ndarray:
    """Frames whose angle differs from ``angles[frame]`` by at least ``threshold``.

    Truncated to the ``max_frames`` closest in angle (vip's ``_find_indices_adi``
    with ``truncate=True`` for a monotonic sequence).
    """
    if threshold <= 0:
        return np.arange(angles.size)  # vip: no threshold, the whole cube (frame included)
    diff = np.abs(angles - angles[frame])
    candidates = np.nonzero(diff >= threshold)[0]
    limit = min(angles.size - 1, max_frames)
    if candidates.size > limit:
        candidates = np.sort(candidates[np.argsort(diff[candidates], kind="stable")[:limit]])
    return candidates


def annuli_geometry(shape: tuple[int, int], radius_int: float, asize: float) -> list[tuple[float, float]]:
    """``(inner, outer)`` radii of vip's annuli: ``n = int((ny/2 - radius_int) / asize)``."""
    ny = shape[0]
    n_annuli = int((ny / 2 - radius_int) / asize)
    out = []
    for ann in range(n_annuli):
        inner = radius_int + ann * asize - (1 if ann == n_annuli - 1 else 0)
        out.append((float(inner), float(inner + asize)))
    return out


@blas_single_thread
def pca_annular(
    cube,
    angles,
    fwhm: float,
    ncomp: int = 1,
    *,
    asize: float = 4,
    radius_int: float = 0,
    delta_rot: float = 1.0,
    min_frames_lib: int = 2,
    max_frames_lib: int = 200,
    scaling: str | None = None,
    collapse_mode: str = "median",
    derotation: str = "fft",
    workers: int = 1,
    reference=None,
) -> PsfSubtractionResult:
    """Annular PCA-ADI (``vip_hci.psfsub.pca_annular`` with ``n_segments=1``); ARDI with ``reference``.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        Centred ADI cube.
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    fwhm : float
        FWHM in pixels.
    ncomp : int
        Principal components per annulus.
    asize : float
        Annulus width in pixels.
    radius_int : float
        Inner radius of the first annulus.
    delta_rot : float
        Rotation threshold in FWHM at the annulus centre.
    min_frames_lib : int
        Minimum library size; annuli below it (or below ``ncomp``) are skipped.
    max_frames_lib : int
        Library truncation (closest frames in angle).
    scaling : str, optional
        vip's pixel scaling of the annulus matrix.
    collapse_mode : {'median', 'mean', 'sum'}
    derotation : {'fft', 'spline'}
        Derotation method (vip's Fourier three-shear rotation, or a cubic spline).
    workers : int
    reference : ndarray, (n_ref, y, x), optional
        Frames of reference stars, centred like the cube: ARDI, as vip's ``pca_annular(cube_ref=...)``.
        Each frame's library is the reference frames followed by the science frames beyond the rotation
        threshold; no annulus is skipped for want of science frames (the reference frames suffice).

    Returns
    -------
    PsfSubtractionResult
        NaN in skipped annuli; ``annuli`` lists every annulus.
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    fwhm = check_positive(fwhm, "fwhm")
    if reference is not None:
        reference = check_cube(reference, "reference")
        if reference.shape[-2:] != cube.shape[-2:]:
            raise ValueError(f"reference frames are {reference.shape[-2:]}, science frames {cube.shape[-2:]}")
    n_ref = 0 if reference is None else reference.shape[0]
    ncomp = check_ncomp(ncomp, cube.shape[0] + n_ref)
    asize = check_positive(asize, "asize")
    delta_rot = check_positive(delta_rot, "delta_rot", allow_zero=True)
    if collapse_mode not in COLLAPSES:
        raise ValueError(f"collapse_mode must be one of {COLLAPSES}, got {collapse_mode!r}")
    nt, ny, nx = cube.shape
    rho, _ = polar_grid((ny, nx))
    residuals = np.zeros_like(cube)
    nan_mask = np.zeros((ny, nx), bool)
    processed = np.zeros((ny, nx), bool)
    infos: list[AnnulusInfo] = []
    notes: list[str] = []
    for index, (inner, outer) in enumerate(annuli_geometry((ny, nx), radius_int, asize)):
        pixels = (rho >= inner) & (rho < outer)
        centre = inner + asize / 2.0
        threshold = pa_threshold(centre, fwhm, delta_rot) if delta_rot > 0 else 0.0
        if not pixels.any():
            continue
        matrix = scale_matrix(cube[:, pixels], scaling)
        ref_matrix = None if reference is None else scale_matrix(reference[:, pixels], scaling)
        libraries = [library_indices(angles, i, threshold, max_frames_lib) for i in range(nt)]
        sizes = np.array([lib.size for lib in libraries]) + n_ref
        smallest = int(sizes.min())
        if smallest < (ncomp if reference is not None else max(min_frames_lib, ncomp)):
            worst = int(np.argmin(sizes))
            reason = (
                f"annulus {index} ({inner:.1f}-{outer:.1f} px): rotation threshold "
                f"{threshold:.1f} deg ({delta_rot:g} FWHM at {centre:.1f} px) leaves frame {worst} "
                f"with {smallest} library frame(s), fewer than "
                + (f"ncomp={ncomp}" if smallest >= min_frames_lib else f"min_frames_lib={min_frames_lib}")
                + "; annulus skipped (NaN)"
            )
            log.warning(reason)
            notes.append(reason)
            nan_mask |= pixels
            infos.append(AnnulusInfo(index, inner, outer, threshold, smallest, ncomp, True, reason))
            continue
        out = np.empty_like(matrix)
        cache: dict[bytes, np.ndarray] = {}
        for i, lib in enumerate(libraries):
            key = lib.tobytes()
            comps = cache.get(key)
            if comps is None:
                library = matrix[lib] if ref_matrix is None else np.vstack([ref_matrix, matrix[lib]])
                comps = principal_components(library, ncomp)
                cache[key] = comps
            out[i] = project_out(matrix[i : i + 1], comps)[0]
        residuals[:, pixels] = out
        processed |= pixels
        infos.append(AnnulusInfo(index, inner, outer, threshold, smallest, ncomp))
    frame, derotated = combine(residuals, angles, collapse_mode, None, derotation, workers)
    # like vip (mask_val=0): what was not processed stays 0 after the derotation (no ringing into it)
    derotated[:, ~processed] = 0.0
    frame[~processed] = 0.0
    if nan_mask.any():
        frame[nan_mask] = np.nan
    params = {
        "ncomp": ncomp,
        "asize": asize,
        "radius_int": radius_int,
        "delta_rot": delta_rot,
        "fwhm": fwhm,
        "min_frames_lib": min_frames_lib,
        "max_frames_lib": max_frames_lib,
        "scaling": scaling,
        "collapse": collapse_mode,
        "derotation": derotation,
        "n_reference": n_ref,
    }
    return PsfSubtractionResult(
        residuals=frame,
        residual_cube=derotated,
        algorithm="annular-pca" if reference is None else "ardi-annular-pca",
        parameters=params,
        annuli=tuple(infos),
        notes=tuple(notes),
    )
