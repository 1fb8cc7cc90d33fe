"""Full-frame PCA-ADI (Amara & Quanz 2012; Soummer et al. 2012), fast.

Same model as ``vip_hci.psfsub.pca`` with its default settings: the frames,
flattened into a ``(t, P)`` matrix (optionally scaled like vip's ``scaling``),
are projected on the first ``ncomp`` right singular vectors of the library
matrix (the cube itself for ADI, a reference cube for RDI); the residuals are
derotated and median-combined.

Speed: the singular vectors come from one eigen-decomposition of the small
``(t, t)`` Gram matrix in float64 (``t`` frames, ``t << P`` pixels), and the
derotation is vip's Fourier three-shear rotation vectorised over frames (see
:mod:`reduction.postproc.geometry`). ``bench/bench_postproc.py`` measures it.
"""

from __future__ import annotations

import logging

import numpy as np

from ._checks import check_angles, check_cube, check_ncomp
from ._threads import blas_single_thread
from .geometry import derotate, polar_grid
from .results import PsfSubtractionResult

log = logging.getLogger(__name__)

SCALINGS = (None, "temp-mean", "spat-mean", "temp-standard", "spat-standard")
COLLAPSES = ("median", "mean", "sum")


def scale_matrix(matrix: np.ndarray, scaling: str | None) -> np.ndarray:
    """vip's ``matrix_scaling``: centre (and reduce) rows or columns of a ``(t, P)`` matrix."""
    if scaling is None:
        return matrix
    if scaling not in SCALINGS:
        raise ValueError(f"scaling must be one of {SCALINGS}, got {scaling!r}")
    axis = 0 if scaling.startswith("temp") else 1
    out = matrix - matrix.mean(axis=axis, keepdims=True)
    if scaling.endswith("standard"):
        std = matrix.std(axis=axis, keepdims=True)
        out = np.divide(out, std, out=np.zeros_like(out), where=std > 0)
    return out


def temporal_basis(library: np.ndarray, ncomp: int) -> tuple[np.ndarray, np.ndarray]:
    """``(V, s)``: the first ``ncomp`` left singular vectors ``(n, k)`` and singular values of a ``(n, P)`` library.

    Eigen-decomposition of the ``(n, n)`` Gram matrix ``L Lᵀ``; components whose eigenvalue is below
    1e-14 of the largest are dropped (they hold no signal).
    """
    gram = library @ library.T
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(eigval)[::-1][:ncomp]
    eigval = eigval[order]
    keep = eigval > eigval[0] * 1e-14 if eigval.size and eigval[0] > 0 else np.zeros(order.size, bool)
    return eigvec[:, order[keep]], np.sqrt(eigval[keep])


def principal_components(library: np.ndarray, ncomp: int) -> np.ndarray:
    """First ``ncomp`` principal components (unit rows, ``(ncomp, P)``) of a ``(n, P)`` library.

    Eigen-decomposition of the ``(n, n)`` Gram matrix ``L Lᵀ``; the components
    are ``Uᵀ L / s``, the right singular vectors of ``L`` (the same subspace
    as vip's LAPACK SVD).
    """
    vecs, singular = temporal_basis(library, ncomp)
    return (vecs.T @ library) / singular[:, None]


