"""Science pre-processing: raw IRDIS DBI frames -> a calibrated, centred ADI cube.

One call, :func:`preprocess_observation`, takes the raw files of one
observation and its matched calibrations (:class:`ObservationFiles`) and
returns a :class:`CalibratedObservation`: the cube ``(λ, t, y, x)`` centred on
the star (``reduction.conventions.star_centre``), its derotation angles
(vip-hci convention), the normalised off-axis PSF, the stellar flux in the
cube's units, the FWHM, the centres, the per-frame quality table and the
reduced calibrations with their quality numbers. Everything that could not be
done is said in ``problems`` (per observation), never silently defaulted.

Steps, in order (SPHERE Data Reduction Handbook; vlt-sphere):
1. master backgrounds per DIT (``DARK,BACKGROUND`` of the filter, else ``DARK``),
   master flat (per-pixel DIT slope), bad-pixel map, master skies per DIT;
2. every frame: ``(raw - sky or background of its DIT) / flat``, bad pixels
   replaced by the median of their good neighbours;
3. split the DBI halves (detector windows in the header);
4. star centre per band from the waffle spots of the CENTER frames (mean of
   the CENTER files, interpolated in time when there are several);
5. per-frame parallactic angles from the header (time, pointing, site) with
   astropy, derotation angle = PARANG + pupil offset + true north;
6. crop around the star and shift each frame (Fourier, sub-pixel) so the star
   sits at the crop's star_centre;
7. bad-frame rejection on the halo flux around the coronagraph (robust z-score);
8. FLUX frames: off-axis PSF per band, FWHM (Gaussian fit), aperture flux,
   normalised for DIT and neutral density to the science frames' units.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from astropy.io import fits
from astropy.time import Time
from scipy import ndimage, optimize

from . import conventions
from .calibration import (
    BadPixelMap,
    MasterDark,
    MasterFlat,
    bad_pixel_map,
    correct_bad_pixels,
    master_dark,
    master_flat,
    master_sky,
)
from .centring import CentringError, WaffleCentringParameters, find_waffle_centre, waffle_spot_separation_px
from .instruments import SphereIfs, SphereIrdis, by_name
from .instruments.sphere import neutral_density_transmission
from .rawio import RawFileError, RawHeader, read_raw_header_only, read_raw_image
from .steps import Step, StepParameters

log = logging.getLogger(__name__)


class PreprocessingError(ValueError):
    """The observation cannot be pre-processed at all (the reason says why)."""


@dataclass(frozen=True)
class ObservationFiles:
    """Raw inputs of one observation, as the catalog's calibration links give them.

    DIT-keyed mappings use DITs rounded to 0.01 s.
    """

    instrument: str
    filter: str
    science: tuple[Path, ...]
    center: tuple[Path, ...] = ()
    flux: tuple[Path, ...] = ()
    skies: Mapping[float, tuple[Path, ...]] = field(default_factory=dict)
    backgrounds: Mapping[float, tuple[Path, ...]] = field(default_factory=dict)
    darks: Mapping[float, tuple[Path, ...]] = field(default_factory=dict)
    flats: tuple[Path, ...] = ()
    #: IFS only: SPECPOS,LAMP (spectra positions) and LAMP,WAVE (wavelength calibration) files.
    specpos: tuple[Path, ...] = ()
    wave: tuple[Path, ...] = ()

    def all_paths(self) -> list[Path]:
        paths = [*self.science, *self.center, *self.flux, *self.flats, *self.specpos, *self.wave]
        for mapping in (self.skies, self.backgrounds, self.darks):
            for group in mapping.values():
                paths.extend(group)
        return paths


@dataclass(frozen=True)
class PreprocessParameters(StepParameters):
    """Parameters of the pre-processing of one IRDIS DBI observation.

    Attributes
    ----------
    crop_px : int
        Side of the centred science frames (odd, so the star is on a pixel centre).
    psf_crop_px : int
        Side of the PSF image (odd).
    bad_pixel_box : int
        Neighbourhood for bad-pixel replacement.
    reject_sigma : float
        Frames whose halo flux deviates from the sequence median by more than this many
        robust sigmas *and* by more than ``reject_min_fraction`` are rejected.
    reject_min_fraction : float
        Smallest relative halo-flux deviation that can reject a frame.
    halo_inner_lod, halo_outer_lod : float
        Annulus (in λ/D) where the halo flux is measured.
    centre_search_px : float
        How far from the header's coronagraph position the waffle pattern is searched.
    """

    crop_px: int = 201
    psf_crop_px: int = 31
    bad_pixel_box: int = 5
    reject_sigma: float = 5.0
    reject_min_fraction: float = 0.15
    halo_inner_lod: float = 3.0
    halo_outer_lod: float = 10.0
    centre_search_px: float = 40.0

    def __post_init__(self):
        for name in ("crop_px", "psf_crop_px"):
            if getattr(self, name) % 2 == 0 or getattr(self, name) < 11:
                raise ValueError(f"{name} must be odd and >= 11")


@dataclass(frozen=True)
class FrameQuality:
    file: str
    index: int
    time_utc: str
    parang_deg: float
    derotation_deg: float
    halo_flux: float
    accepted: bool
    reason: str | None


@dataclass(frozen=True)
class CalibratedObservation:
    """The result of pre-processing one observation (see the module docstring)."""

    cube: np.ndarray                       #: (λ, t, y, x) float32, accepted frames only
    derotation_deg: np.ndarray             #: (t,) vip-hci convention
    parallactic_deg: np.ndarray            #: (t,)
    wavelengths_um: tuple[float, ...]
    psf: np.ndarray | None                 #: (λ, y, x), flux in a 1-FWHM-diameter aperture = 1
    fwhm_px: tuple[float, ...] | None
    star_flux: tuple[float, ...] | None    #: per λ: star flux (1-FWHM aperture) in science-frame ADU
    centres_file_xy: tuple[tuple[float, float], ...] | None   #: per λ, in the files' data arrays
    centres_detector_xy: tuple[tuple[float, float], ...] | None
    frames: tuple[FrameQuality, ...]
    calibrations: dict[str, dict[str, Any]]  #: name -> quality numbers
    reduced_calibrations: dict[str, ReducedCalibration]
    pixel_scale_arcsec: float
    problems: tuple[str, ...]
    inputs: tuple[dict[str, str], ...]     #: path + sha256 of every raw file used

    @property
    def n_rejected(self) -> int:
        return sum(1 for f in self.frames if not f.accepted)


# --- reading ---------------------------------------------------------------------------------


@dataclass
class _Raw:
    path: Path
    header: Any
    data: np.ndarray | None  # (n, y, x) float32; released once the frames are calibrated
    sha256: str
    n_frames: int


def _read(path: Path) -> _Raw | str:
    """Read a raw file (one pass: hash, header, pixels); a broken file gives the reason instead."""
    try:
        image = read_raw_image(path)
    except (RawFileError, OSError, ValueError) as exc:
        return f"{Path(path).name}: unreadable, skipped ({exc})"
    data = image.data[None] if image.data.ndim == 2 else image.data
    if data.ndim != 3:
        return f"{Path(path).name}: unreadable, skipped (image of {data.ndim} axes, expected 2 or 3; keyword NAXIS)"
    return _Raw(path=Path(path), header=image.header.header, data=data, sha256=image.header.sha256,
                n_frames=data.shape[0])


#: Reader threads: reading, hashing and decoding release the GIL, so the files of an
#: observation are read ahead while the calibrations are computed.
_READERS = 2


#: Files read ahead of their use at most: bounds the memory to a few files whatever the
#: length of the sequence (a file is up to NDIT full frames).
_AHEAD = 4


class _Reader:
    """Reads an observation's files ahead, in the order they will be needed, in background threads.

    At most ``ahead`` files are read and not yet used at any time; a file asked for
    out of order is queued at once, behind the reads already under way.
    """

    def __init__(self, paths: Sequence[Path], ahead: int = _AHEAD):
        self._pool = ThreadPoolExecutor(_READERS, thread_name_prefix="hcdc-read")
        self._queue = list(dict.fromkeys(paths))
        self._futures: dict[Path, Any] = {}
        self._ahead = ahead
        self._fill()

    def _fill(self) -> None:
        while self._queue and len(self._futures) < self._ahead:
            path = self._queue.pop(0)
            self._futures[path] = self._pool.submit(_read, path)

    def _take(self, path: Path) -> _Raw | str:
        future = self._futures.pop(path, None)
        if future is None:
            if path in self._queue:
                self._queue.remove(path)
            future = self._pool.submit(_read, path)
        self._fill()
        return future.result()

    def read(self, paths: Sequence[Path], problems: list[str]) -> list[_Raw]:
        """The files of ``paths`` (readable ones), the reasons for the others appended to ``problems``."""
        results = [self._take(p) for p in paths]
        problems.extend(r for r in results if isinstance(r, str))
        return [r for r in results if not isinstance(r, str)]

    def close(self) -> None:
        self._queue.clear()
        for future in self._futures.values():
            future.cancel()
        self._pool.shutdown(wait=True)


def _read_all(paths: Sequence[Path], problems: list[str]) -> list[_Raw]:
    reader = _Reader(paths)
    try:
        return reader.read(paths, problems)
    finally:
        reader.close()


def _matching(raws: Sequence[_Raw], shape: tuple[int, ...], what: str, problems: list[str]) -> list[_Raw]:
    """The raws whose frames have the science frames' shape; the others are reported, never dropped silently."""
    problems.extend(f"{r.path.name}: {what} frame shape {r.data.shape[1:]} differs from the science frames' "
                    f"{tuple(shape)}, not used" for r in raws if r.data.shape[1:] != shape)
    return [r for r in raws if r.data.shape[1:] == shape]


