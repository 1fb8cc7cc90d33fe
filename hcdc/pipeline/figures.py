"""The figures of the pipeline notebooks (matplotlib, rendered in the HTML reports)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table

from reduction import conventions
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


def _colour(image: np.ndarray, cmap: str = "inferno") -> np.ndarray:
    """RGB uint8 of a stretched image through a matplotlib colour map (origin at the bottom)."""
    from matplotlib import colormaps

    stretched = _stretch(np.asarray(image, dtype=np.float32))
    finite = np.isfinite(stretched)
    low = float(stretched[finite].min()) if finite.any() else 0.0
    high = float(stretched[finite].max()) if finite.any() else 1.0
    index = np.zeros(stretched.shape, dtype=np.uint8)
    index[finite] = np.clip((stretched[finite] - low) / max(high - low, 1e-12) * 255, 0, 255).astype(np.uint8)
    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    rgb = lut[index]
    rgb[~finite] = 128  # NaN (no data) in grey
    return rgb[::-1]


def _font(size: int):
    from matplotlib import font_manager
    from PIL import ImageFont

    return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)


def _angles_panel(frames: Table, size: int) -> np.ndarray:
    """The derotation angle of every frame, rejected frames as red crosses (RGB, ``size`` px square)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ok = np.asarray(frames["accepted"], dtype=bool)
    index = np.arange(len(frames))
    angles = np.asarray(frames["derotation_deg"], dtype=float)
    fig, ax = plt.subplots(figsize=(size / DPI, size / DPI), dpi=DPI)
    try:
        ax.plot(index[ok], angles[ok], "o", ms=4, label="accepted")
        if (~ok).any():
            ax.plot(index[~ok], angles[~ok], "rx", ms=8, label="rejected")
        ax.set_xlabel("frame")
        ax.set_ylabel("derotation angle (deg)")
        ax.legend(fontsize=8)
        fig.subplots_adjust(left=0.24, right=0.97, bottom=0.16, top=0.97)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    finally:
        plt.close(fig)


