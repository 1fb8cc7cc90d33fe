"""Every candidate characterised, with every term of its error budget (issue 18)."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest

from reduction.instruments import Gpi, Naco, SphereIfs, SphereIrdis
from reduction.postproc.budget import Systematics, detection_budget, instrument_systematics
from reduction.postproc.pipeline import (
    CharacterisationParameters,
    DetectionParameters,
    PostprocessParameters,
    PostprocessStep,
    PsfSubtractionParameters,
)

from .test_postproc_data import PIXEL_SCALE, STARPHOT, naco_planet_free, naco_prepared, naco_raw, require_naco


def test_budget_terms_follow_their_geometry():
    """Each term computed by hand from its definition; totals: the larger of fit and speckle, the rest in quadrature."""
    systematics = Systematics(
        pixel_scale_rel=0.001,
        north_deg=0.1,
        distortion_rel=0.006,
        distortion_px=0.2,
        centre_px=0.5,
        centre_status="waffle",
        star_flux_rel=0.05,
    )
    r, scale = 40.0, 0.01225
    budget = detection_budget(r, scale, (0.1, 0.2, 3.0), (0.3, 0.4, 4.0), 1e-4, 1e-6, systematics)
    sep = budget.separation_arcsec
    assert sep["fit"] == pytest.approx(0.1 * scale) and sep["speckle"] == pytest.approx(0.3 * scale)
    assert sep["centre"] == pytest.approx(0.5 * scale)  # a centre error moves the companion by as much
    assert sep["calibration"] == pytest.approx(
        math.sqrt((r * scale * 0.001) ** 2 + (r * scale * 0.006) ** 2 + (0.2 * scale) ** 2)
    )
    pa = budget.pa_deg
    assert pa["centre"] == pytest.approx(math.degrees(0.5 / r))
    assert pa["calibration"] == pytest.approx(math.sqrt(0.1**2 + math.degrees(0.006) ** 2 + math.degrees(0.2 / r) ** 2))
    contrast = budget.contrast
    assert contrast["fit"] == pytest.approx(3e-6) and contrast["speckle"] == pytest.approx(4e-6)
    assert contrast["photometry"] == pytest.approx(5e-6)
    # fit and speckle measure the same noise: the larger counts, once (pulls of injected fakes, issue 18)
    assert budget.separation_total == pytest.approx(
        math.sqrt(sep["speckle"] ** 2 + sep["centre"] ** 2 + sep["calibration"] ** 2)
    )
    assert budget.contrast_total == pytest.approx(math.sqrt(16 + 25) * 1e-6)
    swapped = detection_budget(r, scale, (0.3, 0.4, 4.0), (0.1, 0.2, 3.0), 1e-4, 1e-6, systematics)
    assert swapped.separation_total == pytest.approx(budget.separation_total)
    assert swapped.pa_total == pytest.approx(budget.pa_total)
    # an unmeasured term (NaN) is left out of the sum, never counted as zero silently: it stays NaN in its column
    unknown = detection_budget(r, scale, (0.1, 0.2, 3.0), (np.nan,) * 3, 1e-4, 1e-6, Systematics())
    assert np.isnan(unknown.separation_arcsec["speckle"])
    assert unknown.separation_total == pytest.approx(0.1 * scale)


def test_speckle_term_is_the_error_to_expect_from_n_injections():
    """The sample standard deviation of n draws, times the factor, predicts the next draw's error.

    Monte Carlo on Gaussian draws: the pull of a new draw (minus the sample mean, which the bias
    correction subtracts) over ``s sqrt(1 + 1/n) x factor`` has a standard deviation of 1; without the
    factor it is t-distributed and wider.
    """
    from reduction.postproc.negfc import predictive_factor

    rng = np.random.default_rng(3)
    for n in (6, 12):
        draws = rng.normal(size=(200_000, n + 1))
        sample, new = draws[:, :n], draws[:, n]
        s = sample.std(axis=1, ddof=1) * np.sqrt(1 + 1 / n)
        pulls = (new - sample.mean(axis=1)) / s
        assert pulls.std() > 1.05  # without the factor: too narrow an error
        assert (pulls / predictive_factor(n)).std() == pytest.approx(1.0, abs=0.02)
    # below four injections t has no variance: the factor keeps 68.3 % inside ±σ
    draws = rng.normal(size=(200_000, 4))
    s = draws[:, :3].std(axis=1, ddof=1) * np.sqrt(1 + 1 / 3)
    inside = np.abs((draws[:, 3] - draws[:, :3].mean(axis=1)) / (s * predictive_factor(3))) < 1
    assert inside.mean() == pytest.approx(0.6827, abs=0.01)


@pytest.mark.parametrize("instrument", [SphereIrdis, SphereIfs, Naco, Gpi], ids=lambda i: i.name)
def test_published_calibration_terms_carry_their_citation(instrument):
    filter_name = next(iter(instrument.filters))
    systematics = instrument_systematics(
        instrument, filter_name, centre_px=0.1, centre_status="waffle", centre_source="measured"
    )
    scale = instrument.pixel_scale_constant(filter_name)
    assert systematics.pixel_scale_rel == pytest.approx(scale.uncertainty / scale.value)
    assert systematics.north_deg == pytest.approx(instrument.north_uncertainty_deg()) and systematics.north_deg > 0
    sources = dict(systematics.sources)
    assert scale.source in sources["pixel_scale"] and instrument.true_north_deg.source in sources["north"]
    assert instrument.distortion.source in sources["distortion"]
    if instrument in (SphereIrdis, SphereIfs):  # Maire et al. 2016: 0.60 +- 0.02 % anamorphism, 0.08 deg north
        assert "Maire et al. 2016" in sources["north"] and systematics.distortion_rel == pytest.approx(0.006)
    if instrument is SphereIfs:  # the IFS field's own offset adds its 0.10 deg
        assert systematics.north_deg == pytest.approx(math.sqrt(0.08**2 + 0.11**2 + 0.10**2))


def _four_sources():
    """The NACO planet-free cube with four fakes; the brightest sits closest to the star, in the speckles."""
    from reduction.postproc import inject_companions

    cube, angles, npsf = naco_prepared()
    free = naco_planet_free()
    fakes = [  # (separation px, theta deg, flux in 1xFWHM-aperture units)
        (9.5, 120.0, 2500.0),  # brightest, but where the speckles are: the lowest S/N
        (20.0, 200.0, 500.0),
        (28.0, 300.0, 350.0),
        (36.0, 30.0, 300.0),
    ]
    for r, theta, flux in fakes:
        free = inject_companions(free, npsf.psf, angles, flux, r, theta)
    return free, angles, npsf, fakes


@pytest.mark.slow
def test_every_candidate_is_characterised_even_the_brightest_with_the_lowest_snr():
    require_naco()
    cube, angles, npsf, fakes = _four_sources()
    params = PostprocessParameters(
        subtraction=PsfSubtractionParameters(ncomp=10),
        characterisation=CharacterisationParameters(ncomp=10, n_injections=3),
    )
    assert params.max_characterised is None  # no cap by default
    result = PostprocessStep()(
        params, cube=cube, angles=angles, psf=npsf.psf, pixel_scale=PIXEL_SCALE, star_flux=STARPHOT
    )
    found = []
    for r, theta, flux in fakes:
        x = 50 + r * math.cos(math.radians(theta))
        y = 50 + r * math.sin(math.radians(theta))
        near = [c for c in result.characterised if math.hypot(c.candidate.x - x, c.candidate.y - y) < 2]
        assert near, f"the fake at r={r} px was not detected"
        found.append((near[0], flux))
    snrs = [item.candidate.snr for item, _ in found]
    assert snrs[0] == min(snrs), f"the brightest fake is not the lowest S/N one: {snrs}"
    for item, flux in found:
        assert item.negfc is not None, item.note
        assert item.budget is not None and np.isfinite(item.budget.separation_total)
        assert item.negfc.flux == pytest.approx(flux, rel=0.3)


@pytest.mark.slow
def test_naco_beta_pic_b_on_the_sky_with_its_budget(tmp_path):
    """Registered with its angle offset, b lands on the published astrometry within the two errors."""
    from astropy.io import fits

    from hcdc.catalog.db import Catalog
    from hcdc.catalog.models import Detection
    from hcdc.demo import naco_betapic_cube
    from hcdc.external import register_external
    from hcdc.postprocessing import postprocess_catalog_observation

    folder = require_naco()
    published = _published_beta_pic_b()
    catalog = Catalog(f"sqlite:///{tmp_path / 'catalog.db'}")
    registered = register_external(
        catalog,
        naco_betapic_cube(folder, night=date(2012, 12, 2)),  # the published epoch nearest to the cube's
        tmp_path / "data",
    )
    params = PostprocessParameters(characterisation=CharacterisationParameters(n_injections=6))
    outcome = postprocess_catalog_observation(catalog, registered.observation_id, tmp_path / "data", params)
    assert outcome.status == "done", outcome.error
    with catalog.session() as session:
        rows = session.query(Detection).filter(Detection.reduction_id == outcome.reduction_id).all()
        b = max(rows, key=lambda d: d.snr)
        assert b.snr >= 10.6  # the published full-frame PCA-20 S/N is 11.06
        assert b.centre_status == "fitted" and b.sep_err_centre_arcsec > 0
        assert b.pa_err_calibration_deg == pytest.approx(Naco.north_uncertainty_deg())
        dpa = (b.pa_deg - published["pa"] + 180) % 360 - 180
        assert abs(dpa) <= 2 * math.hypot(published["pa_err"], b.pa_err_deg), (b.pa_deg, b.pa_err_deg)
        dsep = b.sep_arcsec - published["sep"]
        assert abs(dsep) <= 2 * math.hypot(published["sep_err"], b.sep_err_arcsec), (b.sep_arcsec, b.sep_err_arcsec)
    with fits.open(outcome.products["residuals"]) as hdul:  # the budget's inputs travel with the products
        assert "fitted" in "".join(str(card) for card in hdul[0].header["HISTORY"])


def _published_beta_pic_b() -> dict:
    """Nielsen et al. 2020 (orbitize! table) nearest to the cube's epoch, MJD 56263."""
    import csv

    folder = require_naco().parent / "published_companions"
    path = folder / "orbitize_3.4.0_betaPic_Nielsen2020_tab1.csv"
    if not path.is_file():
        pytest.skip(f"published astrometry not found: {path}")
    with path.open() as handle:
        rows = list(csv.DictReader(row for row in handle if not row.startswith("#")))
    row = min(rows, key=lambda r: abs(float(r["epoch"]) - 56263))
    assert abs(float(row["epoch"]) - 56263) < 1, row
    return {  # the table is in mas and degrees
        "sep": float(row["sep"]) / 1000,
        "sep_err": float(row["sep_err"]) / 1000,
        "pa": float(row["pa"]),
        "pa_err": float(row["pa_err"]),
    }