def _release(raws: Sequence[_Raw]) -> None:
    """Drop the pixels of raws already used (their path and hash stay for the provenance)."""
    for raw in raws:
        raw.data = None


def _stack(raws: Sequence[_Raw]) -> np.ndarray:
    return np.concatenate([r.data for r in raws], axis=0)


def _dit(raw: _Raw) -> float:
    return float(SphereIrdis._value(raw.header, "dit", str(raw.path), required=True))


# --- calibrations ----------------------------------------------------------------------------


@dataclass
class _Calibrations:
    backgrounds: dict[float, np.ndarray]
    skies: dict[float, np.ndarray]
    flat: np.ndarray | None
    bad: np.ndarray
    quality: dict[str, dict[str, Any]]
    products: dict[str, "ReducedCalibration"] = field(default_factory=dict)


@dataclass(frozen=True)
class ReducedCalibration:
    """A master calibration made for (and reusable by) observations that match it."""

    kind: str                     #: master_background, master_dark, master_flat, bad_pixel_map, master_sky
    image: np.ndarray
    dit_s: float | None
    quality: dict[str, Any]
    input_sha256: tuple[str, ...]
    date_obs: str | None          #: first input's DATE-OBS


#: Master calibrations already computed in this process, keyed on (kind, input sha256s): the
#: observations of one night share their darks, flats and skies, and a pipeline worker
#: processes many of them.
_MASTERS: "OrderedDict[tuple, Any]" = OrderedDict()
_MASTERS_MAX = 12  # a warm pipeline kernel keeps them: ~12 MB each for full-frame IRDIS


