"""The figures of the pipeline notebooks (matplotlib, rendered in the HTML reports)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from reduction.calibration import stack_median


#: Screen resolution for the notebook and HTML reports: the PNG encoding of a report figure
#: is a noticeable part of a short step's time, and the images are shown pixel for pixel
#: (``interpolation="nearest"``), which is also what one wants to judge a centring.
DPI = 72


def _stretch(image: np.ndarray) -> np.ndarray:
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return image
    low, high = np.percentile(finite, [1, 99.8])
    return np.arcsinh((np.clip(image, low, high) - low) / max((high - low) / 50, 1e-12))


def _no_ticks(ax) -> None:
    """Images need no tick labels (their layout is most of a small figure's drawing time)."""
    ax.set_xticks([])
    ax.set_yticks([])


def preprocess_figure(products: dict[str, str]):
    """Centred (derotated) frame of each band, the PSF, and angles with rejected frames."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    cube = fits.getdata(products["cube"])
    angles = np.ravel(fits.getdata(products["angles"]))
    frames = Table.read(products["frames"], format="ascii.ecsv")
    n_bands = cube.shape[0]
    fig, axes = plt.subplots(1, n_bands + 2, figsize=(3.4 * (n_bands + 2), 3.4), dpi=DPI)
    for band in range(n_bands):
        # the median of the centred frames (pupil-stabilised): a cheap check of the centring
        image = stack_median(np.asarray(cube[band], dtype=np.float32))
        axes[band].imshow(_stretch(image), origin="lower", cmap="inferno", interpolation="nearest")
        cy, cx = image.shape[0] // 2, image.shape[1] // 2
        axes[band].plot(cx, cy, "c+", ms=12)
        axes[band].set_title(f"band {band + 1}: median centred frame")
        _no_ticks(axes[band])
    if "psf" in products:
        psf = fits.getdata(products["psf"])
        axes[n_bands].imshow(_stretch(psf[0]), origin="lower", cmap="inferno", interpolation="nearest")
        axes[n_bands].set_title("off-axis PSF (band 1)")
        _no_ticks(axes[n_bands])
    else:
        axes[n_bands].text(0.5, 0.5, "no PSF (no FLUX frames)", ha="center", transform=axes[n_bands].transAxes)
    ax = axes[-1]
    ok = np.asarray(frames["accepted"], dtype=bool)
    index = np.arange(len(frames))
    ax.plot(index[ok], np.asarray(frames["derotation_deg"])[ok], "o", label="accepted")
    if (~ok).any():
        ax.plot(index[~ok], np.asarray(frames["derotation_deg"])[~ok], "rx", ms=10, label="rejected")
    ax.set_xlabel("frame")
    ax.set_ylabel("derotation angle (deg)")
    ax.legend()
    ax.set_title(f"{ok.sum()} frames kept, {(~ok).sum()} rejected")
    # fixed margins: a tight layout measures every text once more (a third of this figure's time)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.14, top=0.9, wspace=0.18)
    return fig


def postprocess_figure(products: dict[str, str]):
    """Residuals, S/N map and contrast curve of every band."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    bands = sorted(k[len("residuals"):] for k in products if k.startswith("residuals"))
    fig, axes = plt.subplots(len(bands), 3, figsize=(11, 3.4 * len(bands)), squeeze=False, dpi=DPI)
    for row, suffix in enumerate(bands):
        residuals = fits.getdata(products[f"residuals{suffix}"])
        snr = fits.getdata(products[f"snrmap{suffix}"])
        detections = Table.read(products[f"detections{suffix}"], format="ascii.ecsv")
        curve = Table.read(products[f"contrast_curve{suffix}"], format="ascii.ecsv")
        axes[row, 0].imshow(residuals, origin="lower", cmap="RdBu_r", interpolation="nearest",
                            vmin=-np.nanpercentile(np.abs(residuals), 99.5),
                            vmax=np.nanpercentile(np.abs(residuals), 99.5))
        axes[row, 0].set_title(f"residuals {suffix.strip('_') or ''}")
        image = axes[row, 1].imshow(snr, origin="lower", cmap="viridis", vmin=-3, vmax=8, interpolation="nearest")
        for candidate in detections:
            axes[row, 1].add_patch(plt.Circle((candidate["x"], candidate["y"]), 4, fill=False, color="r"))
            axes[row, 1].annotate(f"S/N {candidate['snr']:.1f}", (candidate["x"] + 5, candidate["y"] + 5),
                                  color="w", fontsize=8)
        fig.colorbar(image, ax=axes[row, 1], label="S/N")
        axes[row, 1].set_title(f"S/N map, {len(detections)} candidate(s)")
        column = "contrast_5sigma" if np.isfinite(curve["contrast_5sigma"]).any() else "flux_5sigma"
        axes[row, 2].semilogy(curve["sep_arcsec"], curve[column])
        axes[row, 2].set_xlabel("separation (arcsec)")
        axes[row, 2].set_ylabel("5-sigma contrast" if column == "contrast_5sigma" else "5-sigma flux (ADU)")
        axes[row, 2].grid(True, which="both", alpha=0.3)
        axes[row, 2].set_title("detection limit")
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=80)
    return path
