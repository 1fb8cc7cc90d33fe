"""HC-DC conventions, written once.

Every module of ``reduction`` and ``hcdc`` that touches pixel positions, angles,
cube axes or units imports them from here, and ``tests/test_conventions.py``
asserts each of them against vip-hci, so that a cube or an angle list that works
with ``vip_hci`` works unchanged with HC-DC and back.

Axis order
    Cubes are ``(λ, t, y, x)``: wavelength, time (frame), row, column. A
    single-band ADI cube is ``(t, y, x)``; it is the ``λ`` axis that is dropped,
    never ``t``. FITS files store the same order (NAXIS1 = x).

Pixel origin
    0-based, pixel *centres* at integer coordinates: pixel ``(y, x) = (0, 0)``
    covers ``[-0.5, 0.5]`` on both axes. FITS/DS9 coordinates are 1-based:
    ``x_fits = x + 1`` (:func:`fits_to_pixel`, :func:`pixel_to_fits`).

Star centre
    In a centred frame of shape ``(ny, nx)`` the star is at
    ``(ny // 2, nx // 2)``: the central pixel of an odd frame, the pixel just
    above and right of the geometric centre of an even frame. This is
    ``vip_hci.var.frame_center`` (vip-hci >= 1.0).

Angles
    * Position angles on the sky (PA) are degrees east of north, in [0, 360).
      Final images are shown north up (+y), east left (-x).
    * Derotation angles ``α`` follow vip-hci: rotating raw frame ``i``
      counter-clockwise by ``-α_i`` (``vip_hci.preproc.cube_derotate(cube, α)``)
      puts north up and east left. Equivalently a source at sky PA ``θ`` sits in
      raw frame ``i`` at polar angle ``θ + 90 - α_i`` counter-clockwise from +x
      (the formula of ``vip_hci.fm.cube_inject_companions``).
    * For ESO instruments ``α = PARANG + pupil offset + true-north correction``
      (the SPHERE Data Center convention, Maire et al. 2016, SPIE 9908); the
      constants are per instrument in :mod:`reduction.instruments`.

Units
    Contrasts are flux ratios to the star (not magnitudes). Separations are
    pixels inside ``reduction`` and arcsec in the catalog. Times are UTC.
    Wavelengths are micrometres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # astropy is imported where the times are made, not for this annotation
    from astropy.time import Time

#: Names of the axes of a full HC-DC cube, outermost first.
AXIS_ORDER: tuple[str, ...] = ("wavelength", "time", "y", "x")

#: The index of the first pixel.
PIXEL_ORIGIN: int = 0

#: Paranal (VLT UT3 for SPHERE, UT1/UT4 for NACO). ESO site coordinates, as in
#: the headers' ``TEL GEOLAT``/``TEL GEOLON``/``TEL GEOELEV``.
PARANAL_LATITUDE_DEG: float = -24.6270
PARANAL_LONGITUDE_DEG: float = -70.4040
PARANAL_ELEVATION_M: float = 2635.43

#: Gemini South (GPI), from the GPI data reduction pipeline's site constants.
CERRO_PACHON_LATITUDE_DEG: float = -30.2407
CERRO_PACHON_LONGITUDE_DEG: float = -70.7366
CERRO_PACHON_ELEVATION_M: float = 2722.0


def star_centre(shape: tuple[int, ...]) -> tuple[int, int]:
    """Return the star position ``(y, x)`` in a centred frame or cube.

    Parameters
    ----------
    shape : tuple of int
        The array shape; only the last two axes are used.

    Returns
    -------
    tuple of int
        ``(ny // 2, nx // 2)``, the same as ``vip_hci.var.frame_center``.
    """
    ny, nx = shape[-2], shape[-1]
    return ny // 2, nx // 2


def fits_to_pixel(x_fits: float, y_fits: float) -> tuple[float, float]:
    """Convert 1-based FITS (DS9) coordinates to HC-DC 0-based ``(x, y)``."""
    return x_fits - 1.0, y_fits - 1.0


def pixel_to_fits(x: float, y: float) -> tuple[float, float]:
    """Convert HC-DC 0-based ``(x, y)`` to 1-based FITS (DS9) coordinates."""
    return x + 1.0, y + 1.0


def wrap_angle(angle_deg: float | np.ndarray) -> float | np.ndarray:
    """Wrap an angle to [0, 360) degrees."""
    return np.mod(angle_deg, 360.0)


@dataclass(frozen=True)
class PolarPosition:
    """A source position relative to the star.

    Attributes
    ----------
    separation_px : float
        Distance to the star in pixels.
    pa_deg : float
        Position angle on the sky, degrees east of north.
    """

    separation_px: float
    pa_deg: float


def sky_to_frame_xy(
    separation_px: float | np.ndarray,
    pa_deg: float | np.ndarray,
    derotation_deg: float | np.ndarray,
    centre_yx: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Where a source at sky PA ``pa_deg`` lands in a raw (not derotated) frame.

    Parameters
    ----------
    separation_px : float or array
        Separation in pixels.
    pa_deg : float or array
        Position angle on the sky, degrees east of north.
    derotation_deg : float or array
        Derotation angle(s) ``α`` of the frame(s), vip-hci convention.
    centre_yx : tuple of float
        Star position ``(y, x)`` in the frame.

    Returns
    -------
    x, y : ndarray
        0-based pixel coordinates, one per derotation angle.
    """
    theta = np.deg2rad(np.asarray(pa_deg) + 90.0 - np.asarray(derotation_deg))
    x = centre_yx[1] + np.asarray(separation_px) * np.cos(theta)
    y = centre_yx[0] + np.asarray(separation_px) * np.sin(theta)
    return x, y


def derotated_xy_to_sky(x: float | np.ndarray, y: float | np.ndarray, centre_yx: tuple[float, float]) -> PolarPosition:
    """Separation and sky PA of a pixel of a derotated (north-up, east-left) image."""
    dx = np.asarray(x) - centre_yx[1]
    dy = np.asarray(y) - centre_yx[0]
    sep = np.hypot(dx, dy)
    pa = wrap_angle(np.rad2deg(np.arctan2(dy, dx)) - 90.0)
    return PolarPosition(
        separation_px=float(sep) if np.ndim(sep) == 0 else sep, pa_deg=float(pa) if np.ndim(pa) == 0 else pa
    )


def sky_to_derotated_xy(separation_px: float, pa_deg: float, centre_yx: tuple[float, float]) -> tuple[float, float]:
    """Pixel ``(x, y)`` of a source at ``(separation, PA)`` in a derotated image."""
    x, y = sky_to_frame_xy(separation_px, pa_deg, 0.0, centre_yx)
    return float(x), float(y)


def derotation_angles(parallactic_deg: np.ndarray, pupil_offset_deg: float, true_north_deg: float) -> np.ndarray:
    """Derotation angles (vip-hci convention) of a pupil-tracking sequence.

    ``α = PARANG + pupil_offset + true_north`` (SPHERE Data Center convention).
    """
    return np.asarray(parallactic_deg, dtype=float) + pupil_offset_deg + true_north_deg


def parallactic_angle(hour_angle_deg: np.ndarray | float, dec_deg: float, latitude_deg: float) -> np.ndarray:
    """Parallactic angle in degrees, the classical spherical-astronomy formula.

    ``q = atan2(sin H, tan φ cos δ - sin δ cos H)``, negative east of the
    meridian, positive west of it (Smart, *Spherical Astronomy*; the same as
    ``astroplan.Observer.parallactic_angle``).
    """
    h = np.deg2rad(np.asarray(hour_angle_deg, dtype=float))
    d = np.deg2rad(dec_deg)
    phi = np.deg2rad(latitude_deg)
    return np.rad2deg(np.arctan2(np.sin(h), np.tan(phi) * np.cos(d) - np.sin(d) * np.cos(h)))


def parallactic_angle_at(
    times_utc: "Time",
    ra_deg: float,
    dec_deg: float,
    latitude_deg: float,
    longitude_deg: float,
    elevation_m: float = 0.0,
) -> np.ndarray:
    """Parallactic angle (deg) of an ICRS target at UTC times, astropy-based.

    The target is carried to the true equator and equinox of date (precession,
    nutation, aberration: ``TETE``) and its apparent hour angle is computed
    from the apparent sidereal time, which :func:`parallactic_angle` turns
    into the angle. Refraction is neglected (its effect on the angle is far
    below 0.01 deg above 30 deg elevation).
    """
    from astropy import units as u
    from astropy.coordinates import TETE, EarthLocation, SkyCoord

    site = EarthLocation(lat=latitude_deg * u.deg, lon=longitude_deg * u.deg, height=elevation_m * u.m)
    apparent = SkyCoord(ra=ra_deg * u.deg, dec=dec_deg * u.deg, frame="icrs").transform_to(
        TETE(obstime=times_utc, location=site)
    )
    lst = times_utc.sidereal_time("apparent", longitude=site.lon)
    hour_angle = (lst - apparent.ra).wrap_at(180 * u.deg).deg
    return parallactic_angle(hour_angle, apparent.dec.deg, latitude_deg)


def mas_to_px(separation_mas: float, pixel_scale_mas: float) -> float:
    """Convert a separation in mas to pixels."""
    return separation_mas / pixel_scale_mas


def arcsec_to_px(separation_arcsec: float, pixel_scale_arcsec: float) -> float:
    """Convert a separation in arcsec to pixels."""
    return separation_arcsec / pixel_scale_arcsec
