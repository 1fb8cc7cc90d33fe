"""The simulated sky and the simulated users: targets, companions, programmes.

Stellar properties are those of the real stars (rounded; SIMBAD / Gaia DR3 /
2MASS values as commonly quoted). Companions are modelled on the real ones:
separations and position angles are representative of recent epochs, and the
contrasts come from the companions' published SPHERE/NACO magnitudes as
compiled in the ``species`` package (companion_data.json, T. Stolker, MIT;
see ``shared/data/published_companions/SOURCES.md``) divided by the stars'
magnitudes. They are *realistic*, not astrometric references: the simulator's
truth (``truth.json``) is what the generator put in the pixels.

Positions move with time (:meth:`Companion.position_at`): ``separation_arcsec`` and ``pa_deg`` hold
for :data:`POSITION_EPOCH_MJD` (the recent nights, June 2026). A bound companion runs on a face-on
circular orbit (counter-clockwise on the sky, period from Kepler's third law with the star's mass and the
projected separation as semi-major axis); a background star stays put on the sky, so relative to its star
it runs on the background track (minus the star's proper motion and parallax,
:func:`reduction.astrometry.background_track`). Archives years apart then show both behaviours.

Programmes, PIs and co-Is are fictitious (people's names are invented);
programme identifiers follow ESO's two formats: ``098.C-0209(A)`` before
period 105, ``117.2A3F.001`` from P105 (April 2020) on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date

#: the epoch at which the companions' ``separation_arcsec`` and ``pa_deg`` hold (2026-06-01, MJD)
POSITION_EPOCH_MJD = 61192.0
#: companion kinds that do not share their star's motion
BACKGROUND_KINDS = ("background star",)


@dataclass(frozen=True)
class Companion:
    """A point source near a target.

    ``contrast`` maps an IRDIS filter (``"DB_H23"``...) to the flux ratio to
    the star in each of its two bands; ``contrast_j`` anchors the IFS
    spectrum at 1.25 µm (interpolated log-linearly to H2).
    """

    name: str
    separation_arcsec: float
    pa_deg: float
    contrast: dict[str, tuple[float, float]]
    contrast_j: float
    kind: str = "planet"

    @property
    def bound(self) -> bool:
        return self.kind not in BACKGROUND_KINDS

    def position_at(self, target: "Target", mjd: float) -> tuple[float, float]:
        """``(separation arcsec, PA deg)`` at epoch ``mjd`` (see the module docstring)."""
        years = (mjd - POSITION_EPOCH_MJD) / 365.25
        if self.bound:
            a_au = self.separation_arcsec * 1000.0 / target.parallax_mas
            period_yr = math.sqrt(a_au**3 / target.mass_msun)
            return self.separation_arcsec, (self.pa_deg + 360.0 * years / period_yr) % 360.0
        from reduction.astrometry import Epoch, StarAstrometry, background_track

        star = StarAstrometry(
            target.ra_deg, target.dec_deg, target.pm_ra_mas_yr, target.pm_dec_mas_yr, target.parallax_mas
        )
        reference = Epoch(POSITION_EPOCH_MJD, self.separation_arcsec * 1000.0, 1.0, self.pa_deg, 0.1)
        track, _ = background_track(star, [mjd], reference)
        dx, dy = track[0]
        return math.hypot(dx, dy) / 1000.0, math.degrees(math.atan2(dx, dy)) % 360.0

    def contrast_at(self, wavelength_um: float) -> float:
        """Contrast at an arbitrary wavelength (log-linear in λ between anchors)."""
        import math

        anchors = sorted(
            {(1.25, self.contrast_j)}
            | {(w, c) for name, pair in self.contrast.items() for w, c in zip(_FILTER_WAVELENGTHS[name], pair)}
        )
        xs = [a[0] for a in anchors]
        ys = [math.log(a[1]) for a in anchors]
        if wavelength_um <= xs[0]:
            return float(math.exp(ys[0]))
        if wavelength_um >= xs[-1]:
            return float(math.exp(ys[-1]))
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if x0 <= wavelength_um <= x1:
                t = (wavelength_um - x0) / (x1 - x0) if x1 > x0 else 0.0
                return float(math.exp(y0 + t * (y1 - y0)))
        return float(math.exp(ys[-1]))


_FILTER_WAVELENGTHS = {
    "DB_Y23": (1.022, 1.076),
    "DB_J23": (1.190, 1.273),
    "DB_H23": (1.593, 1.667),
    "DB_H34": (1.667, 1.733),
    "DB_K12": (2.110, 2.251),
}


@dataclass(frozen=True)
class Target:
    """A star with the properties the catalog and the photometry need."""

    name: str
    ob_label: str  #: short name used in OB names (no blanks)
    ra_deg: float  #: ICRS, epoch J2000.0
    dec_deg: float
    pm_ra_mas_yr: float  #: µα cos δ
    pm_dec_mas_yr: float
    parallax_mas: float
    spectral_type: str
    age_myr: float
    j_mag: float
    h_mag: float
    k_mag: float
    companions: tuple[Companion, ...] = ()
    #: stellar mass (Msun), for the companions' orbital motion
    mass_msun: float = 1.0

    def magnitude_at(self, wavelength_um: float) -> float:
        """Magnitude interpolated linearly in λ between J (1.25), H (1.65), K (2.2 µm)."""
        pts = ((1.25, self.j_mag), (1.65, self.h_mag), (2.2, self.k_mag))
        if wavelength_um <= 1.65:
            (x0, y0), (x1, y1) = pts[0], pts[1]
        else:
            (x0, y0), (x1, y1) = pts[1], pts[2]
        return y0 + (wavelength_um - x0) * (y1 - y0) / (x1 - x0)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "ra_deg": self.ra_deg,
            "dec_deg": self.dec_deg,
            "pm_ra_mas_yr": self.pm_ra_mas_yr,
            "pm_dec_mas_yr": self.pm_dec_mas_yr,
            "parallax_mas": self.parallax_mas,
            "distance_pc": round(1000.0 / self.parallax_mas, 3),
            "spectral_type": self.spectral_type,
            "age_myr": self.age_myr,
            "j_mag": self.j_mag,
            "h_mag": self.h_mag,
            "k_mag": self.k_mag,
            "mass_msun": self.mass_msun,
            "companions": [
                {
                    "name": c.name,
                    "separation_arcsec": c.separation_arcsec,
                    "pa_deg": c.pa_deg,
                    "contrast": {k: list(v) for k, v in c.contrast.items()},
                    "contrast_j": c.contrast_j,
                    "kind": c.kind,
                }
                for c in self.companions
            ],
        }


def _c(dmag2: float, dmag3: float) -> tuple[float, float]:
    return (round(10 ** (-0.4 * dmag2), 9), round(10 ** (-0.4 * dmag3), 9))


#: The targets (real stars). Contrasts: companion magnitude minus star magnitude. Masses as commonly quoted:
#: beta Pic 1.83 (species' compilation), 51 Eri 1.75 (Simon & Schaefer 2011), HIP 65426 1.96 (Chauvin et al.
#: 2017), PDS 70 0.76 (Keppler et al. 2018), HD 206893 1.32 (Delorme et al. 2017).
TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "beta Pic",
            "betaPic",
            86.82119,
            -51.06651,
            4.65,
            83.10,
            50.93,
            "A6V",
            24.0,
            3.67,
            3.54,
            3.53,
            (
                Companion(
                    "beta Pic b",
                    0.215,
                    212.6,
                    {"DB_H23": _c(13.32 - 3.54, 13.40 - 3.54), "DB_K12": _c(12.64 - 3.53, 12.55 - 3.53)},
                    contrast_j=10 ** (-0.4 * (14.11 - 3.67)),
                ),
            ),
            mass_msun=1.83,
        ),
        Target(
            "51 Eri",
            "51Eri",
            69.40055,
            -2.47355,
            44.22,
            -63.98,
            33.44,
            "F0IV",
            24.0,
            4.75,
            4.77,
            4.54,
            (
                Companion(
                    "51 Eri b",
                    0.452,
                    166.8,
                    {"DB_H23": _c(18.41 - 4.77, 19.90 - 4.77), "DB_K12": _c(17.55 - 4.54, 18.60 - 4.54)},
                    contrast_j=10 ** (-0.4 * (19.04 - 4.75)),
                ),
            ),
            mass_msun=1.75,
        ),
        Target(
            "HIP 65426",
            "HIP65426",
            201.15042,
            -51.50447,
            -33.92,
            -18.93,
            9.30,
            "A2V",
            14.0,
            6.83,
            6.85,
            6.77,
            (
                Companion(
                    "HIP 65426 b",
                    0.828,
                    150.1,
                    {"DB_H23": _c(17.94 - 6.85, 17.58 - 6.85), "DB_K12": _c(17.01 - 6.77, 16.79 - 6.77)},
                    contrast_j=10 ** (-0.4 * (18.9 - 6.83)),
                ),
                # a fictitious background star, flat-spectrum and well above the noise: easy to find
                Companion(
                    "HIP 65426 cc1",
                    # north-east of the star, where its background track comes from: 0.59" in mid-2016
                    0.971,
                    55.5,
                    # contrast ~1.3e-3: seen well above the noise at both epochs (0.59" in 2016, 0.97" in 2026)
                    {"DB_H23": _c(14.1 - 6.85, 14.1 - 6.85), "DB_K12": _c(14.0 - 6.77, 14.0 - 6.77)},
                    contrast_j=10 ** (-0.4 * (14.3 - 6.83)),
                    kind="background star",
                ),
            ),
            mass_msun=1.96,
        ),
        Target(
            "PDS 70",
            "PDS70",
            212.04230,
            -41.39795,
            -29.66,
            -23.82,
            8.90,
            "K7IVe",
            5.4,
            9.55,
            8.82,
            8.54,
            (
                Companion(
                    "PDS 70 b",
                    0.178,
                    140.2,
                    {"DB_H23": _c(18.12 - 8.82, 17.97 - 8.82), "DB_K12": _c(16.66 - 8.54, 16.37 - 8.54)},
                    contrast_j=10 ** (-0.4 * (20.04 - 9.55)),
                ),
                Companion(
                    "PDS 70 c",
                    0.219,
                    276.3,
                    {"DB_H23": _c(18.6 - 8.82, 18.4 - 8.82), "DB_K12": _c(16.95 - 8.54, 16.7 - 8.54)},
                    contrast_j=10 ** (-0.4 * (20.6 - 9.55)),
                ),
            ),
            mass_msun=0.76,
        ),
        Target(
            "HD 206893",
            "HD206893",
            326.34129,
            -12.78337,
            93.78,
            0.20,
            24.53,
            "F5V",
            155.0,
            5.87,
            5.69,
            5.59,
            (
                Companion(
                    "HD 206893 B",
                    0.268,
                    55.4,
                    {"DB_H23": _c(16.79 - 5.69, 16.60 - 5.69), "DB_K12": _c(15.20 - 5.59, 14.88 - 5.59)},
                    contrast_j=10 ** (-0.4 * (18.2 - 5.87)),
                ),
            ),
            mass_msun=1.32,
        ),
    )
}


@dataclass(frozen=True)
class Person:
    name: str  #: as written in ``OBS PI-COI NAME`` (surname)
    full_name: str
    username: str  #: HC-DC / JupyterHub user name


@dataclass(frozen=True)
class Programme:
    """An ESO programme: who owns it, how long it is proprietary, what it observes."""

    key: str  #: internal role: "archival", "monitoring", "spectra", "calibration"
    title: str
    pi: Person
    co_is: tuple[Person, ...]
    proprietary_months: int
    targets: tuple[str, ...] = ()
    kind: str = "science"
    run: str = "A"
    category: str = "C"  #: ESO category letter in old-style ids
    number: int = 0  #: old-style programme number / new-style code seed
    prog_id: str = field(default="")


PEOPLE = {
    "emarchetti": Person("Marchetti", "Elena Marchetti", "emarchetti"),
    "jlarsen": Person("Larsen", "Jonas Larsen", "jlarsen"),
    "kokafor": Person("Okafor", "Kemi Okafor", "kokafor"),
    "toyarzun": Person("Oyarzun", "Tomas Oyarzun", "toyarzun"),
    "mweber": Person("Weber", "Miriam Weber", "mweber"),
    "skaur": Person("Kaur", "Simran Kaur", "skaur"),
    "anakamura": Person("Nakamura", "Aiko Nakamura", "anakamura"),
    "rduval": Person("Duval", "Remi Duval", "rduval"),
    "eso": Person("ESO", "ESO Paranal Science Operations", "eso-sciops"),
}


def eso_period(day: date) -> int:
    """ESO observing period of a date (P99 = 2017-04-01 to 2017-09-30)."""
    half = 0 if 4 <= day.month <= 9 else (1 if day.month >= 10 else -1)
    return 99 + 2 * (day.year - 2017) + half


def programme_id(period: int, category: str, number: int, run: str) -> str:
    """ESO programme id in the format of its period (new format from P105)."""
    if period >= 105:
        alphabet = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"
        n = (number * 7919 + period * 104729) % (len(alphabet) ** 3)
        code = "2" + "".join(alphabet[(n // len(alphabet) ** k) % len(alphabet)] for k in (2, 1, 0))
        return f"{period:03d}.{code}.{ord(run) - ord('A') + 1:03d}"
    return f"{period:03d}.{category}-{number:04d}({run})"


def build_programmes(archival_date: date | None, recent_date: date) -> dict[str, Programme]:
    """The programmes of an archive whose archival night is ``archival_date``."""
    from dataclasses import replace

    p = PEOPLE
    progs = [
        Programme(
            "archival",
            "Young nearby stars: a dual-band imaging survey for giant planets",
            p["emarchetti"],
            (p["jlarsen"], p["kokafor"]),
            12,
            # the season picks among them (the highest in the sky): in June (the default archival date) the
            # targets of the recent nights, ten years before them, for the sources' verdicts; in December
            # beta Pic and 51 Eri
            ("HIP 65426", "PDS 70", "51 Eri", "beta Pic"),
            number=209,
        ),
        Programme(
            "monitoring",
            "Orbital monitoring of directly imaged giant planets",
            p["toyarzun"],
            (p["mweber"], p["skaur"]),
            12,
            ("HIP 65426", "PDS 70"),
            number=4123,
        ),
        Programme(
            "spectra",
            "Near-infrared spectra of young substellar companions with IRDIFS",
            p["anakamura"],
            (p["rduval"], p["toyarzun"]),
            12,
            ("HD 206893", "PDS 70", "HIP 65426"),
            number=8841,
        ),
        Programme(
            "calibration",
            "SPHERE calibration plan",
            p["eso"],
            (),
            0,
            (),
            kind="calibration",
            run="J",
            category="A",
            number=9800,
        ),
    ]
    out = {}
    for prog in progs:
        if prog.key == "calibration":
            pid = "60.A-9800(J)"
        elif prog.key == "archival":
            pid = programme_id(eso_period(archival_date or date(2016, 6, 5)), prog.category, prog.number, prog.run)
        else:
            pid = programme_id(eso_period(recent_date), prog.category, prog.number, prog.run)
        out[prog.key] = replace(prog, prog_id=pid)
    return out
