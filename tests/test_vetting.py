"""Multi-band vetting of candidates (``hcdc.postprocessing._vet_across_bands``): point source or speckle."""

from __future__ import annotations

import math

import pytest

from hcdc.catalog.models import Detection
from hcdc.postprocessing import _vet_across_bands

SCALE = 0.01225  # arcsec per IRDIS pixel
K1, K2 = 2.110, 2.251


def _detection(wavelength, sep_px, pa, sep_err_px=None, pa_err=None) -> Detection:
    return Detection(
        wavelength_um=wavelength,
        sep_arcsec=sep_px * SCALE,
        pa_deg=pa,
        sep_err_arcsec=None if sep_err_px is None else sep_err_px * SCALE,
        pa_err_deg=pa_err,
        snr=10.0,
        status="candidate",
        x_px=0.0,
        y_px=0.0,
    )


def test_same_place_in_both_bands_is_confirmed_and_a_speckle_is_not():
    a, b = _detection(K1, 48.0, 52.0), _detection(K2, 48.3, 52.2)
    _vet_across_bands([a, b], SCALE)
    assert a.status == b.status == "candidate"
    # a speckle at 48 px in K1 is at 48 x K2/K1 = 51.2 px in K2: 3.2 px out, beyond half of that
    a, b = _detection(K1, 48.0, 52.0), _detection(K2, 48.0 * K2 / K1, 52.0)
    _vet_across_bands([a, b], SCALE)
    assert a.status == b.status == "single-band"


def test_two_uncertain_fits_of_one_source_are_not_called_a_speckle():
    """A bright source fitted 2.1 px apart in K1 and K2 with ~1 px errors (the simulated HIP 65426 cc1 of 2016):
    1.4 sigma apart, and inwards, where no speckle goes."""
    a = _detection(K1, 47.8, 51.7, sep_err_px=1.02, pa_err=1.28)
    b = _detection(K2, 45.6, 53.1, sep_err_px=1.17, pa_err=1.01)
    _vet_across_bands([a, b], SCALE)
    assert a.status == b.status == "candidate"
    # the same errors do not save a pair that sits where the speckle hypothesis puts it
    a = _detection(K1, 47.8, 51.7, sep_err_px=1.02, pa_err=1.28)
    b = _detection(K2, 47.8 * K2 / K1, 51.7, sep_err_px=1.17, pa_err=1.01)
    _vet_across_bands([a, b], SCALE)
    assert a.status == "single-band"


@pytest.mark.parametrize("sigma_px", [0.3, 0.5])
def test_a_point_source_measured_with_its_errors_is_confirmed(sigma_px):
    """Monte Carlo: two measurements of one source, 60 px out (a speckle would move 4 px between K1 and K2, at
    least 5.6 sigma of the difference), are confirmed at least 99 % of the time. Where the errors are as large as
    the chromatic shift, the bands cannot tell a source from a speckle and the rule confirms less: by design."""
    import numpy as np

    rng = np.random.default_rng(2)
    confirmed = 0
    trials = 4000
    for _ in range(trials):
        r, pa = 60.0, 100.0
        positions = []
        for wl in (K1, K2):
            x = r * math.sin(math.radians(pa)) + rng.normal(0, sigma_px)
            y = r * math.cos(math.radians(pa)) + rng.normal(0, sigma_px)
            sep = math.hypot(x, y)
            positions.append(
                _detection(
                    wl,
                    sep,
                    math.degrees(math.atan2(x, y)) % 360,
                    sep_err_px=sigma_px,
                    pa_err=math.degrees(sigma_px / sep),
                )
            )
        _vet_across_bands(positions, SCALE)
        confirmed += positions[0].status == "candidate"
    assert confirmed / trials >= 0.99


def test_multi_algorithm_vetting():
    """With a second algorithm, what the main one misses is flagged; with agreement required, single finds too."""
    from hcdc.postprocessing import agreed
    from reduction.postproc.pipeline import PostprocessParameters

    alone = PostprocessParameters()
    assert agreed("", alone) and agreed("pca", alone)  # nothing compared: nothing flagged
    both = PostprocessParameters(confirm_with="andromeda")
    assert agreed("pca+andromeda", both) and agreed("pca", both)
    assert not agreed("andromeda", both)
    strict = PostprocessParameters(confirm_with="andromeda", require_agreement=True)
    assert agreed("pca+andromeda", strict) and not agreed("pca", strict) and not agreed("andromeda", strict)
