"""Spectral (SDI) and angular+spectral (ASDI) differential imaging with PCA.

For a 4-D cube ``(λ, t, y, x)`` (IFS, or IRDIS dual-band with 2 channels) and
the wavelengths, each frame's channels are magnified by ``λ_max / λ`` about the
star so the speckles line up (vip's ``scale_list``; a companion then moves
radially from channel to channel), PCA models and removes the speckles, the
channels are scaled back and averaged, and the frames are derotated and
combined. Two modes, as vip's ``pca(..., adimsdi=...)``:

``"single"``
    one PCA on all ``λ × t`` rescaled frames together;
``"double"``
    a spectral PCA per frame (``ncomp`` components of the ``λ`` rescaled
    channels), then full-frame PCA-ADI (``ncomp_adi``) on the per-frame
    channel averages (skipped when ``ncomp_adi`` is None: derotate and combine).
"""

from __future__ import annotations

import numpy as np

from ._checks import as_float_array, check_angles, check_cube, check_finite, check_ncomp
from ._threads import blas_single_thread
from .geometry import rescale_frames
from .pca import COLLAPSES, combine, pca_residuals, principal_components, project_out, scale_matrix
from .results import PsfSubtractionResult

MODES = ("single", "double")


def scale_factors(wavelengths) -> np.ndarray:
    """vip's ``scale_list``: ``λ_max / λ`` (>= 1)."""
    lam = as_float_array(wavelengths, "wavelengths")
    if lam.ndim != 1:
        raise TypeError(f"wavelengths must be a 1-D vector, got shape {lam.shape}")
    check_finite(lam, "wavelengths")
    if np.any(lam <= 0):
        raise ValueError("wavelengths must be > 0")
    return lam.max() / lam


@blas_single_thread
def pca_asdi(
    cube,
    angles,
    wavelengths,
    ncomp: int = 1,
    *,
    mode: str = "single",
    ncomp_adi: int | None = None,
    scaling: str | None = None,
    collapse_mode: str = "median",
    derotation: str = "fft",
    workers: int = 1,
) -> PsfSubtractionResult:
    """ASDI/SDI PCA of a 4-D ``(λ, t, y, x)`` cube.

    Parameters
    ----------
    cube : ndarray, (λ, t, y, x)
        Centred multi-wavelength cube (at least 2 channels).
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention); zeros for pure SDI.
    wavelengths : ndarray, (λ,)
        Wavelengths (any unit, e.g. micrometres).
    ncomp : int
        Principal components of the (first) PCA.
    mode : {'single', 'double'}
    ncomp_adi : int, optional
        ``"double"`` only: components of the second (ADI) PCA.
    scaling : str, optional
    collapse_mode : {'median', 'mean', 'sum'}
        Combination of the derotated frames (channels are always averaged).
    derotation : {'fft', 'spline'}
        Derotation method (vip's Fourier three-shear rotation, or a cubic spline).
    workers : int

    Returns
    -------
    PsfSubtractionResult
        ``residual_cube`` holds the derotated, channel-averaged frames.
    """
    cube = check_cube(cube, ndim=(4,))
    nl, nt, ny, nx = cube.shape
    if nl < 2:
        raise ValueError("SDI needs at least 2 wavelength channels")
    angles = check_angles(angles, nt)
    factors = scale_factors(wavelengths)
    if factors.size != nl:
        raise ValueError(f"{factors.size} wavelengths for a cube with {nl} channels")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if collapse_mode not in COLLAPSES:
        raise ValueError(f"collapse_mode must be one of {COLLAPSES}, got {collapse_mode!r}")
    per_channel = channel_residuals(cube, factors, ncomp, mode=mode, ncomp_adi=None, scaling=scaling)
    per_frame = per_channel.mean(axis=0)
    if mode == "double" and ncomp_adi is not None:
        ncomp_adi = check_ncomp(ncomp_adi, nt, "ncomp_adi")
        per_frame = pca_residuals(per_frame, ncomp_adi, scaling=scaling)
    ncomp = check_ncomp(ncomp, nl * nt if mode == "single" else nl)
    frame, derotated = combine(per_frame, angles, collapse_mode, None, derotation, workers)
    params = {
        "ncomp": ncomp,
        "ncomp_adi": ncomp_adi,
        "mode": mode,
        "wavelengths": [float(w) for w in np.ravel(wavelengths)],
        "scaling": scaling,
        "collapse": collapse_mode,
        "derotation": derotation,
    }
    return PsfSubtractionResult(residuals=frame, residual_cube=derotated, algorithm="asdi-pca", parameters=params)


def channel_residuals(
    cube: np.ndarray,
    factors: np.ndarray,
    ncomp: int,
    *,
    mode: str = "single",
    ncomp_adi: int | None = None,
    scaling: str | None = None,
    basis_from: np.ndarray | None = None,
) -> np.ndarray:
    """Non-derotated ASDI residuals of every channel and frame, ``(λ, t, y, x)``, at the cube's own scale.

    The channels of each frame are magnified by ``factors`` (:func:`scale_factors`) so the speckles
    line up, the speckle model is removed (``"single"``: one PCA over all ``λ × t`` scaled frames;
    ``"double"``: a spectral PCA per frame, then, with ``ncomp_adi``, a PCA-ADI per channel), and the
    residuals are scaled back: a companion sits at the same place in every channel, a leftover speckle
    moves outward with λ.

    With ``basis_from`` (a cube of the same shape) the principal components are those of that cube
    and ``cube`` is only projected on them: the residuals are then linear in ``cube``, and with the
    components of a cube whose companions were subtracted, a companion is not in its own model.
    """
    nl, nt, ny, nx = cube.shape

    def scaled(c: np.ndarray) -> np.ndarray:
        out = np.empty_like(c, dtype=float)
        for t in range(nt):
            out[:, t] = rescale_frames(c[:, t], factors)
        return out

    rescaled = scaled(cube)
    library = rescaled if basis_from is None else scaled(basis_from)
    if mode == "single":
        ncomp = check_ncomp(ncomp, nl * nt)
        res = pca_residuals(
            rescaled.reshape(nl * nt, ny, nx),
            ncomp,
            reference=None if basis_from is None else library.reshape(nl * nt, ny, nx),
            scaling=scaling,
        ).reshape(nl, nt, ny, nx)
    else:
        ncomp = check_ncomp(ncomp, nl)
        res = np.empty_like(rescaled)
        for t in range(nt):
            matrix = scale_matrix(rescaled[:, t].reshape(nl, -1), scaling)
            basis = scale_matrix(library[:, t].reshape(nl, -1), scaling)
            res[:, t] = project_out(matrix, principal_components(basis, ncomp)).reshape(nl, ny, nx)
    out = np.empty_like(res)
    for t in range(nt):
        out[:, t] = rescale_frames(res[:, t], 1.0 / factors)
    if mode == "double" and ncomp_adi is not None:
        ncomp_adi = check_ncomp(ncomp_adi, nt, "ncomp_adi")
        reference = None
        if basis_from is not None:
            reference = channel_residuals(basis_from, factors, ncomp, mode=mode, ncomp_adi=None, scaling=scaling)
        for k in range(nl):
            out[k] = pca_residuals(
                out[k], ncomp_adi, reference=None if reference is None else reference[k], scaling=scaling
            )
    return out