def _cached_master(kind: str, raws: Sequence[_Raw], make):
    key = (kind, tuple(r.sha256 for r in raws))
    if key in _MASTERS:
        _MASTERS.move_to_end(key)
        return _MASTERS[key]
    value = make()
    _MASTERS[key] = value
    while len(_MASTERS) > _MASTERS_MAX:
        _MASTERS.popitem(last=False)
    return value


def reduce_calibrations(files: ObservationFiles, shape: tuple[int, int], problems: list[str],
                        used: list[_Raw], reader: _Reader | None = None) -> _Calibrations:
    """Master backgrounds/darks per DIT, flat, bad pixels and skies for one observation."""
    read = _read_all if reader is None else reader.read
    quality: dict[str, dict[str, Any]] = {}
    products: dict[str, ReducedCalibration] = {}
    darks: dict[float, MasterDark] = {}
    backgrounds: dict[float, np.ndarray] = {}
    for source, mapping in (("background", files.backgrounds), ("dark", files.darks)):
        for dit, paths in sorted(mapping.items()):
            raws = _matching(read(paths, problems), shape, source.upper(), problems)
            if not raws:
                continue
            used.extend(raws)
            master = _cached_master("dark", raws, lambda: master_dark(_stack(raws), dit))
            name = f"master_{source}_{dit:.2f}s"
            quality[name] = master.quality
            products[name] = ReducedCalibration(f"master_{source}", master.image.astype(np.float32), dit,
                                                master.quality, tuple(r.sha256 for r in raws),
                                                _date(raws[0]))
            _release(raws)
            darks.setdefault(dit, master)
            backgrounds.setdefault(dit, master.image)  # background preferred (read first)
    flat: MasterFlat | None = None
    flat_raws = _matching(read(files.flats, problems), shape, "FLAT", problems)
    if flat_raws:
        used.extend(flat_raws)
        dits = np.concatenate([[_dit(r)] * r.n_frames for r in flat_raws])
        try:
            flat = _cached_master("flat", flat_raws, lambda: master_flat(
                _stack(flat_raws), dits, dark=backgrounds.get(round(float(dits[0]), 2))))
            quality["master_flat"] = flat.quality
            products["master_flat"] = ReducedCalibration("master_flat", flat.flat.astype(np.float32), None,
                                                         flat.quality, tuple(r.sha256 for r in flat_raws),
                                                         _date(flat_raws[0]))
        except ValueError as exc:
            problems.append(f"no master flat: {exc}")
        _release(flat_raws)
    else:
        problems.append("no usable FLAT,LAMP files: frames are not flat-fielded")
    bpm: BadPixelMap | None = None
    if darks or flat is not None:
        bpm = bad_pixel_map(list(darks.values()), flat)
        quality["bad_pixel_map"] = bpm.quality
        sources = tuple(sorted({h for p in products.values() for h in p.input_sha256}))
        products["bad_pixel_map"] = ReducedCalibration("bad_pixel_map", bpm.mask.astype(np.uint8), None,
                                                       bpm.quality, sources, None)
    skies: dict[float, np.ndarray] = {}
    for dit, paths in sorted(files.skies.items()):
        raws = _matching(read(paths, problems), shape, "SKY", problems)
        if raws:
            used.extend(raws)
            sky = _cached_master("sky", raws, lambda: master_sky(_stack(raws), dit))
            _release(raws)
            skies[dit] = sky.image
            name = f"master_sky_{dit:.2f}s"
            quality[name] = {"sky_level_adu": sky.level_adu, "n_frames": sky.n_frames, "dit_s": dit}
            products[name] = ReducedCalibration("master_sky", sky.image.astype(np.float32), dit, quality[name],
                                                tuple(r.sha256 for r in raws), _date(raws[0]))
    return _Calibrations(backgrounds=backgrounds, skies=skies,
                         flat=None if flat is None else np.where(flat.dead_pixels, 1.0, flat.flat),
                         bad=np.zeros(shape, dtype=bool) if bpm is None else bpm.mask, quality=quality,
                         products=products)


def _date(raw: _Raw) -> str | None:
    value = raw.header.get("DATE-OBS")
    return None if value is None else str(value)


def calibrate_frames(data: np.ndarray, dit: float, calibrations: _Calibrations, box: int,
                     what: str, problems: list[str],
                     region: tuple[slice, slice] | None = None) -> np.ndarray:
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
        problems.append(f"no SKY, BACKGROUND or DARK with DIT {key:.2f} s for the {what} frames: "
                        "only the median level was subtracted")
    if calibrations.flat is not None:
        frames = frames / calibrations.flat[cut]
    return correct_bad_pixels(frames, calibrations.bad[cut], box=box).astype(np.float32)


