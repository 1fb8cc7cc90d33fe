"""Detectors: read-out windows, fixed pixel maps, and turning electrons into raw ADU.

IRDIS is a 2048 x 1024 Hawaii-2RG read as two 1024 x 1024 halves side by side,
one per DBI band (left = first band). IFS is 2048 x 2048. A windowed read-out
is described by ESO-style keywords, one window per band (IRDIS) or one (IFS):

``HIERARCH ESO DET WINDOWS`` = number of windows; for window ``k`` (1-based)
``DET WINk STRX/STRY`` = 1-based first detector column/row, ``DET WINk NX/NY``
= size. The data array holds the windows side by side along x in window order.
A full-frame IRDIS file is the same description with two 1024 x 1024 windows.
Use :meth:`Readout.from_header` and :meth:`Readout.detector_to_file` to map
full-detector pixel coordinates (0-based, the truth's convention) to the data.

Raw values are ``uint16`` with ``BZERO = 32768`` (BITPIX 16), as astropy writes
and reads unsigned 16-bit data: ``ADU = bias + (signal_e + noise) / gain``,
clipped to [0, 65535].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.io import fits
from scipy import ndimage

SATURATION_ADU = 65535


@dataclass(frozen=True)
class Window:
    """A detector window, 0-based start ``(x0, y0)`` and size ``(nx, ny)``."""

    x0: int
    y0: int
    nx: int
    ny: int


@dataclass(frozen=True)
class Readout:
    """How a file's data array maps onto its detector."""

    detector_shape: tuple[int, int]
    windows: tuple[Window, ...]

    @property
    def shape(self) -> tuple[int, int]:
        return self.windows[0].ny, sum(w.nx for w in self.windows)

    def column_offset(self, index: int) -> int:
        return sum(w.nx for w in self.windows[:index])

    def extract(self, full: np.ndarray) -> np.ndarray:
        """The part of a full-detector map that the file contains, in file layout."""
        parts = [full[w.y0 : w.y0 + w.ny, w.x0 : w.x0 + w.nx] for w in self.windows]
        return np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0].copy()

    def detector_to_file(self, x: float, y: float, index: int) -> tuple[float, float]:
        """Full-detector 0-based ``(x, y)`` of window ``index`` -> data array ``(x, y)``."""
        w = self.windows[index]
        return x - w.x0 + self.column_offset(index), y - w.y0

    def file_to_detector(self, x: float, y: float) -> tuple[float, float, int]:
        """Data array ``(x, y)`` -> full-detector ``(x, y)`` and window index."""
        for index, w in enumerate(self.windows):
            off = self.column_offset(index)
            if off <= x < off + w.nx:
                return x - off + w.x0, y + w.y0, index
        raise ValueError(f"x={x} outside the data")

    def header_cards(self) -> list[tuple[str, object, str]]:
        cards: list[tuple[str, object, str]] = [("HIERARCH ESO DET WINDOWS", len(self.windows), "# of windows readout")]
        for k, w in enumerate(self.windows, start=1):
            cards += [
                (f"HIERARCH ESO DET WIN{k} STRX", w.x0 + 1, "Lower left pixel in X"),
                (f"HIERARCH ESO DET WIN{k} STRY", w.y0 + 1, "Lower left pixel in Y"),
                (f"HIERARCH ESO DET WIN{k} NX", w.nx, "# of pixels along X"),
                (f"HIERARCH ESO DET WIN{k} NY", w.ny, "# of pixels along Y"),
            ]
        return cards

    @classmethod
    def from_header(cls, header: fits.Header, detector_shape: tuple[int, int]) -> "Readout":
        n = int(header.get("HIERARCH ESO DET WINDOWS", 1))
        wins = []
        for k in range(1, n + 1):
            wins.append(
                Window(
                    int(header[f"HIERARCH ESO DET WIN{k} STRX"]) - 1,
                    int(header[f"HIERARCH ESO DET WIN{k} STRY"]) - 1,
                    int(header[f"HIERARCH ESO DET WIN{k} NX"]),
                    int(header[f"HIERARCH ESO DET WIN{k} NY"]),
                )
            )
        return cls(detector_shape, tuple(wins))


