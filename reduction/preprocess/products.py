"""The pre-processing's FITS products: cube, angles, PSF and the frame table."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..fitsio_products import write_image
from .model import CalibratedObservation


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
    cards: dict[str, tuple[Any, str]] = {
        "BUNIT": ("ADU", "calibrated counts per DIT"),
        "HIERARCH HCDC AXES": ("(lambda, t, y, x)", ""),
        "HIERARCH HCDC PIXSCALE": (result.pixel_scale_arcsec, "[arcsec/px]"),
    }
    for k, wl in enumerate(result.wavelengths_um):
        cards[f"HIERARCH HCDC WAVE{k + 1}"] = (wl, "[um]")
        if result.star_flux is not None:
            cards[f"HIERARCH HCDC STARFLUX{k + 1}"] = (result.star_flux[k], "[ADU/frame] 1-FWHM ap.")
        if result.fwhm_px is not None:
            cards[f"HIERARCH HCDC FWHM{k + 1}"] = (result.fwhm_px[k], "[px]")
        if result.centre_uncertainty_px is not None and np.isfinite(result.centre_uncertainty_px[k]):
            cards[f"HIERARCH HCDC CENERR{k + 1}"] = (float(result.centre_uncertainty_px[k]), "[px] centre 1-sigma/axis")
        if result.star_flux_rel_err is not None and np.isfinite(result.star_flux_rel_err[k]):
            cards[f"HIERARCH HCDC STARFLUXERR{k + 1}"] = (float(result.star_flux_rel_err[k]), "relative 1-sigma")
        if result.centres_detector_xy is not None:
            cards[f"HIERARCH HCDC CENX{k + 1}"] = (result.centres_detector_xy[k][0], "det. x 0-based")
            cards[f"HIERARCH HCDC CENY{k + 1}"] = (result.centres_detector_xy[k][1], "det. y 0-based")
    cards["HIERARCH HCDC NREJECT"] = (result.n_rejected, "frames rejected")
    cards["HIERARCH HCDC CENSTAT"] = (result.centre_status, "how the star centre was found")
    paths["cube"] = write_image(out_dir / "cube.fits", result.cube, provenance, cards, dtype=np.float32)
    paths["angles"] = write_image(
        out_dir / "angles.fits",
        result.derotation_deg,
        provenance,
        {"BUNIT": ("deg", "derotation angles, vip-hci convention")},
    )
    if result.psf is not None:
        cards["BUNIT"] = ("", "flux in 1-FWHM-diameter aperture = 1")
        paths["psf"] = write_image(out_dir / "psf.fits", result.psf, provenance, cards, dtype=result.psf.dtype)
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
