"""Reference libraries for RDI, drawn from other observations in the catalog.

The library of an observation is the calibrated frames of *other* targets
observed with the same instrument, filter and coronagraph (the DIVA+/SPHERE DC
recipe: same set-up, different star, so no companion of the science target can
leak into the library), from their newest done pre-processing. Frames are cut or
padded to the science frame size around the star (both are centred on
``star_centre``). Only what the calling user may see should be used: pass the
visible observation ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from sqlalchemy import select

from .catalog.models import Observation, Reduction


@dataclass(frozen=True)
class ReferenceLibrary:
    """Reference frames per band, ``(λ, n_ref, y, x)``, and where they come from."""

    frames: np.ndarray
    observation_ids: tuple[int, ...]
    reduction_ids: tuple[int, ...]


def _fit_shape(cube: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-cut or zero-pad the last two axes to ``shape`` (star stays at star_centre)."""
    ny, nx = cube.shape[-2:]
    ty, tx = shape
    out = np.zeros(cube.shape[:-2] + (ty, tx), dtype=cube.dtype)
    cy, cx, oy, ox = ny // 2, nx // 2, ty // 2, tx // 2
    hy, hx = min(cy, oy), min(cx, ox)
    hy2, hx2 = min(ny - cy, ty - oy), min(nx - cx, tx - ox)
    out[..., oy - hy : oy + hy2, ox - hx : ox + hx2] = cube[..., cy - hy : cy + hy2, cx - hx : cx + hx2]
    return out


def reference_library(
    session,
    observation_id: int,
    frame_shape: tuple[int, int] | None = None,
    visible_ids: set[int] | None = None,
    max_observations: int = 20,
) -> ReferenceLibrary:
    """The RDI library of ``observation_id`` (see the module docstring).

    Raises
    ------
    LookupError
        No other observation with the same set-up has a calibrated cube.
    """
    science = session.get(Observation, observation_id)
    if science is None:
        raise LookupError(f"no observation {observation_id}")
    candidates = session.scalars(
        select(Observation)
        .where(
            Observation.id != observation_id,
            Observation.instrument == science.instrument,
            Observation.filter == science.filter,
            Observation.coronagraph == science.coronagraph,
            Observation.target_id != science.target_id,
        )
        .order_by(Observation.night.desc())
    ).all()
    frames, observations, reductions = [], [], []
    for candidate in candidates:
        if visible_ids is not None and candidate.id not in visible_ids:
            continue
        reduction = session.scalar(
            select(Reduction)
            .where(Reduction.observation_id == candidate.id, Reduction.step == "preprocess", Reduction.status == "done")
            .order_by(Reduction.id.desc())
            .limit(1)
        )
        cube_product = next((p for p in reduction.products if p.kind == "cube"), None) if reduction else None
        if cube_product is None:
            continue
        cube = fits.getdata(cube_product.path).astype(np.float32)
        cube = cube if cube.ndim == 4 else cube[None]
        if frame_shape is not None:
            cube = _fit_shape(cube, frame_shape)
        frames.append(cube)
        observations.append(candidate.id)
        reductions.append(reduction.id)
        if len(observations) >= max_observations:
            break
    if not frames:
        raise LookupError(
            f"no reference observation with {science.instrument} {science.filter} "
            f"{science.coronagraph or 'no coronagraph'} and a calibrated cube"
            + ("" if visible_ids is None else " among those released or of the same programme")
        )
    shape = frames[0].shape[-2:]
    frames = [f if f.shape[-2:] == shape else _fit_shape(f, shape) for f in frames]
    return ReferenceLibrary(
        frames=np.concatenate(frames, axis=1), observation_ids=tuple(observations), reduction_ids=tuple(reductions)
    )