#: Nominal star (coronagraph) positions on the full IRDIS detector, per band, (x, y) 0-based.
IRDIS_NOMINAL_CENTRES = ((484.0, 522.0), (1505.0, 524.0))
IFS_NOMINAL_CENTRE = (1023.5, 1023.5)


def irdis_readout(window: int | None) -> Readout:
    if window is None:
        return Readout((1024, 2048), (Window(0, 0, 1024, 1024), Window(1024, 0, 1024, 1024)))
    if not 8 <= window <= 1024:
        raise ValueError("IRDIS window must be between 8 and 1024 pixels")
    wins = []
    for (xc, yc), lo in zip(IRDIS_NOMINAL_CENTRES, (0, 1024)):
        x0 = int(min(max(round(xc) - window // 2, lo), lo + 1024 - window))
        y0 = int(min(max(round(yc) - window // 2, 0), 1024 - window))
        wins.append(Window(x0, y0, window, window))
    y0 = min(w.y0 for w in wins)
    return Readout((1024, 2048), tuple(Window(w.x0, y0, w.nx, w.ny) for w in wins))


def ifs_readout(window: int | None) -> Readout:
    if window is None:
        return Readout((2048, 2048), (Window(0, 0, 2048, 2048),))
    if not 8 <= window <= 2048:
        raise ValueError("IFS window must be between 8 and 2048 pixels")
    x0 = int(round(IFS_NOMINAL_CENTRE[0] + 0.5)) - window // 2
    return Readout((2048, 2048), (Window(x0, x0, window, window),))


@dataclass(frozen=True)
class DetectorModel:
    """A detector and its fixed maps (the truth saved in ``truth/flat_map*.fits``)."""

    name: str
    shape: tuple[int, int]
    gain_e_per_adu: float
    read_noise_e: float
    bias_adu: float
    dark_current_e_s: float  #: median of the normal pixels
    flat: np.ndarray  #: pixel response, median 1 (dead pixels excluded)
    dark_map: np.ndarray  #: e-/s, hot pixels included
    bias_map: np.ndarray  #: ADU
    hot: np.ndarray  #: bool
    dead: np.ndarray  #: bool
    flat_rms: float

    @property
    def response(self) -> np.ndarray:
        return np.where(self.dead, 0.0, self.flat).astype(np.float32)

    def summary(self) -> dict:
        hy, hx = np.nonzero(self.hot)
        dy, dx = np.nonzero(self.dead)
        return {
            "name": self.name,
            "shape": list(self.shape),
            "gain_e_per_adu": self.gain_e_per_adu,
            "read_noise_e": self.read_noise_e,
            "bias_adu": self.bias_adu,
            "dark_current_e_s": self.dark_current_e_s,
            "flat_rms": self.flat_rms,
            "n_hot": int(hx.size),
            "n_dead": int(dx.size),
            "hot_pixels_xy": [[int(a), int(b)] for a, b in zip(hx, hy)],
            "dead_pixels_xy": [[int(a), int(b)] for a, b in zip(dx, dy)],
        }

    def write(self, path) -> None:
        """Save the maps: FLAT, DARK (e-/s), BIAS (ADU), HOT, DEAD (uint8), full detector."""
        primary = fits.PrimaryHDU()
        primary.header["DETECTOR"] = self.name
        primary.header["GAIN"] = (self.gain_e_per_adu, "e-/ADU")
        primary.header["RON"] = (self.read_noise_e, "read noise, e-")
        primary.header["DARKCUR"] = (self.dark_current_e_s, "median dark current, e-/s")
        primary.header["COMMENT"] = "HC-DC simulator truth: never part of the raw archive."
        hdus = [
            primary,
            fits.ImageHDU(self.flat.astype(np.float32), name="FLAT"),
            fits.ImageHDU(self.dark_map.astype(np.float32), name="DARK"),
            fits.ImageHDU(self.bias_map.astype(np.float32), name="BIAS"),
            fits.ImageHDU(self.hot.astype(np.uint8), name="HOT"),
            fits.ImageHDU(self.dead.astype(np.uint8), name="DEAD"),
        ]
        fits.HDUList(hdus).writeto(path, overwrite=True)


def make_detector(
    name: str,
    shape: tuple[int, int],
    rng: np.random.Generator,
    *,
    gain: float,
    read_noise: float,
    bias: float,
    dark_current: float,
    flat_rms: float = 0.015,
    hot_fraction: float = 1e-3,
    dead_fraction: float = 3e-4,
    halves: int = 1,
) -> DetectorModel:
    """Draw the fixed maps of a detector (deterministic for ``rng``)."""
    ny, nx = shape
    # low-order illumination/response (±~2 %), per half for IRDIS
    coarse = rng.normal(0.0, 0.012, size=(8, 8 * halves))
    smooth = ndimage.zoom(coarse, (ny / coarse.shape[0], nx / coarse.shape[1]), order=3, mode="nearest")
    pix = rng.normal(0.0, flat_rms, size=shape)
    flat = (1.0 + smooth) * (1.0 + pix)
    w = nx // halves
    for h in range(halves):
        part = flat[:, h * w : (h + 1) * w]
        part /= np.median(part)
    flat = flat.astype(np.float32)
    dark = (dark_current * np.exp(rng.normal(0.0, 0.3, size=shape) - 0.0)).astype(np.float32)
    hot = rng.random(shape) < hot_fraction
    dark[hot] = np.exp(rng.uniform(np.log(20.0), np.log(3000.0), size=int(hot.sum()))).astype(np.float32)
    dead = (rng.random(shape) < dead_fraction) & ~hot
    columns = rng.normal(0.0, 3.0, size=nx)
    bias_map = (bias + columns[None, :] + rng.normal(0.0, 1.0, size=(ny, 1))).astype(np.float32)
    return DetectorModel(name, shape, gain, read_noise, bias, dark_current, flat, dark, bias_map, hot, dead, flat_rms)


@dataclass
class DetectorView:
    """A detector's maps cut to one read-out layout (cached per layout)."""

    model: DetectorModel
    readout: Readout

    def __post_init__(self):
        self.response = self.readout.extract(self.model.response)
        self.dark = self.readout.extract(self.model.dark_map)
        self.bias = self.readout.extract(self.model.bias_map)

    def expose(
        self, rng: np.random.Generator | None, photo_e, dit: float, ndit: int, extra_dark: np.ndarray | None = None
    ) -> np.ndarray:
        """Raw ADU cube (ndit, ny, nx) uint16.

        ``photo_e`` is the expected number of photo-electrons per pixel *before*
        the pixel response (sources + sky + thermal): an array (ndit, ny, nx) or
        (ny, nx), an iterator yielding ``ndit`` frames (so that a full-frame
        cube never exists in float), or None; ``rng=None`` gives the noiseless
        expectation.
        """
        ny, nx = self.readout.shape
        out = np.empty((ndit, ny, nx), dtype=np.uint16)
        dark = self.dark * np.float32(dit)
        if extra_dark is not None:
            dark = dark + extra_dark * np.float32(dit)
        gain = np.float32(self.model.gain_e_per_adu)
        frames = None
        if photo_e is not None and not isinstance(photo_e, np.ndarray):
            frames = iter(photo_e)
        for i in range(ndit):
            if photo_e is None:
                signal = dark.copy()
            else:
                if frames is not None:
                    frame = next(frames)
                else:
                    frame = photo_e[i] if photo_e.ndim == 3 else photo_e
                signal = frame * self.response + dark
            if rng is not None:
                signal = rng.poisson(np.maximum(signal, 0.0)).astype(np.float32)
                signal += rng.standard_normal((ny, nx), dtype=np.float32) * np.float32(self.model.read_noise_e)
            adu = self.bias + signal / gain
            np.clip(adu, 0, SATURATION_ADU, out=adu)
            out[i] = np.rint(adu).astype(np.uint16)
        return out
