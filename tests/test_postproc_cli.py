"""``hcdc postprocess`` end to end on the NACO β Pic cube, and its errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from click.testing import CliRunner

from hcdc.postprocess_cmd import postprocess

from .test_postproc_data import B_FLUX, PIXEL_SCALE, STARPHOT, require_naco


def naco_args(folder, out, *extra):
    return [
        str(folder / "naco_betapic_cube.fits"),
        "--angles",
        str(folder / "naco_betapic_pa.fits"),
        "--psf",
        str(folder / "naco_betapic_psf.fits"),
        "--pixel-scale",
        str(PIXEL_SCALE),
        "--out",
        str(out),
        *extra,
    ]


@pytest.mark.slow
def test_postprocess_naco(tmp_path):
    folder = require_naco()
    out = tmp_path / "out"
    result = CliRunner().invoke(
        postprocess,
        naco_args(
            folder,
            out,
            "--recenter",
            "--star-flux",
            str(STARPHOT),
            "--ncomp",
            "20",
            "--n-injections",
            "3",
            "--max-characterised",
            "1",
            "--instrument",
            "NACO",
        ),
    )
    assert result.exit_code == 0, result.output
    for name in ("detections.ecsv", "contrast_curve.ecsv", "residuals.fits", "snrmap.fits"):
        assert (out / name).is_file()
    det = Table.read(out / "detections.ecsv", format="ascii.ecsv")
    for column in (
        "x",
        "y",
        "sep_arcsec",
        "pa_deg",
        "snr",
        "fpf",
        "flux",
        "contrast",
        "x_err",
        "y_err",
        "sep_arcsec_err",
        "pa_deg_err",
        "flux_err",
        "contrast_err",
    ):
        assert column in det.colnames
    b = det[0]
    assert b["characterised"]
    assert b["sep_arcsec"] == pytest.approx(16.6 * PIXEL_SCALE, abs=0.3 * PIXEL_SCALE)
    assert abs(b["x"] - 62) < 1 and abs(b["y"] - 62) < 1
    assert b["snr"] >= 5 and b["fpf"] < 1e-6
    # flux = scale factor of the given PSF; the tutorial's 700 is in 1xFWHM-normalised units
    psf_flux = det.meta["psf_scale"]
    assert b["flux"] * psf_flux == pytest.approx(B_FLUX, rel=0.1)
    assert b["contrast"] == pytest.approx(b["flux_fwhm_aperture"] / STARPHOT)
    assert np.isfinite(b["sep_arcsec_err"]) and b["sep_arcsec_err"] > 0 and b["flux_err"] > 0
    assert det.meta["provenance"]["step"] == "postprocess"
    # the error budget: NACO's published north (Chauvin et al. 2012) in the calibration term, the re-centring's
    # measured scatter in the centre term, and the totals: the larger of fit and speckle, the rest in quadrature
    from reduction.instruments import Naco

    assert b["pa_deg_err_calibration"] == pytest.approx(Naco.north_uncertainty_deg())
    assert b["centre_status"] == "fitted" and 0 < b["sep_arcsec_err_centre"] < 0.5 * PIXEL_SCALE
    terms = [max(b["sep_arcsec_err_fit"], b["sep_arcsec_err_speckle"])]
    terms += [b[f"sep_arcsec_err_{k}"] for k in ("centre", "calibration")]
    assert b["sep_arcsec_err"] == pytest.approx(np.sqrt(np.sum(np.square(terms))))
    assert "Chauvin" in det.meta["systematics"]["sources"]["north"]
    assert len(det.meta["provenance"]["inputs"]["cube"]["sha256"]) == 64
    cc = Table.read(out / "contrast_curve.ecsv", format="ascii.ecsv")
    for column in ("sep_arcsec", "contrast_5sigma", "throughput"):
        assert column in cc.colnames
    beyond = cc["sep_px"] >= 2 * det.meta["fwhm_px"]
    assert np.all(cc["contrast_5sigma"][beyond] < 1e-2)
    with fits.open(out / "residuals.fits") as hdul:
        assert hdul[0].data.shape == (101, 101)
        header = hdul[0].header
        assert header["ALGO"] == "pca" and header["NCOMP"] == 20 and header["STARX"] == 51
        # --ncomp sets the subtraction's and the NEGFC model's (the generated options, hcdc.cli_parameters)
        assert header["HIERARCH HCDC PARAM SUBTRACTION.NCOMP"] == 20
        assert header["HIERARCH HCDC PARAM CHARACTERISATION.NCOMP"] == 20
        assert header["HIERARCH HCDC PARAM MAX_CHARACTERISED"] == 1
        provenance = json.loads("".join(str(card) for card in header["HISTORY"]))
        assert provenance["parameters"]["recenter"] is True
    with fits.open(out / "snrmap.fits") as hdul:
        assert np.nanmax(hdul[0].data) > 10


def test_postprocess_errors(tmp_path):
    rng = np.random.default_rng(0)
    cube = tmp_path / "cube.fits"
    fits.writeto(cube, rng.normal(size=(10, 31, 31)))
    angles = tmp_path / "angles.fits"
    fits.writeto(angles, np.linspace(0, 40, 9))
    yy, xx = np.mgrid[:9, :9]
    psf = tmp_path / "psf.fits"
    fits.writeto(psf, np.exp(-((xx - 4) ** 2 + (yy - 4) ** 2) / 5.0))
    runner = CliRunner()
    args = [
        str(cube),
        "--angles",
        str(angles),
        "--psf",
        str(psf),
        "--pixel-scale",
        "0.01",
        "--out",
        str(tmp_path / "out"),
    ]
    result = runner.invoke(postprocess, args)
    assert result.exit_code != 0
    assert "9 values but the cube has 10 frames" in result.output
    big = tmp_path / "big.fits"
    fits.writeto(big, np.ones((41, 41)))
    fits.writeto(angles, np.linspace(0, 40, 10), overwrite=True)
    args[4] = str(big)
    result = runner.invoke(postprocess, args)
    assert result.exit_code != 0 and "larger than the frames" in result.output
    result = runner.invoke(
        postprocess,
        [str(psf), "--angles", str(angles), "--psf", str(psf), "--pixel-scale", "0.01", "--out", str(tmp_path / "o")],
    )
    assert result.exit_code != 0 and "3-D (t, y, x)" in result.output
    assert not (tmp_path / "out").exists()


def test_postprocess_synthetic_no_companion(tmp_path):
    """A cube without companion: runs through, writes an empty detections table and a contrast curve."""
    rng = np.random.default_rng(1)
    cube = tmp_path / "cube.fits"
    fits.writeto(cube, rng.normal(size=(16, 41, 41)))
    angles = tmp_path / "angles.fits"
    fits.writeto(angles, np.linspace(-30, 60, 16))
    yy, xx = np.mgrid[:11, :11]
    psf = tmp_path / "psf.fits"
    fits.writeto(psf, 50 * np.exp(-((xx - 5) ** 2 + (yy - 5) ** 2) / (2 * 1.7**2)))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        postprocess,
        [
            str(cube),
            "--angles",
            str(angles),
            "--psf",
            str(psf),
            "--pixel-scale",
            "0.0125",
            "--ncomp",
            "3",
            "--algorithm",
            "cadi",
            "--threshold",
            "5",
            "--threshold-on",
            "significance",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    det = Table.read(out / "detections.ecsv", format="ascii.ecsv")
    assert len(det) == 0
    cc = Table.read(out / "contrast_curve.ecsv", format="ascii.ecsv")
    assert len(cc) > 5 and np.all(np.isnan(cc["contrast_5sigma"]))  # no --star-flux
    assert np.all(cc["flux_5sigma"][np.isfinite(cc["flux_5sigma"])] > 0)
