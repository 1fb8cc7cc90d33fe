"""The pre-processing's FITS products: cube, angles, PSF and the frame table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from astropy.io import fits

from .model import CalibratedObservation


def provenance_cards(header: fits.Header, provenance: Mapping[str, Any]) -> None:
    """Mirror the provenance compactly in a FITS header (HIERARCH HCDC ...)."""
    for key, value in provenance.items():
        if value is None:
            continue
        card = f"HIERARCH HCDC {key.upper()}"
        text = value if isinstance(value, (int, float, bool)) else str(value)
        if isinstance(text, str) and len(text) > 40:
            text = text[:40]  # hashes: a 40-hex prefix; the full values are in the catalog
        header[card] = text


def write_products(
    result: CalibratedObservation, out_dir: Path, provenance: Mapping[str, Any] | None = None
) -> dict[str, Path]:
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
    provenance_cards(header, provenance)
    paths["cube"] = out_dir / "cube.fits"
    fits.PrimaryHDU(result.cube.astype(np.float32), header=header).writeto(paths["cube"], overwrite=True)
    angles_header = fits.Header()
    angles_header["BUNIT"] = ("deg", "derotation angles, vip-hci convention")
    provenance_cards(angles_header, provenance)
    paths["angles"] = out_dir / "angles.fits"
    fits.PrimaryHDU(result.derotation_deg.astype(np.float64), header=angles_header).writeto(
        paths["angles"], overwrite=True
    )
    if result.psf is not None:
        psf_header = header.copy()
        psf_header["BUNIT"] = ("", "flux in 1-FWHM-diameter aperture = 1")
        paths["psf"] = out_dir / "psf.fits"
        fits.PrimaryHDU(result.psf, header=psf_header).writeto(paths["psf"], overwrite=True)
    table = Table(
        rows=[
            (f.file, f.index, f.time_utc, f.parang_deg, f.derotation_deg, f.halo_flux, f.accepted, f.reason or "")
            for f in result.frames
        ],
        names=("file", "index", "time_utc", "parang_deg", "derotation_deg", "halo_flux", "accepted", "reason"),
    )
    table.meta["problems"] = list(result.problems)
    paths["frames"] = out_dir / "frames.ecsv"
    table.write(paths["frames"], format="ascii.ecsv", overwrite=True)
    return paths
