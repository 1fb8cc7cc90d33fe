"""Master calibrations of an observation (backgrounds, darks, flat, bad pixels, skies) and their use.

Masters are cached per process on their inputs' hashes: the observations of one night
share them, and a pipeline worker processes many observations.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..calibration import (
    BadPixelMap,
    MasterDark,
    MasterFlat,
    bad_pixel_map,
    correct_bad_pixels,
    master_dark,
    master_flat,
    master_sky,
)
from .model import ObservationFiles, ReducedCalibration
from .reading import RawFrames, Reader, date_of, dit_of, matching_shape, read_all, release, stack_frames


@dataclass
class Calibrations:
    backgrounds: dict[float, np.ndarray]
    skies: dict[float, np.ndarray]
    flat: np.ndarray | None
    bad: np.ndarray
    quality: dict[str, dict[str, Any]]
    products: dict[str, "ReducedCalibration"] = field(default_factory=dict)


#: Master calibrations already computed in this process, keyed on (kind, input sha256s): the
#: observations of one night share their darks, flats and skies, and a pipeline worker
#: processes many of them.
_MASTERS: "OrderedDict[tuple, Any]" = OrderedDict()


_MASTERS_MAX = 12  # a warm pipeline kernel keeps them: ~12 MB each for full-frame IRDIS


def _cached_master(kind: str, raws: Sequence[RawFrames], make):
    key = (kind, tuple(r.sha256 for r in raws))
    if key in _MASTERS:
        _MASTERS.move_to_end(key)
        return _MASTERS[key]
    value = make()
    _MASTERS[key] = value
    while len(_MASTERS) > _MASTERS_MAX:
        _MASTERS.popitem(last=False)
    return value


def clear_master_cache() -> None:
    """Forget the masters computed so far (benchmarks measure a cold start)."""
    _MASTERS.clear()


def reduce_calibrations(
    files: ObservationFiles,
    shape: tuple[int, int],
    problems: list[str],
    used: list[RawFrames],
    reader: Reader | None = None,
) -> Calibrations:
    """Master backgrounds/darks per DIT, flat, bad pixels and skies for one observation."""
    read = read_all if reader is None else reader.read
    quality: dict[str, dict[str, Any]] = {}
    products: dict[str, ReducedCalibration] = {}
    darks: dict[float, MasterDark] = {}
    backgrounds: dict[float, np.ndarray] = {}
    for source, mapping in (("background", files.backgrounds), ("dark", files.darks)):
        for dit, paths in sorted(mapping.items()):
            raws = matching_shape(read(paths, problems), shape, source.upper(), problems)
            if not raws:
                continue
            used.extend(raws)
            master = _cached_master("dark", raws, lambda: master_dark(stack_frames(raws), dit))
            name = f"master_{source}_{dit:.2f}s"
            quality[name] = master.quality
            products[name] = ReducedCalibration(
                f"master_{source}",
                master.image.astype(np.float32),
                dit,
                master.quality,
                tuple(r.sha256 for r in raws),
                date_of(raws[0]),
            )
            release(raws)
            darks.setdefault(dit, master)
            backgrounds.setdefault(dit, master.image)  # background preferred (read first)
    flat: MasterFlat | None = None
    flat_raws = matching_shape(read(files.flats, problems), shape, "FLAT", problems)
    if flat_raws:
        used.extend(flat_raws)
        dits = np.concatenate([[dit_of(r)] * r.n_frames for r in flat_raws])
        try:
            flat = _cached_master(
                "flat",
                flat_raws,
                lambda: master_flat(stack_frames(flat_raws), dits, dark=backgrounds.get(round(float(dits[0]), 2))),
            )
            quality["master_flat"] = flat.quality
            products["master_flat"] = ReducedCalibration(
                "master_flat",
                flat.flat.astype(np.float32),
                None,
                flat.quality,
                tuple(r.sha256 for r in flat_raws),
                date_of(flat_raws[0]),
            )
        except ValueError as exc:
            problems.append(f"no master flat: {exc}")
        release(flat_raws)
    else:
        problems.append("no usable FLAT,LAMP files: frames are not flat-fielded")
    bpm: BadPixelMap | None = None
    if darks or flat is not None:
        bpm = bad_pixel_map(list(darks.values()), flat)
        quality["bad_pixel_map"] = bpm.quality
        sources = tuple(sorted({h for p in products.values() for h in p.input_sha256}))
        products["bad_pixel_map"] = ReducedCalibration(
            "bad_pixel_map", bpm.mask.astype(np.uint8), None, bpm.quality, sources, None
        )
    skies: dict[float, np.ndarray] = {}
    for dit, paths in sorted(files.skies.items()):
        raws = matching_shape(read(paths, problems), shape, "SKY", problems)
        if raws:
            used.extend(raws)
            sky = _cached_master("sky", raws, lambda: master_sky(stack_frames(raws), dit))
            release(raws)
            skies[dit] = sky.image
            name = f"master_sky_{dit:.2f}s"
            quality[name] = {"sky_level_adu": sky.level_adu, "n_frames": sky.n_frames, "dit_s": dit}
            products[name] = ReducedCalibration(
                "master_sky",
                sky.image.astype(np.float32),
                dit,
                quality[name],
                tuple(r.sha256 for r in raws),
                date_of(raws[0]),
            )
    return Calibrations(
        backgrounds=backgrounds,
        skies=skies,
        flat=None if flat is None else np.where(flat.dead_pixels, 1.0, flat.flat),
        bad=np.zeros(shape, dtype=bool) if bpm is None else bpm.mask,
        quality=quality,
        products=products,
    )


def calibrate_frames(
    data: np.ndarray,
    dit: float,
    calibrations: Calibrations,
    box: int,
    what: str,
    problems: list[str],
    region: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """``(raw - sky|background) / flat`` with bad pixels replaced, for frames of one DIT.

    ``region`` (y, x slices of the full frames) calibrates only that part: the
    science frames only need the pixels of their crop.
    """
    key = round(dit, 2)
    cut = (slice(None), slice(None)) if region is None else region
    full, data = data, data[..., cut[0], cut[1]]
    if key in calibrations.skies:
        frames = data - calibrations.skies[key][cut]
    elif key in calibrations.backgrounds:
        frames = data - calibrations.backgrounds[key][cut]
        if what == "science":
            problems.append(f"no SKY with DIT {key:.2f} s: science frames background-subtracted only")
    else:
        frames = data - np.median(full, axis=(-2, -1), keepdims=True)  # the whole frame's level, as uncut
        problems.append(
            f"no SKY, BACKGROUND or DARK with DIT {key:.2f} s for the {what} frames: "
            "only the median level was subtracted"
        )
    if calibrations.flat is not None:
        frames = frames / calibrations.flat[cut]
    return correct_bad_pixels(frames, calibrations.bad[cut], box=box).astype(np.float32)
