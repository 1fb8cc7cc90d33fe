"""The conventions of reduction.conventions, asserted against vip-hci and astropy."""

from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time

from reduction import conventions as conv


@pytest.mark.parametrize("shape", [(100, 100), (101, 101), (3, 64, 64), (2, 3, 33, 33)])
def test_star_centre_is_vip_frame_center(shape):
    from vip_hci.var import frame_center

    assert conv.star_centre(shape) == tuple(int(v) for v in frame_center(np.zeros(shape[-2:])))


def test_axis_order_and_origin():
    assert conv.AXIS_ORDER == ("wavelength", "time", "y", "x")
    assert conv.PIXEL_ORIGIN == 0
    assert conv.fits_to_pixel(1.0, 1.0) == (0.0, 0.0)
    assert conv.pixel_to_fits(*conv.fits_to_pixel(12.5, 7.0)) == (12.5, 7.0)


def _peak_xy(image):
    y, x = np.unravel_index(np.argmax(image), image.shape)
    return x, y


@pytest.mark.parametrize("pa, derot", [(0.0, 0.0), (90.0, 0.0), (212.0, 35.0), (300.0, -70.0)])
def test_frame_position_matches_vip_injection(pa, derot):
    """Where we say a source lands in a raw frame is where vip-hci injects it."""
    from vip_hci.fm import cube_inject_companions

    size, sep = 65, 20.0
    psf = np.zeros((9, 9))
    psf[4, 4] = 1.0
    cube = np.zeros((1, size, size))
    # vip's theta is counter-clockwise from +x in the derotated image: PA + 90
    injected = cube_inject_companions(
        cube, psf, np.array([derot]), flevel=1.0, rad_dists=[sep], theta=pa + 90.0, imlib="vip-fft"
    )
    x, y = conv.sky_to_frame_xy(sep, pa, derot, conv.star_centre(cube.shape))
    px, py = _peak_xy(injected[0])
    assert abs(px - float(x)) <= 1.0 and abs(py - float(y)) <= 1.0


@pytest.mark.parametrize("pa", [30.0, 212.0])
def test_derotation_puts_source_at_its_sky_pa(pa):
    """Sources placed with sky_to_frame_xy, derotated with vip, end at PA east of north."""
    from vip_hci.preproc import cube_derotate

    size, sep = 81, 25.0
    angles = np.array([-40.0, -10.0, 15.0, 50.0])
    centre = conv.star_centre((size, size))
    yy, xx = np.mgrid[:size, :size]
    cube = np.zeros((len(angles), size, size))
    for i, alpha in enumerate(angles):
        x, y = conv.sky_to_frame_xy(sep, pa, alpha, centre)
        cube[i] = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    derotated = cube_derotate(cube, angles, imlib="vip-fft").mean(axis=0)
    px, py = _peak_xy(derotated)
    found = conv.derotated_xy_to_sky(px, py, centre)
    assert found.separation_px == pytest.approx(sep, abs=1.0)
    assert (found.pa_deg - pa + 180) % 360 - 180 == pytest.approx(0.0, abs=2.5)
    # north up, east left: PA 90 is -x
    x_east, _ = conv.sky_to_derotated_xy(10.0, 90.0, centre)
    assert x_east < centre[1]


def test_parallactic_angle_matches_astropy_altaz():
    """Our computation agrees with the direction of the zenith seen from the star, from astropy AltAz."""
    from astropy.coordinates import TETE

    site = EarthLocation(
        lat=conv.PARANAL_LATITUDE_DEG * u.deg,
        lon=conv.PARANAL_LONGITUDE_DEG * u.deg,
        height=conv.PARANAL_ELEVATION_M * u.m,
    )
    star = SkyCoord(ra=86.82 * u.deg, dec=-51.07 * u.deg)  # beta Pic
    times = Time("2026-01-10T00:00:00") + np.linspace(0, 8, 17) * u.hour
    ours = conv.parallactic_angle_at(
        times,
        star.ra.deg,
        star.dec.deg,
        conv.PARANAL_LATITUDE_DEG,
        conv.PARANAL_LONGITUDE_DEG,
        conv.PARANAL_ELEVATION_M,
    )
    # independent: position angle (in the frame of date) of a point 1" towards the zenith
    altaz = star.transform_to(AltAz(obstime=times, location=site))
    towards_zenith = altaz.directional_offset_by(0 * u.deg, 1 * u.arcsec)
    of_date = TETE(obstime=times, location=site)
    reference = star.transform_to(of_date).position_angle(towards_zenith.transform_to(of_date))
    reference = reference.wrap_at(180 * u.deg).deg
    up = altaz.alt.deg > 30
    assert up.sum() > 5
    assert np.max(np.abs(ours[up] - reference[up])) < 0.01
    # the sign convention: negative before transit (east), positive after
    hour_angle = (times.sidereal_time("apparent", longitude=site.lon) - star.ra).wrap_at(180 * u.deg).deg
    assert np.all(
        np.sign(ours[up & (np.abs(hour_angle) > 0.5)]) == np.sign(hour_angle[up & (np.abs(hour_angle) > 0.5)])
    )


def test_derotation_angles_add_offsets():
    from reduction.instruments import SphereIrdis

    parang = np.array([-10.0, 0.0, 10.0])
    alpha = conv.derotation_angles(parang, SphereIrdis.pupil_offset_deg.value, SphereIrdis.true_north_deg.value)
    assert np.allclose(alpha - parang, 135.99 - 1.75)
    assert SphereIrdis.derotation_offset_deg() == pytest.approx(134.24)