def _band_region(centre_xy: tuple[float, float], window_index: int, windows: list[tuple[int, int, int, int]],
                 crop: int, margin: int) -> tuple[tuple[slice, slice], tuple[int, int]]:
    """Detector slices around a band's star that a crop of ``crop`` px needs, and the cut's origin in the band.

    ``margin`` covers the Fourier-shift padding and the bad-pixel box, so that the
    crop is the same as if the whole band had been calibrated.
    """
    x_band = sum(w[2] for w in windows[:window_index])
    _x0, _y0, nx, ny = windows[window_index]
    half = crop // 2 + margin
    ix, iy = int(np.floor(centre_xy[0] + 0.5)), int(np.floor(centre_xy[1] + 0.5))
    y0, y1 = max(iy - half, 0), min(iy + half + 1, ny)
    x0, x1 = max(ix - half, 0), min(ix + half + 1, nx)
    return (slice(y0, y1), slice(x_band + x0, x_band + x1)), (x0, y0)


# --- geometry --------------------------------------------------------------------------------


def split_bands(frames: np.ndarray, windows: list[tuple[int, int, int, int]]) -> list[np.ndarray]:
    """The data's windows side by side along x -> one array per band."""
    out, x = [], 0
    for _x0, _y0, nx, ny in windows:
        out.append(frames[..., :ny, x:x + nx])
        x += nx
    return out


def coarse_waffle_centre(image: np.ndarray, separation_px: float, guess_xy: tuple[float, float],
                         radius_px: float) -> tuple[float, float]:
    """Where the four-spot pattern correlates best with the image, within ``radius_px`` of the guess.

    Needs no accurate guess: the high-passed image is correlated (FFT) with four
    Gaussians at the spots' offsets.
    """
    # white top-hat (see find_waffle_centre), then a 3x3 median against hot pixels
    highpass = ndimage.white_tophat(image, size=max(9, int(separation_px / 3) | 1), mode="nearest")
    highpass = np.clip(ndimage.median_filter(highpass, size=3), 0, None)
    ny, nx = image.shape
    kernel = np.zeros((ny, nx))
    d = separation_px / np.sqrt(2)
    for sx, sy in ((d, d), (-d, d), (-d, -d), (d, -d)):
        kernel[int(round(sy)) % ny, int(round(sx)) % nx] = 1.0
    kernel = ndimage.gaussian_filter(kernel, 1.5, mode="wrap")
    correlation = np.fft.ifft2(np.fft.fft2(highpass) * np.conj(np.fft.fft2(kernel))).real
    yy, xx = np.mgrid[:ny, :nx]
    allowed = (xx - guess_xy[0]) ** 2 + (yy - guess_xy[1]) ** 2 <= radius_px ** 2
    if not allowed.any():
        raise CentringError(f"the centre guess ({guess_xy[0]:.0f}, {guess_xy[1]:.0f}) is outside the frame")
    correlation[~allowed] = -np.inf
    y, x = np.unravel_index(np.argmax(correlation), correlation.shape)
    return float(x), float(y)