def project_out_columns(library: np.ndarray, vecs: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``project_out(library, principal_components(library, k))[:, columns]`` from the basis ``vecs`` alone.

    With ``C = Vᵀ L / s`` the residual is ``L - (L Cᵀ) C = (I - V Vᵀ) L``, so the residual at a few
    columns costs ``n·k`` per column instead of building the components over every pixel.
    """
    picked = library[:, columns]
    return picked - vecs @ (vecs.T @ picked)


def project_out(matrix: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``matrix`` minus its projection on the (orthonormal) rows of ``components``."""
    if components.shape[0] == 0:
        return matrix.copy()
    return matrix - (matrix @ components.T) @ components


def collapse(cube: np.ndarray, mode: str = "median") -> np.ndarray:
    """Combine derotated frames (vip's ``cube_collapse``)."""
    if mode == "median":
        return np.median(cube, axis=0)
    if mode == "mean":
        return cube.mean(axis=0)
    if mode == "sum":
        return cube.sum(axis=0)
    raise ValueError(f"collapse must be one of {COLLAPSES}, got {mode!r}")


def centre_mask(shape: tuple[int, int], radius: float | None) -> np.ndarray | None:
    """Boolean mask of pixels closer than ``radius`` to the star (None when no mask)."""
    if not radius:
        return None
    rho, _ = polar_grid(shape)
    return rho < radius


def pca_residuals(
    cube: np.ndarray,
    ncomp: int,
    reference: np.ndarray | None = None,
    scaling: str | None = None,
    mask_center_px: float | None = None,
) -> np.ndarray:
    """Non-derotated PCA residuals ``(t, y, x)`` (library: ``reference`` or the cube itself)."""
    nt, ny, nx = cube.shape
    mask = centre_mask((ny, nx), mask_center_px)
    matrix = cube.reshape(nt, -1).copy()
    if mask is not None:
        matrix[:, mask.ravel()] = 0.0
    matrix = scale_matrix(matrix, scaling)
    if reference is None:
        library = matrix
    else:
        library = reference.reshape(reference.shape[0], -1).copy()
        if mask is not None:
            library[:, mask.ravel()] = 0.0
        library = scale_matrix(library, scaling)
    components = principal_components(library, ncomp)
    return project_out(matrix, components).reshape(nt, ny, nx)


def combine(
    residuals: np.ndarray,
    angles: np.ndarray,
    collapse_mode: str = "median",
    mask_center_px: float | None = None,
    derotation: str = "fft",
    workers: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Derotate and collapse residual frames; returns ``(final image, derotated cube)``."""
    derotated = derotate(residuals, angles, method=derotation, workers=workers)
    frame = collapse(derotated, collapse_mode)
    mask = centre_mask(frame.shape, mask_center_px)
    if mask is not None:
        derotated[:, mask] = 0.0
        frame[mask] = 0.0
    return frame, derotated


@blas_single_thread
def pca_adi(
    cube,
    angles,
    ncomp: int = 1,
    *,
    scaling: str | None = None,
    mask_center_px: float | None = None,
    collapse_mode: str = "median",
    derotation: str = "fft",
    workers: int = 1,
) -> PsfSubtractionResult:
    """Full-frame PCA-ADI, the model of ``vip_hci.psfsub.pca(cube, angles, ncomp=ncomp)``.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        Centred ADI cube (star at ``(ny // 2, nx // 2)``).
    angles : ndarray, (t,)
        Derotation angles, vip-hci convention (the list that works with
        ``vip_hci.psfsub.pca`` works unchanged).
    ncomp : int
        Principal components.
    scaling : {None, 'temp-mean', 'spat-mean', 'temp-standard', 'spat-standard'}
        Pixel-wise scaling before PCA (vip's ``scaling``; default none, like vip).
    mask_center_px : float, optional
        Radius of a central mask set to 0 before PCA and in the result.
    collapse_mode : {'median', 'mean', 'sum'}
    derotation : {'fft', 'spline'}
        Derotation method (vip's Fourier three-shear rotation, or a cubic spline).
    workers : int
        Threads for the derotation.

    Returns
    -------
    PsfSubtractionResult
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    ncomp = check_ncomp(ncomp, cube.shape[0])
    if collapse_mode not in COLLAPSES:
        raise ValueError(f"collapse_mode must be one of {COLLAPSES}, got {collapse_mode!r}")
    residuals = pca_residuals(cube, ncomp, scaling=scaling, mask_center_px=mask_center_px)
    frame, derotated = combine(residuals, angles, collapse_mode, mask_center_px, derotation, workers)
    params = {
        "ncomp": ncomp,
        "scaling": scaling,
        "mask_center_px": mask_center_px,
        "collapse": collapse_mode,
        "derotation": derotation,
    }
    return PsfSubtractionResult(residuals=frame, residual_cube=derotated, algorithm="pca", parameters=params)