def test_a_failed_fit_keeps_its_row_with_the_reason():
    """A candidate NEGFC cannot fit (too close to the star here) stays, with a note and no invented errors."""
    require_naco()
    cube, angles, psf = naco_raw()
    params = PostprocessParameters(
        recenter=True,
        detection=DetectionParameters(threshold=2.0),
        characterisation=CharacterisationParameters(n_injections=0),
        max_characterised=0,
    )
    result = PostprocessStep()(params, cube=cube, angles=angles, psf=psf, pixel_scale=PIXEL_SCALE, star_flux=STARPHOT)
    from reduction.postproc.tables import catalog_detections, detections_table

    table = detections_table(result, PIXEL_SCALE, STARPHOT)
    assert len(table) == len(result.detection.candidates) > 0
    rows = catalog_detections(table, 3.8)
    assert all(row["note"] == "not characterised (max_characterised)" for row in rows)
    assert all(row["sep_err_arcsec"] is None and row["contrast"] is None for row in rows)
    assert all(row["centre_status"] == "fitted" for row in rows)


def test_a_header_centre_counts_at_least_its_setting_in_every_detection():
    """The pre-processing's fallback centre (SEQ CORO XC/YC) reaches the catalog as a >= 1 px term and a status."""
    from hcdc.postprocessing import observation_systematics

    meta = {
        "centre_status": "centre-from-header",
        "centre_uncertainty_px": [1.0, 1.0],
        "star_flux_rel_err": [0.02, 0.03],
    }
    systematics = observation_systematics(SphereIrdis, "DB_H23", meta, 1)
    assert systematics.centre_status == "centre-from-header" and systematics.centre_px == 1.0
    assert systematics.star_flux_rel == pytest.approx(0.03)
    scale = SphereIrdis.pixel_scale_arcsec("DB_H23")
    budget = detection_budget(30.0, scale, (0.05, 0.1, 1.0), (0.05, 0.1, 1.0), 1e-5, 1e-6, systematics)
    assert budget.separation_arcsec["centre"] >= 1.0 * scale
    assert budget.pa_deg["centre"] == pytest.approx(math.degrees(1.0 / 30.0))
    assert budget.separation_total >= 1.0 * scale and budget.centre_status == "centre-from-header"
    # a cube whose centring was never measured: no invented zero, an explicit unknown
    unknown = observation_systematics(SphereIrdis, "DB_H23", {}, 0)
    assert unknown.centre_status == "given" and math.isnan(unknown.centre_px)


def test_the_budget_columns_are_one_schema():
    from hcdc.catalog.models import Detection
    from hcdc.tables import DETECTION_COLUMNS, DETECTION_MEASUREMENTS
    from reduction.postproc.tables import DETECTION_FIELDS, ERROR_BUDGET_FIELDS

    names = [f.name for f in DETECTION_FIELDS]
    assert len(names) == len(set(names))
    assert set(ERROR_BUDGET_FIELDS) <= set(names) and len(ERROR_BUDGET_FIELDS) == 11
    assert len(DETECTION_MEASUREMENTS) == len(set(DETECTION_MEASUREMENTS))
    columns = [c[0] for c in DETECTION_COLUMNS]
    assert len(columns) == len(set(columns))
    for name in names:  # every field is a catalog column
        assert hasattr(Detection, name), name