def _channels_to_show(n: int) -> list[int]:
    """All bands of a dual-band cube; first, middle and last channel of a spectral cube."""
    return list(range(n)) if n <= 3 else [0, n // 2, n - 1]


def preprocess_image(products: dict[str, str]) -> bytes:
    """The pre-processing figure as a PNG: median centred frame per band, the PSF, the angles.

    The images are colour-mapped with numpy and laid out with Pillow, pixel for
    pixel; only the angle plot goes through matplotlib. A matplotlib figure of the
    same panels cost a short pre-processing step 10 % of its compute in layout and
    text rendering, for nothing a person looks at.
    """
    from PIL import Image, ImageDraw

    with fits.open(products["cube"]) as hdul:
        cube = hdul[0].data
        header = hdul[0].header
        n_bands = cube.shape[0]
        shown = _channels_to_show(n_bands)
        # the median of the centred frames (pupil-stabilised): a cheap check of the centring
        medians = [stack_median(np.asarray(cube[band], dtype=np.float32)) for band in shown]
    frames = Table.read(products["frames"], format="ascii.ecsv")
    side = max(medians[0].shape[0], 160)
    scale = max(1, side // medians[0].shape[0])
    panels: list[tuple[str, np.ndarray]] = []
    for band, image in zip(shown, medians):
        rgb = _colour(image)
        cy, cx = conventions.star_centre(image.shape)
        y = image.shape[0] - 1 - cy  # rows are flipped: origin at the bottom
        for d in range(-5, 6):  # a cyan cross on the star centre
            if d == 0 or abs(d) > 1:
                rgb[y, cx + d] = rgb[y + d, cx] = (0, 255, 255)
        wave = header.get(f"HIERARCH HCDC WAVE{band + 1}")
        label = f"band {band + 1}" if n_bands <= 3 else f"channel {band + 1}"
        panels.append(
            (
                f"{label}" + (f", {wave:.3f} um" if wave else "") + "\nmedian centred frame",
                np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8)) if scale > 1 else rgb,
            )
        )
    if "psf" in products:
        psf = fits.getdata(products["psf"])[0]
        zoom = max(1, side // psf.shape[0])
        panels.append(
            ("off-axis PSF\n(band 1, normalised)", np.kron(_colour(psf), np.ones((zoom, zoom, 1), dtype=np.uint8)))
        )
    else:
        panels.append(("no PSF\n(no FLUX frames)", np.full((side, side, 3), 255, dtype=np.uint8)))
    ok = np.asarray(frames["accepted"], dtype=bool)
    panels.append(
        (f"{ok.sum()} frames kept, {(~ok).sum()} rejected\nderotation angles", _angles_panel(frames, max(side, 240)))
    )

    title_h, gap = 36, 12
    height = title_h + max(p.shape[0] for _t, p in panels)
    width = sum(p.shape[1] for _t, p in panels) + gap * (len(panels) + 1)
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(12)
    x = gap
    for title, pixels in panels:
        canvas.paste(Image.fromarray(pixels), (x, title_h))
        draw.multiline_text((x, 3), title, fill="black", font=font, spacing=2)
        x += pixels.shape[1] + gap
    buffer = io.BytesIO()
    canvas.save(buffer, format="png", compress_level=1)
    return buffer.getvalue()


def postprocess_figure(products: dict[str, str]):
    """Residuals, S/N map and contrast curve of every band."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    bands = sorted(k[len("residuals") :] for k in products if k.startswith("residuals"))
    fig, axes = plt.subplots(len(bands), 3, figsize=(11, 3.4 * len(bands)), squeeze=False, dpi=DPI)
    for row, suffix in enumerate(bands):
        residuals = fits.getdata(products[f"residuals{suffix}"])
        snr = fits.getdata(products[f"snrmap{suffix}"])
        detections = Table.read(products[f"detections{suffix}"], format="ascii.ecsv")
        curve = Table.read(products[f"contrast_curve{suffix}"], format="ascii.ecsv")
        axes[row, 0].imshow(
            residuals,
            origin="lower",
            cmap="RdBu_r",
            interpolation="nearest",
            vmin=-np.nanpercentile(np.abs(residuals), 99.5),
            vmax=np.nanpercentile(np.abs(residuals), 99.5),
        )
        axes[row, 0].set_title(f"residuals {suffix.strip('_') or ''}")
        image = axes[row, 1].imshow(snr, origin="lower", cmap="viridis", vmin=-3, vmax=8, interpolation="nearest")
        for candidate in detections:
            axes[row, 1].add_patch(plt.Circle((candidate["x"], candidate["y"]), 4, fill=False, color="r"))
            axes[row, 1].annotate(
                f"S/N {candidate['snr']:.1f}", (candidate["x"] + 5, candidate["y"] + 5), color="w", fontsize=8
            )
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


def spectral_figure(products: dict[str, str]):
    """Collapsed residual, S/N map with the candidates, their spectra and the limits (a spectral cube)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    residuals = fits.getdata(products["residuals"])
    snr = fits.getdata(products["snrmap"])
    detections = Table.read(products["detections"], format="ascii.ecsv")
    spectra = Table.read(products["spectra"], format="ascii.ecsv")
    curve = Table.read(products["contrast_curve"], format="ascii.ecsv")
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), dpi=DPI)
    scale = np.nanpercentile(np.abs(residuals), 99.5)
    axes[0].imshow(residuals, origin="lower", cmap="RdBu_r", interpolation="nearest", vmin=-scale, vmax=scale)
    axes[0].set_title("ASDI residuals, collapsed")
    image = axes[1].imshow(snr, origin="lower", cmap="viridis", vmin=-3, vmax=8, interpolation="nearest")
    for candidate in detections:
        colour = "r" if candidate["status"] == "candidate" else "orange"
        axes[1].add_patch(plt.Circle((candidate["x"], candidate["y"]), 4, fill=False, color=colour))
        axes[1].annotate(f"{candidate['id']}", (candidate["x"] + 5, candidate["y"] + 5), color="w", fontsize=8)
    fig.colorbar(image, ax=axes[1], label="S/N")
    axes[1].set_title(f"S/N map, {len(detections)} candidate(s)")
    for candidate in detections:
        rows = spectra[spectra["id"] == candidate["id"]]
        axes[2].errorbar(
            rows["wavelength_um"],
            rows["contrast"],
            yerr=rows["contrast_err"],
            fmt="o-",
            ms=3,
            capsize=2,
            label=f'{candidate["id"]}: {candidate["sep_arcsec"]:.3f}", {candidate["status"]}',
        )
    axes[2].set_xlabel("wavelength (µm)")
    axes[2].set_ylabel("contrast")
    axes[2].set_title("spectra")
    if len(detections):
        axes[2].legend(fontsize=7)
    collapsed = curve[curve["channel"] == 0]
    channels = sorted(set(int(c) for c in curve["channel"]) - {0})
    for channel in channels[:: max(1, len(channels) // 4)]:
        rows = curve[curve["channel"] == channel]
        axes[3].semilogy(
            rows["sep_arcsec"], rows["contrast_5sigma"], lw=0.8, label=f"{rows['wavelength_um'][0]:.2f} µm"
        )
    axes[3].semilogy(collapsed["sep_arcsec"], collapsed["contrast_5sigma"], "k", lw=2, label="collapsed")
    axes[3].set_xlabel("separation (arcsec)")
    axes[3].set_ylabel("5-sigma contrast")
    axes[3].grid(True, which="both", alpha=0.3)
    axes[3].legend(fontsize=7)
    axes[3].set_title("detection limits")
    fig.tight_layout()
    return fig


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=80)
    return path