#: FFT threads: the CPUs this process may use (a SLURM allocation, not the whole node)
_FFT_WORKERS = max(1, len(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else 1


def _odd_fast_length(n: int) -> int:
    """The smallest odd length >= n made of the factors 3, 5, 7, 11 (fast FFTs, no Nyquist bin)."""
    m = n | 1
    while True:
        rest = m
        for factor in (3, 5, 7, 11):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return m
        m += 2


def _fourier_shift_stack(stack: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Shift every frame of (n, y, x) by (dx, dy) pixels (sub-pixel, FFT; periodic).

    Real FFTs in single precision. With odd sides there is no Nyquist frequency, so
    the shift is exactly that of the complex FFT (whose real part vip's Fourier
    shift takes).
    """
    from scipy import fft

    ny, nx = stack.shape[-2:]
    ky = fft.fftfreq(ny)[:, None]
    kx = fft.rfftfreq(nx)[None, :]
    ramp = np.exp(-2j * np.pi * (kx * dx + ky * dy)).astype(np.complex64)
    spectrum = fft.rfft2(np.asarray(stack, dtype=np.float32), workers=_FFT_WORKERS)
    return fft.irfft2(spectrum * ramp, s=(ny, nx), workers=_FFT_WORKERS).astype(np.float32, copy=False)


def centred_crop(stack: np.ndarray, centre_xy: tuple[float, float], size: int) -> np.ndarray:
    """Crop (n, y, x) frames to ``size`` around ``centre_xy`` and shift the star onto the crop centre.

    Pixels outside the frames are NaN-free zeros; the sub-pixel shift is done on a crop
    padded by at least 8 px (to an odd, FFT-friendly side) to keep FFT wrap-around away
    from the result.
    """
    pad = 8
    half = size // 2 + pad
    side = _odd_fast_length(2 * half + 1)
    cx, cy = centre_xy
    ix, iy = int(np.floor(cx + 0.5)), int(np.floor(cy + 0.5))
    n, ny, nx = stack.shape
    big = np.zeros((n, side, side), dtype=np.float32)
    y0, y1 = iy - half, iy + half + 1
    x0, x1 = ix - half, ix + half + 1
    sy0, sy1 = max(y0, 0), min(y1, ny)
    sx0, sx1 = max(x0, 0), min(x1, nx)
    big[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = stack[:, sy0:sy1, sx0:sx1]
    shifted = _fourier_shift_stack(big, ix - cx, iy - cy)
    return shifted[:, pad:pad + size, pad:pad + size]


def frame_times(raw: _Raw) -> list[datetime]:
    """Mid-exposure UTC time of each DIT of a raw cube: DATE-OBS + i x EXPTIME/NDIT + DIT/2."""
    start = SphereIrdis.parse_date(raw.header, str(raw.path))
    n = raw.n_frames
    dit = _dit(raw)
    exptime = SphereIrdis._float(raw.header, "exptime", str(raw.path))
    step = exptime / n if exptime and exptime >= n * dit else dit
    return [start + timedelta(seconds=i * step + dit / 2) for i in range(n)]


def parallactic_angles(raws: Sequence[_Raw]) -> tuple[list[datetime], np.ndarray]:
    """Per-frame times and parallactic angles (astropy, apparent place) of science cubes."""
    times = [t for raw in raws for t in frame_times(raw)]
    header = raws[0].header
    ra = SphereIrdis._float(header, "ra_deg", str(raws[0].path), required=True)
    dec = SphereIrdis._float(header, "dec_deg", str(raws[0].path), required=True)
    stamps = Time([t.replace(tzinfo=None) for t in times], scale="utc")
    angles = conventions.parallactic_angle_at(stamps, ra, dec, SphereIrdis.site_latitude_deg,
                                              SphereIrdis.site_longitude_deg, SphereIrdis.site_elevation_m)
    return times, np.asarray(angles, dtype=float)


def _gaussian_fwhm(image: np.ndarray) -> tuple[float, float, float]:
    """FWHM and (x, y) of a centred PSF from a circular Gaussian fit."""
    ny, nx = image.shape
    yy, xx = np.mgrid[:ny, :nx]
    peak = float(image.max())

    def residual(p):
        a, x0, y0, s, c = p
        return (c + a * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * s ** 2)) - image).ravel()

    start = [peak, nx // 2, ny // 2, 2.0, 0.0]
    fit = optimize.least_squares(residual, start, x_scale=[max(peak, 1e-9), 1, 1, 1, max(peak, 1e-9)])
    return float(2.3548 * abs(fit.x[3])), float(fit.x[1]), float(fit.x[2])


def aperture_flux(image: np.ndarray, centre_xy: tuple[float, float], radius: float) -> float:
    """Flux in a circular aperture (exact pixel overlap, photutils)."""
    from photutils.aperture import CircularAperture, aperture_photometry

    table = aperture_photometry(image, CircularAperture(centre_xy, r=radius), method="exact")
    return float(table["aperture_sum"][0])


def frame_quality(images: np.ndarray, names: Sequence[tuple[str, int]], times: Sequence[datetime],
                  parang: np.ndarray, derotation: np.ndarray, params: PreprocessParameters, lod_px: float,
                  problems: list[str]) -> tuple[list[FrameQuality], np.ndarray]:
    """Per-frame quality table and the frames kept, from the halo flux of centred frames ``(t, y, x)``.

    The halo is measured in an annulus around the coronagraph (``halo_inner_lod`` to
    ``halo_outer_lod``); a frame is rejected when its halo flux deviates from the sequence
    median by more than ``reject_sigma`` robust sigmas and by more than ``reject_min_fraction``.
    """
    size = images.shape[-1]
    yy, xx = np.mgrid[:size, :size]
    cy, cx = conventions.star_centre(images.shape)
    radius = np.hypot(xx - cx, yy - cy)
    annulus = (radius >= params.halo_inner_lod * lod_px) & (radius <= params.halo_outer_lod * lod_px)
    halo = images[:, annulus].sum(axis=1)
    median = float(np.median(halo))
    mad = float(np.median(np.abs(halo - median))) * 1.4826
    deviation = np.abs(halo - median)
    rejected = (deviation > params.reject_sigma * max(mad, 1e-12)) & \
        (deviation > params.reject_min_fraction * abs(median))
    frames = []
    for i, ((name, index), when) in enumerate(zip(names, times)):
        reason = None
        if rejected[i]:
            reason = (f"halo flux {halo[i] / median:.2f} x the sequence median "
                      f"({deviation[i] / max(mad, 1e-12):.1f} robust sigma): AO loop open, cloud or seeing burst")
        frames.append(FrameQuality(file=name, index=index, time_utc=when.isoformat(), parang_deg=float(parang[i]),
                                   derotation_deg=float(derotation[i]), halo_flux=float(halo[i]),
                                   accepted=not rejected[i], reason=reason))
    keep = ~rejected
    if keep.sum() < 2:
        problems.append(f"only {int(keep.sum())} frame(s) pass the quality checks")
    return frames, keep


def psf_photometry(images: Sequence[np.ndarray], dits: Sequence[float], neutral_densities: Sequence[str],
                   wavelength_um: float, science_dit: float, science_nd: str) -> tuple[np.ndarray, float, float]:
    """Normalised off-axis PSF, its FWHM and the stellar flux, from centred FLUX images of one band.

    ``images`` are one per FLUX file, star at ``star_centre``, with that file's DIT and ND.
    The PSF is their mean divided by its flux in a 1-FWHM-diameter aperture; the stellar flux
    is that aperture's flux per second, corrected for each file's ND, brought to the science
    frames' units (their DIT and ND).
    """
    psf = np.mean(images, axis=0)
    width, _fx, _fy = _gaussian_fwhm(psf)
    cy, cx = conventions.star_centre(psf.shape)
    ap = aperture_flux(psf, (cx, cy), width / 2)
    per_second = np.mean([aperture_flux(image, (cx, cy), width / 2) / dit
                          / neutral_density_transmission(nd, wavelength_um)
                          for image, dit, nd in zip(images, dits, neutral_densities)])
    star_flux = per_second * science_dit * neutral_density_transmission(science_nd, wavelength_um)
    return psf / ap, float(width), float(star_flux)


# --- the step --------------------------------------------------------------------------------


def preprocess_observation(files: ObservationFiles,
                           params: PreprocessParameters = PreprocessParameters()) -> CalibratedObservation:
    """Pre-process one IRDIS DBI observation (see the module docstring).

    Raises
    ------
    PreprocessingError
        Nothing can be produced (no readable science frame, unsupported instrument).
    """
    instrument = by_name(files.instrument)
    if instrument not in (SphereIrdis, SphereIfs):
        raise PreprocessingError(f"pre-processing of {files.instrument} raw frames is not implemented "
                                 "(SPHERE IRDIS DBI and IFS only; register calibrated cubes with "
                                 "hcdc register-reduced)")
    # every input in the order it is used, read ahead (a few files at a time) while the calibrations
    # are computed; the science files are streamed through their crops, only their headers are
    # read up front (time order, shape, detector windows)
    order: list[Path] = []
    for mapping in (files.backgrounds, files.darks):
        for _dit_s, paths in sorted(mapping.items()):
            order.extend(paths)
    order.extend(files.flats)
    for _dit_s, paths in sorted(files.skies.items()):
        order.extend(paths)
    order.extend([*files.specpos, *files.wave])
    problems: list[str] = []
    heads = _science_headers(files.science, problems)
    order.extend([*files.center, *(Path(h.path) for h in heads), *files.flux])
    reader = _Reader([Path(p) for p in order])
    try:
        if instrument is SphereIfs:
            from .ifs import preprocess_ifs_observation

            return preprocess_ifs_observation(files, params, reader, heads, problems)
        return _preprocess(files, params, instrument, reader, heads, problems)
    finally:
        reader.close()


def _science_headers(paths: Sequence[Path], problems: list[str]) -> list[RawHeader]:
    """The science files' headers in time order, checked (pixels are read later, one file at a time)."""
    heads, dates = [], {}
    for path in paths:
        try:
            head = read_raw_header_only(path)
            dates[head.path] = SphereIrdis.parse_date(head.header, str(path))
            SphereIrdis._value(head.header, "dit", str(path), required=True)
        except (RawFileError, OSError, ValueError, KeyError) as exc:
            problems.append(f"{Path(path).name}: unreadable, skipped ({exc})")
            continue
        if len(head.shape) not in (2, 3):
            problems.append(f"{Path(path).name}: unreadable, skipped (image of {len(head.shape)} axes, "
                            "expected 2 or 3; keyword NAXIS)")
            continue
        heads.append(head)
    if not heads:
        raise PreprocessingError("no readable OBJECT (science) file")
    shape = heads[0].shape[-2:]
    for head in heads:
        if head.shape[-2:] != shape:
            problems.append(f"{Path(head.path).name}: frame shape {head.shape[-2:]} differs from {shape}, skipped")
    heads = [h for h in heads if h.shape[-2:] == shape]
    return sorted(heads, key=lambda h: dates[h.path])


def _preprocess(files: ObservationFiles, params: PreprocessParameters, instrument, reader: _Reader,
                heads: list[RawHeader], problems: list[str]) -> CalibratedObservation:
    used: list[_Raw] = []
    reference = heads[0]
    shape = tuple(reference.shape[-2:])
    windows = SphereIrdis.readout_windows(reference.header)
    filt = instrument.filters.get(files.filter)
    if filt is None:
        raise PreprocessingError(f"unknown IRDIS filter {files.filter!r}")
    wavelengths = filt.wavelengths_um
    pixel_scale = instrument.pixel_scale_arcsec(files.filter)
    lod_px = [w * 1e-6 / 8.0 * 206264.806 / pixel_scale for w in wavelengths]
    calibrations = reduce_calibrations(files, shape, problems, used, reader)
    box = params.bad_pixel_box

    # star centre from the CENTER frames
    centre_raws = _matching(reader.read(files.center, problems), shape, "CENTER", problems)
    used.extend(centre_raws)
    coro_x = reference.header.get("HIERARCH ESO SEQ CORO XC")
    coro_y = reference.header.get("HIERARCH ESO SEQ CORO YC")
    centres_file: list[tuple[float, float]] | None = None
    if centre_raws:
        centre_images = []
        for raw in centre_raws:
            # calibrating the file's mean frame once is n times cheaper; the subtraction and the flat
            # are linear, and the bad-pixel median on the mean frame is as good for the spots
            mean = raw.data.mean(axis=0, keepdims=True)
            centre_images.append(calibrate_frames(mean, _dit(raw), calibrations, box, "CENTER", problems)[0])
        _release(centre_raws)
        mean_centre = np.mean(centre_images, axis=0)
        centres_file = []
        for band, (image, window) in enumerate(zip(split_bands(mean_centre, windows), windows)):
            x0, y0, _nx, _ny = window
            if coro_x is not None and coro_y is not None:
                gx = float(coro_x) - 1 + band * SphereIrdis.dbi_band_offset_px[0] - x0
                gy = float(coro_y) - 1 + band * SphereIrdis.dbi_band_offset_px[1] - y0
            else:
                gx, gy = image.shape[1] / 2, image.shape[0] / 2
            separation = waffle_spot_separation_px(wavelengths[band], pixel_scale)
            try:
                # work on a cut-out around the guess: filters on a full 1024x1024 band are slow
                half = int(separation + params.centre_search_px + 20)
                cx0 = int(np.clip(round(gx) - half, 0, max(image.shape[1] - 2 * half - 1, 0)))
                cy0 = int(np.clip(round(gy) - half, 0, max(image.shape[0] - 2 * half - 1, 0)))
                cut = image[cy0:cy0 + 2 * half + 1, cx0:cx0 + 2 * half + 1]
                coarse = coarse_waffle_centre(cut, separation, (gx - cx0, gy - cy0), params.centre_search_px)
                found = find_waffle_centre(cut, coarse, WaffleCentringParameters(spot_separation_px=separation))
            except CentringError as exc:
                problems.append(f"band {band + 1}: star centre not found from the waffle spots ({exc})")
                centres_file = None
                break
            centres_file.append((found.centre_xy[0] + cx0, found.centre_xy[1] + cy0))
    else:
        problems.append("no OBJECT,CENTER frames: the star centre cannot be measured")
    if centres_file is None:
        # best effort, said loudly: the coronagraph position from the header
        if coro_x is None:
            raise PreprocessingError("no star centre: no usable CENTER frames and no SEQ CORO XC/YC in the header")
        centres_file = []
        for band, (x0, y0, _nx, _ny) in enumerate(windows):
            centres_file.append((float(coro_x) - 1 + band * SphereIrdis.dbi_band_offset_px[0] - x0,
                                 float(coro_y) - 1 + band * SphereIrdis.dbi_band_offset_px[1] - y0))
        problems.append("star centre taken from SEQ CORO XC/YC (uncertain by ~1 px)")

    # the crop stays inside the detector windows: zero padding would fake infinitely deep limits
    crop = params.crop_px
    for (cx, cy), (_x0, _y0, nx, ny) in zip(centres_file, windows):
        room = int(min(cx, cy, nx - 1 - cx, ny - 1 - cy))
        crop = min(crop, 2 * room + 1)
    if crop < params.crop_px:
        problems.append(f"frames cropped to {crop} px (detector window), not {params.crop_px}")
    if crop < 21:
        raise PreprocessingError(f"the star is {crop // 2} px from the window edge: nothing to crop")

    # science frames, streamed: one file at a time is in memory (plus the reader's look-ahead)
    frames_per_band: list[list[np.ndarray]] = [[] for _ in windows]
    names: list[tuple[str, int]] = []
    # only the pixels of the crops are calibrated (a 201-px crop is 4 % of a 1024x1024 band)
    margin = 8 + box // 2 + 1  # centred_crop's Fourier padding + the bad-pixel box
    regions = [_band_region(centres_file[band], band, windows, crop, margin) for band in range(len(windows))]
    science: list[_Raw] = []
    for head in heads:
        for raw in _matching(reader.read([Path(head.path)], problems), shape, "OBJECT", problems):
            dit = _dit(raw)
            for band, (region, (x0, y0)) in enumerate(regions):
                calibrated = calibrate_frames(raw.data, dit, calibrations, box, "science", problems, region)
                cx, cy = centres_file[band]
                frames_per_band[band].append(centred_crop(calibrated, (cx - x0, cy - y0), crop))
            names.extend((raw.path.name, i) for i in range(raw.n_frames))
            _release([raw])  # the crops are all that is needed from now on: free the full frames
            science.append(raw)
    if not science:
        raise PreprocessingError("no readable OBJECT (science) file")
    used.extend(science)
    cube = np.stack([np.concatenate(parts, axis=0) for parts in frames_per_band])  # (λ, t, y, x)
    times, parang = parallactic_angles(science)
    derotation = conventions.derotation_angles(parang, instrument.pupil_offset_deg.value,
                                               instrument.true_north_deg.value)

    frames, keep = frame_quality(cube[0], names, times, parang, derotation, params, lod_px[0], problems)

    # off-axis PSF and stellar flux
    psf = fwhm = star_flux = None
    flux_raws = _matching(reader.read(files.flux, problems), shape, "FLUX", problems)
    used.extend(flux_raws)
    if flux_raws:
        psfs, fwhm_list, flux_list = [], [], []
        science_dit = _dit(science[0])
        science_nd = SphereIrdis._opt_str(science[0].header, "neutral_density", "")
        flux_means = [split_bands(calibrate_frames(raw.data.mean(axis=0, keepdims=True), _dit(raw), calibrations,
                                                   box, "FLUX", problems)[0], windows) for raw in flux_raws]
        _release(flux_raws)
        flux_dits = [_dit(raw) for raw in flux_raws]
        flux_nds = [SphereIrdis._opt_str(raw.header, "neutral_density", "") for raw in flux_raws]
        for band in range(len(windows)):
            stacks = []
            for parts in flux_means:
                mean = parts[band]
                smooth = ndimage.gaussian_filter(mean, 1.0)
                py, px = np.unravel_index(np.argmax(smooth), smooth.shape)
                crop = centred_crop(mean[None], (float(px), float(py)), params.psf_crop_px + 8)[0]
                _width, fx, fy = _gaussian_fwhm(crop)
                stacks.append(centred_crop(crop[None], (fx, fy), params.psf_crop_px)[0])
            normalised, width, flux = psf_photometry(stacks, flux_dits, flux_nds, wavelengths[band], science_dit,
                                                     science_nd)
            psfs.append(normalised)
            fwhm_list.append(width)
            flux_list.append(flux)
        psf = np.stack(psfs).astype(np.float32)
        fwhm = tuple(fwhm_list)
        star_flux = tuple(flux_list)
    else:
        problems.append("no OBJECT,FLUX frames: no off-axis PSF, contrasts cannot be calibrated")

    centres_detector = tuple((x + w[0], y + w[1]) for (x, y), w in zip(centres_file, windows))
    unique_inputs = {str(r.path): r.sha256 for r in used}
    return CalibratedObservation(
        cube=cube[:, keep], derotation_deg=derotation[keep], parallactic_deg=parang[keep],
        wavelengths_um=tuple(wavelengths), psf=psf, fwhm_px=fwhm, star_flux=star_flux,
        centres_file_xy=tuple(centres_file), centres_detector_xy=centres_detector, frames=tuple(frames),
        calibrations=calibrations.quality, reduced_calibrations=calibrations.products,
        pixel_scale_arcsec=pixel_scale,
        problems=tuple(dict.fromkeys(problems)),
        inputs=tuple({"path": p, "sha256": h} for p, h in sorted(unique_inputs.items())),
    )


class Preprocess(Step):
    """Step: raw IRDIS DBI observation -> calibrated ADI cube (:func:`preprocess_observation`)."""

    name = "preprocess"
    version = "1"
    Parameters = PreprocessParameters
    inputs = ("observation_files",)
    outputs = ("cube", "derotation_angles", "psf", "frame_quality")

    def run(self, params: PreprocessParameters, **inputs) -> CalibratedObservation:
        return preprocess_observation(inputs["observation_files"], params)


# --- products ------------------------------------------------------------------------------


def _provenance_cards(header: fits.Header, provenance: Mapping[str, Any]) -> None:
    """Mirror the provenance compactly in a FITS header (HIERARCH HCDC ...)."""
    for key, value in provenance.items():
        if value is None:
            continue
        card = f"HIERARCH HCDC {key.upper()}"
        text = value if isinstance(value, (int, float, bool)) else str(value)
        if isinstance(text, str) and len(text) > 40:
            text = text[:40]  # hashes: a 40-hex prefix; the full values are in the catalog
        header[card] = text


def write_products(result: CalibratedObservation, out_dir: Path,
                   provenance: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Write the calibrated cube, angles, PSF and frame table; return their paths by kind.

    ``cube.fits`` is ``(λ, t, y, x)`` float32 with the star at ``star_centre``;
    ``angles.fits`` the derotation angles (vip-hci convention, one per frame);
    ``psf.fits`` the normalised PSF ``(λ, y, x)``; ``frames.ecsv`` every frame with
    its time, angles, halo flux and rejection reason. All open with astropy and
    ``vip_hci.fits.open_fits`` as they are.
    """
    from astropy.table import Table

    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = dict(provenance or {})
    paths: dict[str, Path] = {}
    header = fits.Header()
    header["BUNIT"] = ("ADU", "calibrated counts per DIT")
    header["HIERARCH HCDC AXES"] = "(lambda, t, y, x)"
    header["HIERARCH HCDC PIXSCALE"] = (result.pixel_scale_arcsec, "[arcsec/px]")
    for k, wl in enumerate(result.wavelengths_um):
        header[f"HIERARCH HCDC WAVE{k + 1}"] = (wl, "[um]")
        if result.star_flux is not None:
            header[f"HIERARCH HCDC STARFLUX{k + 1}"] = (result.star_flux[k], "[ADU/frame] 1-FWHM ap.")
        if result.fwhm_px is not None:
            header[f"HIERARCH HCDC FWHM{k + 1}"] = (result.fwhm_px[k], "[px]")
        if result.centres_detector_xy is not None:
            header[f"HIERARCH HCDC CENX{k + 1}"] = (result.centres_detector_xy[k][0], "det. x 0-based")
            header[f"HIERARCH HCDC CENY{k + 1}"] = (result.centres_detector_xy[k][1], "det. y 0-based")
    header["HIERARCH HCDC NREJECT"] = result.n_rejected
    _provenance_cards(header, provenance)
    paths["cube"] = out_dir / "cube.fits"
    fits.PrimaryHDU(result.cube.astype(np.float32), header=header).writeto(paths["cube"], overwrite=True)
    angles_header = fits.Header()
    angles_header["BUNIT"] = ("deg", "derotation angles, vip-hci convention")
    _provenance_cards(angles_header, provenance)
    paths["angles"] = out_dir / "angles.fits"
    fits.PrimaryHDU(result.derotation_deg.astype(np.float64), header=angles_header).writeto(paths["angles"],
                                                                                           overwrite=True)
    if result.psf is not None:
        psf_header = header.copy()
        psf_header["BUNIT"] = ("", "flux in 1-FWHM-diameter aperture = 1")
        paths["psf"] = out_dir / "psf.fits"
        fits.PrimaryHDU(result.psf, header=psf_header).writeto(paths["psf"], overwrite=True)
    table = Table(rows=[(f.file, f.index, f.time_utc, f.parang_deg, f.derotation_deg, f.halo_flux, f.accepted,
                         f.reason or "") for f in result.frames],
                  names=("file", "index", "time_utc", "parang_deg", "derotation_deg", "halo_flux", "accepted",
                         "reason"))
    table.meta["problems"] = list(result.problems)
    paths["frames"] = out_dir / "frames.ecsv"
    table.write(paths["frames"], format="ascii.ecsv", overwrite=True)
    return paths
