"""SPHERE IFS raw frames -> spectral cubes ``(λ, t, y, x)``: spectra positions, wavelengths, extraction.

The IFS puts one short spectrum per lenslet on its detector. Going from a raw
frame to an image per wavelength takes three calibrations and one resampling
(SPHERE Data Reduction Handbook; Mesa et al. 2015, A&A 576, A121; vlt-sphere):

1. **Spectra positions** (``SPECPOS,LAMP``, a flat continuum through every
   lenslet): each spectrum's centre on the detector is found, and every spectrum is
   given its lenslet's lattice indices ``(u, v)`` by fitting the lattice
   (origin, two vectors) to the centres. The same lamp gives each lenslet's
   throughput (the lenslet flat).
2. **Wavelength solution** (``LAMP,WAVE``, the calibration lasers): the laser lines'
   rows along each spectrum are measured (Gaussian three-point peaks) and a dispersion
   common to all lenslets plus one offset per lenslet is fitted.
3. **Extraction**: each calibrated frame's spectra are summed over a 5-column box
   (the spectra are ~2 px wide) row by row, interpolated onto the reduced cube's
   channels (``SphereIfs.channel_wavelengths_um``) and divided by the lenslet flat.
4. **Resampling**: the per-lenslet images (one per channel, on the lenslet grid of
   ``SphereIfs.lenslet_scale_mas``) are resampled to ``SphereIfs.pixel_scale_mas``
   pixels centred on the star, in one separable cubic-convolution pass (Keys 1981);
   the values are scaled by the pixel-area ratio so that a pixel holds the flux
   that falls on it.

The reduced cube's axes are the lenslet lattice axes: ``x`` along ``u``, ``y``
along ``v``; the derotation angle is ``PARANG + SphereIfs.derotation_offset_deg()``.

Model and limits, said plainly: the lattice fitted here is the square lattice
of HC-DC's simulated IFS (``SphereIfs.lenslet_pitch_px`` and
``lattice_rotation_deg``, refined by the fit). Real IFS frames have a hexagonal
lattice; on them the lattice fit fails with a clear error, and their cubes
should be reduced with the ESO pipeline and registered with
``hcdc register-reduced``. There is no cross-talk correction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from .. import conventions
from ..centring import CentringError, WaffleCentringParameters, find_waffle_centre, waffle_spot_separation_px
from ..instruments import SphereIfs
from .angles import parallactic_angles
from .calibrate import calibrate_frames, reduce_calibrations
from .centre import coarse_waffle_centre
from .model import CalibratedObservation, PreprocessingError, ReducedCalibration
from .photometry import frame_quality, gaussian_fwhm, psf_photometry
from .reading import date_of, dit_of, matching_shape, release

#: Rows of the window read along each spectrum: the ~39-px spectrum and a margin that stops
#: short of the next spectrum in the same column (one lattice step, ~45 px, further).
WINDOW_ROWS = 45
#: Columns summed across a spectrum: the spectra are ~2 px FWHM wide.
BOX_COLUMNS = 5


class IfsCalibrationError(ValueError):
    """The spectra positions or the wavelength solution cannot be derived (the reason says why)."""


# --- spectra positions --------------------------------------------------------------------------


@dataclass(frozen=True)
class SpectraPositions:
    """Where each lenslet's spectrum falls on the detector (from SPECPOS,LAMP).

    Attributes
    ----------
    x, y : ndarray (n,)
        Spectrum centre (column, row) in the file's data array, 0-based.
    u, v : ndarray (n,) int
        Lenslet lattice indices (the reduced cube's x and y axes).
    lattice : ndarray (3, 2)
        Fitted lattice: origin (x, y) of lenslet (0, 0), then the vectors of one step in u and in v.
    rms_px : float
        Residual of the lattice fit.
    """

    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    lattice: np.ndarray
    rms_px: float

    @property
    def n_lenslets(self) -> int:
        return int(self.x.size)

    def quality(self) -> dict[str, Any]:
        pitch = [float(np.hypot(*self.lattice[1])), float(np.hypot(*self.lattice[2]))]
        return {
            "n_lenslets": self.n_lenslets,
            "lattice_rms_px": round(self.rms_px, 4),
            "pitch_px": [round(p, 4) for p in pitch],
            "rotation_deg": round(math.degrees(math.atan2(self.lattice[1][1], self.lattice[1][0])), 4),
        }


def _peak_offset(left: np.ndarray, centre: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Sub-pixel offset of a peak from three samples (exact for a sampled Gaussian; parabola on logs)."""
    floor = 1e-6 * np.maximum(centre, 1e-30)
    la, lb, lc = (np.log(np.maximum(v, floor)) for v in (left, centre, right))
    denominator = la - 2 * lb + lc
    with np.errstate(invalid="ignore", divide="ignore"):
        offset = np.where(denominator < 0, 0.5 * (la - lc) / denominator, 0.0)
    return np.clip(offset, -0.5, 0.5)


def locate_spectra(
    image: np.ndarray,
    pitch_px: float = SphereIfs.lenslet_pitch_px.value,
    rotation_deg: float = SphereIfs.lattice_rotation_deg.value,
    spectrum_rows: int = SphereIfs.n_channels,
) -> SpectraPositions:
    """Find the spectra of a calibrated SPECPOS frame and index them on the lenslet lattice.

    Only spectra whose whole extraction window lies in the frame are kept.

    Raises
    ------
    IfsCalibrationError
        Too few spectra, or the centres do not fit a lattice of the expected geometry (a
        hexagonal lattice, a wrong mode, an unlit lamp).
    """
    image = np.nan_to_num(np.asarray(image, dtype=np.float32))
    ny, nx = image.shape
    # matched filter along the spectra: their length lit, two dark rows at each end (the gap to the
    # next spectrum of the same column is ~6 rows); zero-sum, so it peaks sharply on a spectrum's
    # centre whatever the background. The next columns of spectra are ~pitch/3 px aside.
    kernel = np.concatenate(
        [np.full(2, -spectrum_rows / 4.0), np.ones(spectrum_rows), np.full(2, -spectrum_rows / 4.0)]
    )
    along = ndimage.correlate1d(image, kernel, axis=0, mode="constant")
    across = ndimage.gaussian_filter1d(along, 1.0, axis=1, mode="constant")
    peaks = across == ndimage.maximum_filter(across, size=(spectrum_rows // 2, 3), mode="constant")
    level = np.percentile(across, 99.5)
    peaks &= across > 0.5 * level
    ys, xs = np.nonzero(peaks)
    half = WINDOW_ROWS // 2
    keep = (ys >= half) & (ys < ny - half - 1) & (xs >= BOX_COLUMNS // 2 + 1) & (xs < nx - BOX_COLUMNS // 2 - 1)
    ys, xs = ys[keep], xs[keep]
    if xs.size < 16:
        raise IfsCalibrationError(f"only {xs.size} spectra found in the SPECPOS frame: lamp off, or not an IFS frame")
    x = xs + _peak_offset(along[ys, xs - 1], along[ys, xs], along[ys, xs + 1])
    y = ys + _peak_offset(across[ys - 1, xs], across[ys, xs], across[ys + 1, xs])

    # lattice indices from the nominal geometry around the spectrum nearest the middle, then a
    # least-squares fit of origin and vectors, twice (the indices settle at the first pass)
    theta = math.radians(rotation_deg)
    vectors = pitch_px * np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    ref = int(np.argmin((x - nx / 2) ** 2 + (y - ny / 2) ** 2))
    origin = np.array([x[ref], y[ref]])
    points = np.stack([x, y], axis=1)
    for _ in range(3):
        uv = np.rint(np.linalg.solve(vectors.T, (points - origin).T).T).astype(int)
        design = np.column_stack([np.ones(len(x)), uv[:, 0], uv[:, 1]])
        solution, *_ = np.linalg.lstsq(design, points, rcond=None)
        origin, vectors = solution[0], solution[1:]
    residual = np.hypot(*(points - design @ solution).T)
    rms = float(np.sqrt(np.mean(residual**2)))
    unique = len({(a, b) for a, b in uv})
    if rms > 0.6 or unique < 0.98 * len(x) or np.percentile(residual, 99) > 1.5:
        raise IfsCalibrationError(
            f"the {len(x)} spectra centres do not fit a square lenslet lattice (rms {rms:.2f} px, "
            f"{len(x) - unique} shared indices): not the modelled IFS geometry (a real, hexagonal IFS "
            "lattice is not supported; register its cubes with hcdc register-reduced)"
        )
    return SpectraPositions(
        x=x.astype(np.float64), y=y.astype(np.float64), u=uv[:, 0], v=uv[:, 1], lattice=solution, rms_px=rms
    )


# --- extraction ---------------------------------------------------------------------------------


def _window_indices(positions: SpectraPositions) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices (n, WINDOW_ROWS, 1) and (n, 1, BOX_COLUMNS) of each spectrum's window."""
    half = WINDOW_ROWS // 2
    rows = (np.rint(positions.y).astype(int) - half)[:, None, None] + np.arange(WINDOW_ROWS)[None, :, None]
    cols = (np.rint(positions.x).astype(int) - BOX_COLUMNS // 2)[:, None, None] + np.arange(BOX_COLUMNS)[None, None, :]
    return rows, cols


def window_spectra(frames: np.ndarray, positions: SpectraPositions) -> np.ndarray:
    """Box-summed spectra along each window: ``(n_frames, n_lenslets, WINDOW_ROWS)`` from ``(n_frames, y, x)``."""
    frames = np.asarray(frames, dtype=np.float32)
    rows, cols = _window_indices(positions)
    if frames.ndim == 2:
        frames = frames[None]
    return frames[:, rows, cols].sum(axis=-1)


@dataclass(frozen=True)
class WavelengthSolution:
    """Wavelength of every row of every spectrum window (from LAMP,WAVE).

    ``λ(row) = offset_um[l] + dispersion_um_per_px * row`` with ``row`` counted from the
    first row of lenslet ``l``'s window. Lenslets whose lines were not all found have a
    NaN offset (``valid`` is False) and are left out of the cubes.
    """

    offset_um: np.ndarray
    dispersion_um_per_px: float
    rms_nm: float
    lines_um: tuple[float, ...]

    @property
    def valid(self) -> np.ndarray:
        return np.isfinite(self.offset_um)

    def quality(self) -> dict[str, Any]:
        return {
            "dispersion_nm_per_px": round(self.dispersion_um_per_px * 1e3, 5),
            "line_rms_nm": round(self.rms_nm, 5),
            "lines_um": list(self.lines_um),
            "n_lenslets_solved": int(self.valid.sum()),
            "n_lenslets_unsolved": int((~self.valid).sum()),
        }


def wavelength_solution(wave_spectra: np.ndarray, lines_um: Sequence[float]) -> WavelengthSolution:
    """Fit the laser lines of the LAMP,WAVE spectra ``(n_lenslets, WINDOW_ROWS)``.

    A first pass takes the spectra with exactly ``len(lines_um)`` clear local maxima, in order
    of wavelength along the rows, and gives the dispersion: the median of their slopes (it is
    one optical design). A second pass searches each line of every spectrum within two rows
    of where that solution puts it (robust to hot pixels and cosmics elsewhere); a lenslet
    without a clear peak for every line gets no solution. Each lenslet keeps its own offset.

    Raises
    ------
    IfsCalibrationError
        Fewer than two lines, or lines found in almost no spectrum.
    """
    lines = np.asarray(sorted(lines_um), dtype=float)
    if lines.size < 2:
        raise IfsCalibrationError(f"{lines.size} calibration laser line(s) in this mode: two are needed")
    s = np.asarray(wave_spectra, dtype=np.float64)
    n, m = s.shape
    inner = s[:, 1:-1]
    is_peak = (inner > s[:, :-2]) & (inner >= s[:, 2:])
    level = np.max(s, axis=1, keepdims=True)
    is_peak &= inner > 0.15 * level
    rows = np.full((n, lines.size), np.nan)
    ok = is_peak.sum(axis=1) == lines.size
    idx = np.nonzero(ok)[0]
    if idx.size:
        peak_rows = np.array([np.nonzero(is_peak[i])[0] + 1 for i in idx])  # (k, n_lines)
        left = np.take_along_axis(s[idx], peak_rows - 1, 1)
        centre = np.take_along_axis(s[idx], peak_rows, 1)
        right = np.take_along_axis(s[idx], peak_rows + 1, 1)
        rows[idx] = peak_rows + _peak_offset(left, centre, right)
    if ok.sum() < max(8, 0.5 * n):
        raise IfsCalibrationError(
            f"the {lines.size} laser lines were found in {int(ok.sum())} of {n} spectra "
            "(LAMP,WAVE frame of another mode, or lamp off)"
        )
    r = rows[ok]
    rc = r - r.mean(axis=1, keepdims=True)
    slopes = (rc * (lines - lines.mean())).sum(axis=1) / (rc**2).sum(axis=1)
    dispersion = float(np.median(slopes))
    if not dispersion > 0:
        raise IfsCalibrationError("the laser lines do not increase in wavelength along the spectra")
    # second pass, every spectrum: each line is searched within 2 rows of where the common
    # solution puts it, so a hot pixel or a cosmic elsewhere in the window does not matter
    typical = float(np.median((lines[None, :] - dispersion * r).mean(axis=1)))
    expected = np.rint((lines - typical) / dispersion).astype(int)
    if expected.min() < 3 or expected.max() > m - 4:
        raise IfsCalibrationError("the laser lines fall at the ends of the spectra: wrong mode for this LAMP,WAVE")
    offsets_around = np.arange(-2, 3)
    candidates = expected[None, :, None] + offsets_around[None, None, :]  # (1, lines, 5)
    values = s[:, candidates[0]]  # (n, lines, 5)
    best = np.argmax(values, axis=2)
    peak_rows = expected[None, :] + offsets_around[best]
    left = np.take_along_axis(s, peak_rows - 1, 1)
    centre = np.take_along_axis(s, peak_rows, 1)
    right = np.take_along_axis(s, peak_rows + 1, 1)
    clear = (centre > left) & (centre >= right) & (centre > 0.15 * level)
    ok = clear.all(axis=1)
    rows = np.where(ok[:, None], peak_rows + _peak_offset(left, centre, right), np.nan)
    r = rows[ok]
    offsets = np.full(n, np.nan)
    offsets[ok] = (lines[None, :] - dispersion * r).mean(axis=1)
    residual = lines[None, :] - (offsets[ok][:, None] + dispersion * r)
    # lenslets whose own lines disagree with the common solution by > a third of a row are unsolved
    bad = np.abs(residual).max(axis=1) > dispersion / 3
    solved = np.nonzero(ok)[0]
    offsets[solved[bad]] = np.nan
    rms = float(np.sqrt(np.mean(residual[~bad] ** 2))) * 1e3
    return WavelengthSolution(
        offset_um=offsets, dispersion_um_per_px=dispersion, rms_nm=rms, lines_um=tuple(float(v) for v in lines)
    )


@dataclass(frozen=True)
class SpectralExtractor:
    """Everything needed to turn calibrated frames into lenslet images per channel.

    Built once per observation from the spectra positions, the wavelength solution and
    the lenslet flat; :meth:`lenslet_images` is then one gather, one interpolation
    and one scatter per frame.
    """

    positions: SpectraPositions
    solution: WavelengthSolution
    wavelengths_um: tuple[float, ...]
    lenslet_flat: np.ndarray  #: (n,) relative lenslet throughput (median 1)
    _row0: np.ndarray  #: (n_used, n_channels) interpolation rows (floor)
    _frac: np.ndarray  #: (n_used, n_channels) weights of the next row
    _used: np.ndarray  #: lenslets with a wavelength solution and a throughput
    shape: tuple[int, int]  #: (nv, nu) of the lenslet images
    origin_uv: tuple[int, int]  #: (u, v) of image pixel (0, 0)

    @classmethod
    def build(
        cls,
        positions: SpectraPositions,
        solution: WavelengthSolution,
        wavelengths_um: Sequence[float],
        specpos_spectra: np.ndarray,
    ) -> "SpectralExtractor":
        wl = np.asarray(wavelengths_um, dtype=np.float64)
        rows = (wl[None, :] - solution.offset_um[:, None]) / solution.dispersion_um_per_px
        inside = np.all((rows >= 0) & (rows <= WINDOW_ROWS - 1), axis=1)
        continuum = np.asarray(specpos_spectra, dtype=np.float64)
        through = np.full(positions.n_lenslets, np.nan)
        good = solution.valid & inside
        if good.any():
            r0 = np.floor(np.nan_to_num(rows[good])).astype(int)
            r0 = np.clip(r0, 0, WINDOW_ROWS - 2)
            frac = rows[good] - r0
            sampled = (
                np.take_along_axis(continuum[good], r0, 1) * (1 - frac)
                + np.take_along_axis(continuum[good], r0 + 1, 1) * frac
            )
            through[good] = sampled.sum(axis=1)
        median = np.nanmedian(through) if np.isfinite(through).any() else np.nan
        if not np.isfinite(median) or median <= 0:
            raise IfsCalibrationError("no lenslet has both a wavelength solution and SPECPOS flux")
        flat = through / median
        used = good & (flat > 0.2)  # dead or vignetted lenslets are left out, not amplified
        r0 = np.clip(np.floor(rows[used]).astype(int), 0, WINDOW_ROWS - 2)
        frac = (rows[used] - r0).astype(np.float32)
        u, v = positions.u[used], positions.v[used]
        return cls(
            positions=positions,
            solution=solution,
            wavelengths_um=tuple(float(w) for w in wl),
            lenslet_flat=flat,
            _row0=r0,
            _frac=frac,
            _used=used,
            shape=(int(v.max() - v.min() + 1), int(u.max() - u.min() + 1)),
            origin_uv=(int(u.min()), int(v.min())),
        )

    @property
    def n_used(self) -> int:
        return int(self._used.sum())

    def spectra(self, frames: np.ndarray) -> np.ndarray:
        """Flat-fielded spectra on the channels: ``(n_frames, n_used, n_channels)``."""
        window = window_spectra(frames, self.positions)[:, self._used]
        low = np.take_along_axis(window, self._row0[None], 2)
        high = np.take_along_axis(window, self._row0[None] + 1, 2)
        values = low + (high - low) * self._frac[None]
        return values / self.lenslet_flat[self._used][None, :, None].astype(np.float32)

    def lenslet_images(self, frames: np.ndarray) -> np.ndarray:
        """``(n_frames, n_channels, nv, nu)`` images on the lenslet grid; NaN where no lenslet."""
        spectra = self.spectra(frames)
        n = spectra.shape[0]
        out = np.full((n, len(self.wavelengths_um)) + self.shape, np.nan, dtype=np.float32)
        v = self.positions.v[self._used] - self.origin_uv[1]
        u = self.positions.u[self._used] - self.origin_uv[0]
        out[:, :, v, u] = spectra.transpose(0, 2, 1)
        return out

    def valid_mask(self) -> np.ndarray:
        """(nv, nu) True where a lenslet has a spectrum."""
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.positions.v[self._used] - self.origin_uv[1], self.positions.u[self._used] - self.origin_uv[0]] = True
        return mask


# --- resampling ---------------------------------------------------------------------------------


def _keys_weights(t: np.ndarray) -> np.ndarray:
    """Keys (1981) cubic-convolution kernel, a = -0.5: interpolating, 4 taps, weights summing to 1."""
    t = np.abs(t)
    return np.where(t <= 1, 1.5 * t**3 - 2.5 * t**2 + 1, np.where(t < 2, -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2, 0.0))


def interpolation_matrix(n_out: int, n_in: int, start: float, step: float) -> np.ndarray:
    """``(n_out, n_in)`` weights sampling a line of ``n_in`` values at ``start + k * step``."""
    positions = start + step * np.arange(n_out)
    return _keys_weights(positions[:, None] - np.arange(n_in)[None, :]).astype(np.float32)


def resample_centred(images: np.ndarray, centre_xy: tuple[float, float], step: float, size: int) -> np.ndarray:
    """Resample lenslet images ``(..., nv, nu)`` to ``size`` x ``size`` pixels of ``step`` lenslets.

    The output's ``star_centre`` pixel lands on ``centre_xy`` (x, y in lenslet-image pixels).
    Values are multiplied by ``step**2`` (flux per output pixel). NaN inputs must not lie
    within two lenslets of the sampled area (see :func:`largest_crop`).
    """
    c = size // 2
    wy = interpolation_matrix(size, images.shape[-2], centre_xy[1] - c * step, step)
    wx = interpolation_matrix(size, images.shape[-1], centre_xy[0] - c * step, step)
    filled = np.nan_to_num(images, nan=0.0).astype(np.float32)
    return (wy @ filled @ wx.T) * np.float32(step**2)


def largest_crop(valid: np.ndarray, centre_xy: tuple[float, float], step: float, wanted: int) -> int:
    """The largest odd crop (up to ``wanted``) whose interpolation support lies on valid lenslets."""
    ny, nx = valid.shape
    for size in range(wanted if wanted % 2 else wanted - 1, 10, -2):
        reach = (size // 2) * step + 2
        x0, x1 = math.floor(centre_xy[0] - reach), math.ceil(centre_xy[0] + reach)
        y0, y1 = math.floor(centre_xy[1] - reach), math.ceil(centre_xy[1] + reach)
        if x0 < 0 or y0 < 0 or x1 >= nx or y1 >= ny:
            continue
        if valid[y0 : y1 + 1, x0 : x1 + 1].all():
            return size
    return 0


# --- one observation ----------------------------------------------------------------------------


def _centre_from_spots(
    images: np.ndarray, valid: np.ndarray, wavelengths: Sequence[float], params, problems: list[str]
) -> tuple[tuple[float, float], float] | None:
    """Star centre (x, y in lenslet-image pixels) from the waffle spots, median over the channels.

    Returns the centre and its per-axis 1-sigma in lenslets: the scatter of the channels' centres
    (ddof=1, the mean over x and y), each channel being an independent fit of the same star.
    """
    lenslet_arcsec = SphereIfs.lenslet_scale_mas.value / 1000
    ny, nx = valid.shape
    guess = (nx / 2, ny / 2)
    found, reasons = [], []
    for k in range(0, len(wavelengths), 2):
        separation = waffle_spot_separation_px(wavelengths[k], lenslet_arcsec)
        image = np.where(valid, images[k], 0.0)
        room = min(guess[0], guess[1], nx - 1 - guess[0], ny - 1 - guess[1])
        if separation / math.sqrt(2) + 3 > room:
            reasons.append(f"{wavelengths[k]:.3f} um: spots {separation:.1f} lenslets from the star, outside the field")
            continue
        try:
            coarse = coarse_waffle_centre(image, separation, guess, params.centre_search_px / 2)
            result = find_waffle_centre(
                image,
                coarse,
                WaffleCentringParameters(spot_separation_px=separation, search_radius_px=3.0, fit_box_px=5),
            )
        except CentringError as exc:
            reasons.append(f"{wavelengths[k]:.3f} um: {exc}")
            continue
        found.append(result.centre_xy)
    if len(found) < 3:
        problems.append(
            "star centre not found from the waffle spots in "
            f"{len(reasons)} of {len(range(0, len(wavelengths), 2))} channels (" + "; ".join(reasons[:3]) + ")"
        )
        return None
    centres = np.array(found)
    spread = float(np.hypot(*(centres - np.median(centres, axis=0)).T).max())
    if spread > 0.5:
        problems.append(f"waffle centres of the channels scatter by {spread:.2f} lenslets")
    scatter = float(np.sqrt(np.mean(np.var(centres, axis=0, ddof=1))))
    return (float(np.median(centres[:, 0])), float(np.median(centres[:, 1]))), scatter


def _centre_from_core(image: np.ndarray, valid: np.ndarray, sigma: float = 1.0) -> tuple[float, float]:
    """Peak of a (channel-collapsed) image refined by a Gaussian fit: x, y in lenslet-image pixels."""
    # smoothed over ~1 λ/D: the star's core and halo outweigh any single speckle
    smooth = ndimage.gaussian_filter(np.where(valid, np.nan_to_num(image), 0.0), sigma)
    py, px = np.unravel_index(np.argmax(np.where(valid, smooth, -np.inf)), smooth.shape)
    half = 6
    y0, x0 = max(py - half, 0), max(px - half, 0)
    cut = smooth[y0 : py + half + 1, x0 : px + half + 1]
    _width, fx, fy = gaussian_fwhm(cut)
    return float(fx + x0), float(fy + y0)


def preprocess_ifs_observation(files, params, reader, heads, problems: list[str]):
    """Pre-process one IFS observation (see the module docstring): a ``(39, t, y, x)`` cube.

    Called by :func:`reduction.preprocess.preprocess_observation` with the reader and
    the science headers it prepared; returns a ``CalibratedObservation``.
    """

    mode = files.filter
    if mode not in SphereIfs.filters:
        raise PreprocessingError(
            f"unknown IFS mode {mode!r} (keyword HIERARCH ESO INS2 COMB IFS); modes: {', '.join(SphereIfs.filters)}"
        )
    wavelengths = SphereIfs.channel_wavelengths_um(mode)
    used: list = []
    shape = tuple(heads[0].shape[-2:])
    calibrations = reduce_calibrations(files, shape, problems, used, reader)
    box = params.bad_pixel_box

    def mean_calibrated(paths, what: str) -> tuple[np.ndarray | None, list]:
        """The mean calibrated frame of some files (each file's mean calibrated once), and the files."""
        raws = matching_shape(reader.read([Path(p) for p in paths], problems), shape, what, problems)
        if not raws:
            return None, []
        used.extend(raws)
        images = [
            calibrate_frames(r.data.mean(axis=0, keepdims=True), dit_of(r), calibrations, box, what, problems)[0]
            for r in raws
        ]
        release(raws)
        return np.mean(images, axis=0), raws

    specpos, specpos_raws = mean_calibrated(files.specpos, "SPECPOS")
    if specpos is None:
        raise PreprocessingError("no usable SPECPOS,LAMP frames: the IFS spectra cannot be located")
    wave, wave_raws = mean_calibrated(files.wave, "WAVE")
    if wave is None:
        raise PreprocessingError("no usable LAMP,WAVE frames: the IFS spectra have no wavelength solution")
    try:
        positions = locate_spectra(specpos)
        solution = wavelength_solution(window_spectra(wave, positions)[0], SphereIfs.laser_lines_in(mode))
        extractor = SpectralExtractor.build(positions, solution, wavelengths, window_spectra(specpos, positions)[0])
    except IfsCalibrationError as exc:
        raise PreprocessingError(f"IFS calibration failed: {exc}") from exc
    table = np.column_stack(
        [positions.x, positions.y, positions.u, positions.v, extractor.lenslet_flat, solution.offset_um]
    ).astype(np.float64)
    spectra_quality = {
        **positions.quality(),
        "n_lenslets_extracted": extractor.n_used,
        "lenslet_flat_rms": round(float(np.nanstd(extractor.lenslet_flat[extractor._used])), 5),
        "columns": "x, y (0-based), u, v, lenslet flat, wavelength at window row 0 (um)",
    }
    calibrations.quality["ifs_spectra_positions"] = spectra_quality
    calibrations.products["ifs_spectra_positions"] = ReducedCalibration(
        "ifs_spectra_positions",
        table,
        None,
        spectra_quality,
        tuple(r.sha256 for r in specpos_raws),
        date_of(specpos_raws[0]),
    )
    wave_quality = solution.quality()
    calibrations.quality["ifs_wavelength_solution"] = wave_quality
    calibrations.products["ifs_wavelength_solution"] = ReducedCalibration(
        "ifs_wavelength_solution",
        solution.offset_um.astype(np.float64),
        None,
        wave_quality,
        tuple(r.sha256 for r in wave_raws + specpos_raws),
        date_of(wave_raws[0]),
    )
    valid = extractor.valid_mask()
    step = SphereIfs.pixel_scale_mas.value / SphereIfs.lenslet_scale_mas.value
    # λ/D of the middle channel, in cube pixels: the frame-quality annulus
    lod_px = wavelengths[len(wavelengths) // 2] * 1e-6 / 8.0 * 206264.806 / SphereIfs.pixel_scale_arcsec()

    # star centre: waffle spots of the CENTER frames, else the coronagraphic core (said loudly)
    centre = None
    centre_status, centre_sigma_px = "waffle", float("nan")
    centre_image, _centre_raws = mean_calibrated(files.center, "CENTER")
    if centre_image is not None:
        found = _centre_from_spots(extractor.lenslet_images(centre_image)[0], valid, wavelengths, params, problems)
        if found is not None:
            centre, scatter_lenslets = found
            centre_sigma_px = scatter_lenslets / step  # lenslets -> cube pixels
    else:
        problems.append("no OBJECT,CENTER frames: the star centre cannot be measured from the waffle spots")
    if centre is None:
        first = matching_shape(reader.read([Path(heads[0].path)], problems), shape, "OBJECT", problems)
        if not first:
            raise PreprocessingError("no star centre: no usable CENTER frames and no readable science frame")
        image = calibrate_frames(
            first[0].data.mean(axis=0, keepdims=True), dit_of(first[0]), calibrations, box, "science", problems
        )
        centre = _centre_from_core(np.nan_to_num(extractor.lenslet_images(image)[0].mean(axis=0)), valid, sigma=2.0)
        centre_status = "coronagraph-core"
        centre_sigma_px = max(params.header_centre_uncertainty_px, 1.0 / step)
        problems.append(
            "star centre taken from the coronagraphic residual core of the first science file "
            f"(the halo is not symmetric: its uncertainty is counted as {centre_sigma_px:.2f} px)"
        )

    crop = largest_crop(valid, centre, step, params.crop_px)
    if crop < 21:
        raise PreprocessingError(f"the star is too close to the edge of the lenslet field: a {crop}-px crop")
    if crop < params.crop_px:
        problems.append(f"frames cropped to {crop} px (lenslet field), not {params.crop_px}")

    # science, streamed file by file
    parts, names, science = [], [], []
    for head in heads:
        for raw in matching_shape(reader.read([Path(head.path)], problems), shape, "OBJECT", problems):
            calibrated = calibrate_frames(raw.data, dit_of(raw), calibrations, box, "science", problems)
            parts.append(resample_centred(extractor.lenslet_images(calibrated), centre, step, crop))
            names.extend((raw.path.name, i) for i in range(raw.n_frames))
            release([raw])
            science.append(raw)
    if not science:
        raise PreprocessingError("no readable OBJECT (science) file")
    used.extend(science)
    cube = np.ascontiguousarray(np.concatenate(parts, axis=0).transpose(1, 0, 2, 3))  # (λ, t, y, x)
    times, parang = parallactic_angles(science)
    derotation = conventions.derotation_angles(
        parang, SphereIfs.pupil_offset_deg.value + SphereIfs.ifs_offset_deg.value, SphereIfs.true_north_deg.value
    )
    frames, keep = frame_quality(cube.mean(axis=0), names, times, parang, derotation, params, lod_px, problems)

    # off-axis PSF per channel, from the FLUX files' mean frames
    psf = fwhm = star_flux = star_flux_rel_err = None
    flux_raws = matching_shape(reader.read(files.flux, problems), shape, "FLUX", problems)
    used.extend(flux_raws)
    if flux_raws:
        science_dit = dit_of(science[0])
        science_nd = SphereIfs._opt_str(science[0].header, "neutral_density", "")
        size = params.psf_crop_px
        stacks, dits, nds = [], [], []
        for raw in flux_raws:
            mean = calibrate_frames(
                raw.data.mean(axis=0, keepdims=True), dit_of(raw), calibrations, box, "FLUX", problems
            )
            images = extractor.lenslet_images(mean)[0]
            where = _centre_from_core(np.nan_to_num(images.mean(axis=0)), valid)
            if largest_crop(valid, where, step, size) < size:
                problems.append(f"{raw.path.name}: the FLUX star is too close to the field edge for a {size}-px PSF")
                continue
            stacks.append(resample_centred(images, where, step, size))
            dits.append(dit_of(raw))
            nds.append(SphereIfs._opt_str(raw.header, "neutral_density", ""))
        release(flux_raws)
        if stacks:
            per_channel = [
                psf_photometry([s[k] for s in stacks], dits, nds, wl, science_dit, science_nd)
                for k, wl in enumerate(wavelengths)
            ]
            psf = np.stack([p.psf for p in per_channel]).astype(np.float32)
            fwhm = tuple(p.fwhm_px for p in per_channel)
            star_flux = tuple(p.star_flux for p in per_channel)
            star_flux_rel_err = tuple(p.star_flux_rel_err for p in per_channel)
    else:
        problems.append("no OBJECT,FLUX frames: no off-axis PSF, contrasts cannot be calibrated")

    # the star's position on the detector: the spectrum of the lenslet under it (for the record)
    u_star, v_star = centre[0] + extractor.origin_uv[0], centre[1] + extractor.origin_uv[1]
    star_xy = tuple(positions.lattice[0] + u_star * positions.lattice[1] + v_star * positions.lattice[2])
    unique_inputs = {str(r.path): r.sha256 for r in used}
    return CalibratedObservation(
        cube=cube[:, keep],
        derotation_deg=derotation[keep],
        parallactic_deg=parang[keep],
        wavelengths_um=tuple(wavelengths),
        psf=psf,
        fwhm_px=fwhm,
        star_flux=star_flux,
        centres_file_xy=tuple((float(star_xy[0]), float(star_xy[1])) for _ in wavelengths),
        centres_detector_xy=None,
        frames=tuple(frames),
        calibrations=calibrations.quality,
        reduced_calibrations=calibrations.products,
        pixel_scale_arcsec=SphereIfs.pixel_scale_arcsec(),
        problems=tuple(dict.fromkeys(problems)),
        inputs=tuple({"path": p, "sha256": h} for p, h in sorted(unique_inputs.items())),
        centre_status=centre_status,
        centre_uncertainty_px=tuple(centre_sigma_px for _ in wavelengths),
        star_flux_rel_err=star_flux_rel_err,
    )
