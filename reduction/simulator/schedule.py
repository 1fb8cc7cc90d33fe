"""The observing plan: nights, observing blocks, templates, files and their times.

Everything here is decided *before* any pixel is drawn, and the truth's
expected observation counts and calibration associations are read off this
plan (what the generator intended), never re-derived from the written headers.

Night layout (times in UTC; Paranal local = UTC-4, a night runs noon to noon):

* recent nights (from ``start_date``): three slots relative to local midnight
  (04:00 UTC of the next day): an IRDIS DBI block starting 23:30 UTC (it
  straddles UTC midnight), an IRDIS block around local midnight (straddles
  04:00 UTC) and an IRDIFS block (IRDIS + IFS, one OB, two observations)
  late in the night;
* the archival night (``archival_date``, before June 2021): two IRDIS blocks;
* calibrations: an afternoon block (15:00 local) with darks, backgrounds for
  every (DIT, filter) used at night, lamp flats at three DITs and the IFS lamp
  calibrations, plus a morning block of backgrounds; on the first recent night
  *all* calibrations are taken the next morning (09:00 local, 13:00 UTC of the
  next UTC date, still the same night), so a noon-to-noon night boundary
  matters; every recent night also has a dark at a DIT nobody uses.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

import numpy as np

from reduction.conventions import PARANAL_LATITUDE_DEG, PARANAL_LONGITUDE_DEG, parallactic_angle
from reduction.instruments.base import FrameKind
from reduction.instruments.sphere import SphereIfs, SphereIrdis, neutral_density_transmission

from .catalogue import TARGETS, Programme, Target, build_programmes
from .parameters import SimulationParameters

UTC = timezone.utc
#: Dead time between the DITs of a cube (s): DET SEQ1 EXPTIME = NDIT * (DIT + this).
FRAME_OVERHEAD_S = 0.00527
#: Read-out and file overhead (s) between two files.
FILE_OVERHEAD_S = 6.0
#: Minimum DIT of IRDIS in full frame (s), the value of the DESIGN.md header.
IRDIS_MIN_DIT = 0.837464
#: Date of ESO's rename of INS4 DROT2 BEGIN into INS4 DROT2 START.
DROT2_RENAME_DATE = date(2021, 6, 1)

#: Instrument photometric model: photo-electrons detected per photon at the telescope.
IRDIS_THROUGHPUT = 0.15
IFS_THROUGHPUT = 0.10
#: Saturation level in electrons that exposure times must keep below (half of it).
FULL_WELL_E = (65535 - 1000) * 1.75


#: Background rates per band (e-/s/pixel): instrument thermal (in DARK,BACKGROUND too) and sky.
def background_rates(wavelength_um: float) -> tuple[float, float]:
    """(instrument thermal, sky) photo-electrons per second per pixel at ``wavelength_um``."""
    if wavelength_um < 1.4:
        return 0.02, 0.25
    if wavelength_um < 1.9:
        return 0.3 + 0.8 * (wavelength_um - 1.5), 1.2 + 2.0 * (wavelength_um - 1.5)
    return 18.0 + 150.0 * (wavelength_um - 2.1), 14.0 + 80.0 * (wavelength_um - 2.1)


def nd_transmission(nd: str, wavelength_um: float) -> float:
    return neutral_density_transmission(nd, wavelength_um)


_VEGA = ((1.02, 6.0e-9), (1.25, 3.13e-9), (1.65, 1.13e-9), (2.2, 4.28e-10))  # W m^-2 µm^-1


def vega_photons(wavelength_um: float) -> float:
    """Photon flux density of a 0-mag star (photons s^-1 m^-2 µm^-1), log-log interpolation."""
    xs = np.log([v[0] for v in _VEGA])
    ys = np.log([v[1] for v in _VEGA])
    f_lambda = float(np.exp(np.interp(np.log(wavelength_um), xs, ys)))
    return f_lambda * wavelength_um * 1e-6 / (6.62607015e-34 * 2.99792458e8)


TELESCOPE_AREA_M2 = math.pi * 4.0**2 * (1 - 0.14**2) * 0.985  # spiders


def star_rate(target: Target, wavelength_um: float, width_um: float, throughput: float) -> float:
    """Detected photo-electrons per second of a star in one band."""
    mag = target.magnitude_at(wavelength_um)
    return vega_photons(wavelength_um) * 10 ** (-0.4 * mag) * TELESCOPE_AREA_M2 * width_um * throughput


def peak_fraction(wavelength_um: float, pixel_scale_arcsec: float) -> float:
    """Fraction of a diffraction-limited PSF in its brightest pixel (obstructed pupil)."""
    lam_d = wavelength_um * 1e-6 / 8.0 * 206264.806
    return 0.80 * math.pi / 4.0 * (pixel_scale_arcsec / lam_d) ** 2


# -- plan objects -------------------------------------------------------------------------------
@dataclass
class FilePlan:
    """One raw file as the generator intends to write it."""

    arm: str  #: "IRDIS" or "IFS"
    role: FrameKind
    dpr_catg: str
    dpr_type: str
    dpr_tech: str
    start: datetime
    dit: float
    ndit: int
    filter: str
    coronagraph: str
    nd: str
    night: date
    tpl_id: str
    tpl_start: datetime | None = None
    expno: int = 1
    nexp: int = 1
    observation: "ObservationPlan | None" = None
    calseq: "CalSequencePlan | None" = None
    sky_offset: bool = False
    degraded: dict[int, dict] = field(default_factory=dict)
    name: str = ""
    # filled by the astrometry pass (science-sequence files)
    parang_start: float | None = None
    parang_end: float | None = None
    altitude_start: float | None = None
    airmass_start: float | None = None
    airmass_end: float | None = None
    frame_mid_mjd: list[float] = field(default_factory=list)
    frame_parang: list[float] = field(default_factory=list)
    lst_start_s: float | None = None
    seeing_start: float | None = None
    seeing_end: float | None = None
    tau0_s: float | None = None
    wind_ms: float | None = None
    wind_dir_deg: float | None = None

    @property
    def instrument(self) -> str:
        return SphereIrdis.name if self.arm == "IRDIS" else SphereIfs.name

    @property
    def exptime(self) -> float:
        return self.ndit * (self.dit + FRAME_OVERHEAD_S)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=self.exptime)

    def frame_mid_times(self) -> list[datetime]:
        step = self.dit + FRAME_OVERHEAD_S
        return [self.start + timedelta(seconds=i * step + self.dit / 2) for i in range(self.ndit)]

    @property
    def date_obs(self) -> str:
        return self.start.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.start.microsecond // 1000:03d}"

    @property
    def on_sky(self) -> bool:
        return self.observation is not None

    def mid_mjd(self) -> float:
        mid = self.start + timedelta(seconds=self.exptime / 2)
        return mjd(mid)


@dataclass
class ObservationPlan:
    """One observation: the files of one arm of one OB (what the catalog groups)."""

    arm: str
    ob: "OBPlan"
    filter: str
    coronagraph: str
    mode_combination: str  #: INS4 MODE: IRDIS_DBI, IRDIFS, IRDIFS_EXT
    science_dit: float
    science_nd: str
    flux_dit: float
    flux_nd: str
    tpl_id: str
    files: list[FilePlan] = field(default_factory=list)
    star_centre: list[tuple[float, float]] = field(default_factory=list)  # per band, full detector (x, y)
    flux_centre: list[tuple[float, float]] = field(default_factory=list)
    seq_coro: tuple[float, float] | None = None
    ifs_lenslet_centre: tuple[float, float] | None = None
    wind_angle_rad: float = 0.0

    @property
    def obs_id(self) -> str:
        return f"{self.ob.night.isoformat()}/{self.arm}/{self.ob.ob_id}"

    @property
    def instrument(self) -> str:
        return SphereIrdis.name if self.arm == "IRDIS" else SphereIfs.name

    def files_of(self, role: FrameKind) -> list[FilePlan]:
        return [f for f in self.files if f.role == role]

    @property
    def sequence_files(self) -> list[FilePlan]:
        return [f for f in self.files if f.role.is_science_sequence]

    def mid_mjd(self) -> float:
        return float(np.mean([f.mid_mjd() for f in self.sequence_files]))


@dataclass
class OBPlan:
    ob_id: int
    name: str
    programme: Programme
    target: Target
    night: date
    slot: int
    start: datetime
    observations: list[ObservationPlan] = field(default_factory=list)


@dataclass
class CalSequencePlan:
    """One calibration template (the unit of calibration association)."""

    seq_id: str
    arm: str
    role: FrameKind
    dpr_type: str
    night: date
    dits: tuple[float, ...]
    filter: str
    ob_id: int
    block: str  #: "afternoon" or "morning"
    files: list[FilePlan] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    burst_pixels: list[tuple[int, int]] = field(default_factory=list)

    @property
    def instrument(self) -> str:
        return SphereIrdis.name if self.arm == "IRDIS" else SphereIfs.name

    def mid_mjd(self) -> float:
        return float(np.mean([f.mid_mjd() for f in self.files]))


@dataclass
class NightPlan:
    night: date
    index: int
    archival: bool
    bad_seeing: bool
    calibrations_next_morning: bool
    seeing_arcsec: float
    tau0_ms: float
    wind_ms: float
    phases: tuple[float, ...]
    obs: list[OBPlan] = field(default_factory=list)
    calibrations: list[CalSequencePlan] = field(default_factory=list)

    def seeing_at(self, t: datetime) -> float:
        h = (t - local_midnight(self.night)).total_seconds() / 3600.0
        p = self.phases
        return self.seeing_arcsec * math.exp(
            0.12 * math.sin(2 * math.pi * h / 2.7 + p[0]) + 0.05 * math.sin(2 * math.pi * h / 0.8 + p[1])
        )

    def tau0_at(self, t: datetime) -> float:
        """Coherence time in seconds."""
        h = (t - local_midnight(self.night)).total_seconds() / 3600.0
        p = self.phases
        return (
            self.tau0_ms
            * 1e-3
            * math.exp(0.15 * math.sin(2 * math.pi * h / 3.1 + p[2]) + 0.05 * math.sin(2 * math.pi * h / 0.7 + p[3]))
        )

    def wind_at(self, t: datetime) -> float:
        h = (t - local_midnight(self.night)).total_seconds() / 3600.0
        return self.wind_ms * (1.0 + 0.15 * math.sin(2 * math.pi * h / 4.0 + self.phases[4]))


@dataclass
class ArchivePlan:
    params: SimulationParameters
    programmes: dict[str, Programme]
    nights: list[NightPlan]

    @property
    def observations(self) -> list[ObservationPlan]:
        return [o for n in self.nights for ob in n.obs for o in ob.observations]

    @property
    def calibrations(self) -> list[CalSequencePlan]:
        return [c for n in self.nights for c in n.calibrations]

    @property
    def files(self) -> list[FilePlan]:
        out = [f for o in self.observations for f in o.files]
        out += [f for c in self.calibrations for f in c.files]
        return sorted(out, key=lambda f: (f.start, f.arm))


# -- helpers ---------------------------------------------------------------------------------------
def mjd(t: datetime) -> float:
    return (t - datetime(1858, 11, 17, tzinfo=UTC)).total_seconds() / 86400.0


def local_midnight(night: date) -> datetime:
    """Local (UTC-4) midnight of the night of ``night``: 04:00 UTC the next day."""
    return datetime.combine(night + timedelta(days=1), time(4, 0), tzinfo=UTC)


def stable_seed(*parts: object) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


def rng_for(seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stable_seed(*parts)]))


def _round_time(t: datetime) -> datetime:
    """Millisecond precision, like ESO's DATE-OBS and file names."""
    return t.replace(microsecond=(t.microsecond // 1000) * 1000)


# -- astrometry -----------------------------------------------------------------------------------
def apparent_hour_angle(target: Target, times: list[datetime]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hour angle (deg), apparent declination (deg) and local apparent sidereal time (h).

    astropy gives the apparent sidereal time at Paranal and the target's true
    equator/true equinox (TETE) coordinates of date, proper motion applied.
    """
    import warnings

    import astropy.units as u
    from astropy.coordinates import TETE, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    t = Time(times, scale="utc")
    years = (t.jd - 2451545.0) / 365.25
    dec0 = math.radians(target.dec_deg)
    ra = target.ra_deg + target.pm_ra_mas_yr * years / 3.6e6 / math.cos(dec0)
    dec = target.dec_deg + target.pm_dec_mas_yr * years / 3.6e6
    with (
        iers.conf.set_temp("auto_download", False),
        iers.conf.set_temp("iers_degraded_accuracy", "warn"),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        app = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").transform_to(TETE(obstime=t))
        lst = t.sidereal_time("apparent", longitude=PARANAL_LONGITUDE_DEG * u.deg).hour
    ha = (np.asarray(lst) * 15.0 - app.ra.deg + 180.0) % 360.0 - 180.0
    return ha, np.asarray(app.dec.deg), np.asarray(lst)


def altitude_deg(ha_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
    phi = math.radians(PARANAL_LATITUDE_DEG)
    h = np.radians(ha_deg)
    d = np.radians(dec_deg)
    return np.degrees(np.arcsin(np.sin(phi) * np.sin(d) + np.cos(phi) * np.cos(d) * np.cos(h)))


def airmass(alt_deg: np.ndarray) -> np.ndarray:
    """Airmass (Pickering 2002), what TCS-like software writes."""
    alt = np.asarray(alt_deg, dtype=float)
    return 1.0 / np.sin(np.radians(alt + 244.0 / (165.0 + 47.0 * np.abs(alt) ** 1.1)))


# -- exposure choices -----------------------------------------------------------------------------
SCIENCE_DITS = (64.0, 32.0, 16.0, 8.0, 4.0, 2.0, 1.0)
FLUX_DITS = (16.0, 8.0, 4.0, 2.0, 1.0, IRDIS_MIN_DIT)


def choose_science_exposure(target: Target, filter_name: str) -> tuple[float, str]:
    """Longest DIT keeping the brightest coronagraphic/waffle pixel under half the full well."""
    flt = SphereIrdis.filters[filter_name]
    scale = SphereIrdis.pixel_scale_arcsec(filter_name)
    for nd in ("ND_0.0", "ND_1.0", "ND_2.0"):
        worst = 0.0
        for wl, width in zip(flt.wavelengths_um, flt.widths_um):
            rate = star_rate(target, wl, width, IRDIS_THROUGHPUT) * nd_transmission(nd, wl)
            bg = sum(background_rates(wl))
            worst = max(worst, 0.03 * rate * peak_fraction(wl, scale) + bg)
        for dit in SCIENCE_DITS:
            if worst * dit < 0.5 * FULL_WELL_E:
                return dit, nd
    return SCIENCE_DITS[-1], "ND_2.0"


def choose_flux_exposure(target: Target, filter_name: str) -> tuple[float, str]:
    """(DIT, ND) putting the unsaturated PSF peak between 10 % and 50 % of the full well."""
    flt = SphereIrdis.filters[filter_name]
    scale = SphereIrdis.pixel_scale_arcsec(filter_name)
    for nd in ("ND_1.0", "ND_2.0", "ND_3.5"):
        peak = max(
            star_rate(target, wl, w, IRDIS_THROUGHPUT) * nd_transmission(nd, wl) * peak_fraction(wl, scale)
            for wl, w in zip(flt.wavelengths_um, flt.widths_um)
        )
        for dit in FLUX_DITS:
            if 0.05 * FULL_WELL_E <= peak * dit <= 0.5 * FULL_WELL_E:
                return dit, nd
    return IRDIS_MIN_DIT, "ND_3.5"


def choose_ifs_flux_exposure(target: Target, mode: str) -> tuple[float, str]:
    mag = target.magnitude_at(1.25)
    nd = "ND_2.0" if mag < 5.0 else "ND_1.0"
    dit = 2.0 if mag < 7.0 else 8.0
    return dit, nd


# -- the plan -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Slot:
    hours_from_local_midnight: float
    programme: str
    arms: tuple[str, ...]
    irdis_filter: str
    ifs_mode: str | None = None


def slots_for(night: NightPlan, params: SimulationParameters) -> list[Slot]:
    if night.archival:
        slots = [Slot(-0.85, "archival", ("IRDIS",), "DB_H23"), Slot(1.0, "archival", ("IRDIS",), "DB_K12")]
    else:
        even = night.index % 2 == 0
        slots = [
            Slot(-4.5, "monitoring", ("IRDIS",), "DB_H23"),
            Slot(-0.85, "monitoring" if even else "spectra", ("IRDIS",), "DB_K12"),
        ]
        if params.ifs:
            slots.append(
                Slot(2.9, "spectra", ("IRDIS", "IFS"), "DB_H23" if even else "DB_K12", "OBS_YJ" if even else "OBS_H")
            )
        else:
            slots.append(Slot(2.9, "spectra", ("IRDIS",), "DB_H23"))
    if params.obs_per_night is not None:
        slots = slots[: max(params.obs_per_night, 0)]
    return slots


def choose_target(pool: tuple[str, ...], start: datetime, hours: float, used: set[str]) -> Target:
    times = [start + timedelta(hours=hours * k / 4) for k in range(5)]
    jd = np.array([mjd(t) + 2400000.5 for t in times])
    # approximate (mean) sidereal time: good to a fraction of a degree, enough to pick a target
    lst_deg = (15.0 * (18.697374558 + 24.06570982441908 * (jd - 2451545.0)) + PARANAL_LONGITUDE_DEG) % 360.0
    best, best_score = None, -1e9
    for name in pool:
        target = TARGETS[name]
        ha = (lst_deg - target.ra_deg + 180.0) % 360.0 - 180.0
        score = float(np.min(altitude_deg(ha, np.full_like(ha, target.dec_deg)))) - (25.0 if name in used else 0.0)
        if score > best_score:
            best, best_score = target, score
    assert best is not None
    return best


def _night_conditions(params: SimulationParameters, night: date, bad: bool) -> tuple[float, float, float, tuple]:
    rng = rng_for(params.seed, "conditions", night.isoformat())
    if bad:
        seeing = float(rng.uniform(1.5, 1.9))
        tau0 = float(rng.uniform(1.2, 1.8))
        wind = float(rng.uniform(13.0, 17.0))
    else:
        seeing = float(np.clip(0.72 * math.exp(rng.normal(0, 0.18)), 0.45, 1.05))
        tau0 = float(np.clip(5.5 * math.exp(rng.normal(0, 0.25)), 3.0, 10.0))
        wind = float(rng.uniform(3.0, 10.0))
    phases = tuple(float(x) for x in rng.uniform(0, 2 * math.pi, size=6))
    return seeing, tau0, wind, phases


def build_plan(params: SimulationParameters) -> ArchivePlan:
    """The full plan of an archive (no pixels)."""
    archival = params.archival_date is not None and params.nights >= 2
    dates: list[tuple[date, bool]] = []
    if archival:
        assert params.archival_date is not None
        dates.append((params.archival_date, True))
    n_recent = params.nights - len(dates)
    dates += [(params.start_date + timedelta(days=k), False) for k in range(n_recent)]
    programmes = build_programmes(params.archival_date if archival else None, params.start_date)
    nights: list[NightPlan] = []
    recent_index = 0
    for index, (night_date, is_archival) in enumerate(dates):
        if is_archival:
            bad = next_morning = False
            ridx = -1
        else:
            ridx = recent_index
            recent_index += 1
            bad = n_recent >= 2 and ridx == 1
            next_morning = ridx == 0
        seeing, tau0, wind, phases = _night_conditions(params, night_date, bad)
        nights.append(
            NightPlan(
                night_date, ridx if not is_archival else -1, is_archival, bad, next_morning, seeing, tau0, wind, phases
            )
        )
    for night in nights:
        _plan_night_observations(params, programmes, night)
    for night in nights:
        _plan_night_calibrations(params, programmes, night, nights)
    _name_files(nights)
    _compute_astrometry(params, nights)
    return ArchivePlan(params, programmes, nights)


def _plan_night_observations(params: SimulationParameters, programmes: dict[str, Programme], night: NightPlan) -> None:
    rng = rng_for(params.seed, "observations", night.night.isoformat())
    used: set[str] = set()
    midnight = local_midnight(night.night)
    for slot_index, slot in enumerate(slots_for(night, params)):
        programme = programmes[slot.programme]
        start = midnight + timedelta(hours=slot.hours_from_local_midnight)
        duration_h = params.science_span_min / 60.0 + 0.35
        target = choose_target(programme.targets, start, duration_h, used)
        used.add(target.name)
        ob_id = (
            1_500_000
            + (night.night.toordinal() % 10_000) * 10
            + slot_index
            + (stable_seed(params.seed, night.night) % 97) * 100_000
        )
        band = slot.irdis_filter.split("_")[1]
        name = f"OB-{target.ob_label}-{band}" + (f"-IFS_{slot.ifs_mode.split('_')[1]}" if slot.ifs_mode else "")
        ob = OBPlan(ob_id, name, programme, target, night.night, slot_index, start)
        night.obs.append(ob)
        combination = (
            "IRDIS_DBI" if slot.ifs_mode is None else ("IRDIFS" if slot.ifs_mode == "OBS_YJ" else "IRDIFS_EXT")
        )
        tpl_id = "SPHERE_irdis_dbi_obs" if slot.ifs_mode is None else "SPHERE_irdifs_obs"
        sci_dit, sci_nd = choose_science_exposure(target, slot.irdis_filter)
        flux_dit, flux_nd = choose_flux_exposure(target, slot.irdis_filter)
        coro = "N_ALC_Ks" if slot.irdis_filter == "DB_K12" else "N_ALC_YJH_S"
        wind_angle = float(rng.uniform(0, 2 * math.pi))
        irdis = ObservationPlan(
            "IRDIS",
            ob,
            slot.irdis_filter,
            coro,
            combination,
            sci_dit,
            sci_nd,
            flux_dit,
            flux_nd,
            tpl_id,
            wind_angle_rad=wind_angle,
        )
        # star behind the coronagraph: a few pixels around the nominal position, sub-pixel
        from .detector import IFS_NOMINAL_CENTRE, IRDIS_NOMINAL_CENTRES

        common = rng.uniform(-1.5, 1.5, size=2)
        irdis.star_centre = [
            (float(xc + common[0] + rng.normal(0, 0.25)), float(yc + common[1] + rng.normal(0, 0.25)))
            for xc, yc in IRDIS_NOMINAL_CENTRES
        ]
        flux_offset = rng.uniform(-6.0, 6.0, size=2)
        irdis.flux_centre = [(x + float(flux_offset[0]), y + float(flux_offset[1])) for x, y in irdis.star_centre]
        err = rng.normal(0.0, 0.6, size=2)
        # SEQ CORO XC/YC: ESO's guess of the coronagraph centre, 1-based, first band, *not* exact
        irdis.seq_coro = (
            round(irdis.star_centre[0][0] + 1 + float(err[0]), 3),
            round(irdis.star_centre[0][1] + 1 + float(err[1]), 3),
        )
        ob.observations.append(irdis)
        if slot.ifs_mode is not None:
            ifs_flux_dit, ifs_flux_nd = choose_ifs_flux_exposure(target, slot.ifs_mode)
            ifs = ObservationPlan(
                "IFS",
                ob,
                slot.ifs_mode,
                "N_ALC_YJ_S" if slot.ifs_mode == "OBS_YJ" else "N_ALC_YJH_S",
                combination,
                sci_dit,
                "ND_0.0",
                ifs_flux_dit,
                ifs_flux_nd,
                tpl_id,
                wind_angle_rad=wind_angle,
            )
            off = rng.uniform(-0.4, 0.4, size=2)
            ifs.ifs_lenslet_centre = (float(off[0]), float(off[1]))
            from .ifs import LATTICE_ROTATION_RAD, LENSLET_PITCH_PX

            c, s_ = math.cos(LATTICE_ROTATION_RAD), math.sin(LATTICE_ROTATION_RAD)
            # detector position of the middle of the star's spectrum (lenslet-space offset u0, v0)
            star_xy = (
                IFS_NOMINAL_CENTRE[0] + LENSLET_PITCH_PX * (c * off[0] - s_ * off[1]),
                IFS_NOMINAL_CENTRE[1] + LENSLET_PITCH_PX * (s_ * off[0] + c * off[1]),
            )
            ifs.star_centre = [star_xy]
            ifs.flux_centre = [star_xy]
            ob.observations.append(ifs)
        _plan_ob_files(params, night, ob, slot)


def _plan_ob_files(params: SimulationParameters, night: NightPlan, ob: OBPlan, slot: Slot) -> None:
    """FLUX, CENTER, OBJECT x n, CENTER, FLUX, SKY x 2 (science DIT), SKY (flux DIT)."""
    t = ob.start + timedelta(minutes=8)  # acquisition, not archived here
    tpl_start = _round_time(t)
    steps: list[tuple[FrameKind, str, bool, int]] = []  # role, "sci"/"flux", sky, ndit
    steps.append((FrameKind.FLUX, "flux", False, params.aux_ndit))
    steps.append((FrameKind.CENTER, "sci", False, params.aux_ndit))
    steps += [(FrameKind.SCIENCE, "sci", False, params.frames_per_cube)] * params.science_files_per_ob
    steps.append((FrameKind.CENTER, "sci", False, params.aux_ndit))
    steps.append((FrameKind.FLUX, "flux", False, params.aux_ndit))
    steps += [(FrameKind.SKY, "sci", True, params.aux_ndit)] * 2
    steps.append((FrameKind.SKY, "flux", True, params.aux_ndit))
    n_sci = params.science_files_per_ob
    longest = max(o.science_dit for o in ob.observations) * params.frames_per_cube
    spacing = max(params.science_span_min * 60.0 / n_sci, longest + FILE_OVERHEAD_S + 5.0)
    dpr = {
        FrameKind.SCIENCE: "OBJECT",
        FrameKind.CENTER: "OBJECT,CENTER",
        FrameKind.FLUX: "OBJECT,FLUX",
        FrameKind.SKY: "SKY",
    }
    sci_index = 0
    for expno, (role, which, sky, ndit) in enumerate(steps, start=1):
        if role == FrameKind.SKY and steps[expno - 2][0] != FrameKind.SKY:
            t += timedelta(minutes=3)  # offset to the sky position
        durations = []
        for k, obs in enumerate(ob.observations):
            dit = obs.science_dit if which == "sci" else obs.flux_dit
            nd = obs.science_nd if which == "sci" else obs.flux_nd
            tech = (
                ("IMAGE,DUAL,CORONOGRAPHY" if obs.arm == "IRDIS" else "IFU")
                if role != FrameKind.FLUX
                else ("IMAGE,DUAL" if obs.arm == "IRDIS" else "IFU")
            )
            if role == FrameKind.SKY:
                tech = "IMAGE,DUAL" if obs.arm == "IRDIS" else "IFU"
            start = _round_time(t + timedelta(seconds=0.357 * k))
            f = FilePlan(
                obs.arm,
                role,
                "SCIENCE" if role == FrameKind.SCIENCE else "CALIB",
                dpr[role],
                tech,
                start,
                dit,
                ndit,
                obs.filter,
                obs.coronagraph,
                nd,
                night.night,
                obs.tpl_id,
                tpl_start,
                expno,
                len(steps),
                observation=obs,
                sky_offset=sky,
            )
            if role == FrameKind.SCIENCE:
                f.dpr_catg = "SCIENCE"
            obs.files.append(f)
            durations.append(f.exptime)
        if role == FrameKind.SCIENCE:
            sci_index += 1
            t = ob.start + timedelta(minutes=8) + timedelta(seconds=max(durations) + FILE_OVERHEAD_S) * 2
            t += timedelta(seconds=spacing * sci_index)
        else:
            t += timedelta(seconds=max(durations) + FILE_OVERHEAD_S + 20.0)
    # deliberately degraded frames (IRDIS only)
    if params.degraded_frames and not night.archival:
        irdis = ob.observations[0]
        sci = irdis.files_of(FrameKind.SCIENCE)
        if slot.hours_from_local_midnight == -0.85 and len(sci) >= 1:
            f = sci[min(2, len(sci) - 1)]
            f.degraded[min(1, f.ndit - 1)] = {"reason": "ao_loop_open", "detail": "AO loop opened: seeing-limited halo"}
        if night.bad_seeing and slot.hours_from_local_midnight == -4.5 and len(sci) >= 1:
            f = sci[min(1, len(sci) - 1)]
            for i in range(min(2, f.ndit)):
                f.degraded[i] = {"reason": "cloud", "detail": "passing cloud: transmission 0.25", "transmission": 0.25}


# -- calibrations ---------------------------------------------------------------------------------
IRDIS_FLAT_DITS = (1.0, 2.0, 4.0)
IFS_LAMP_DITS = (2.0, 5.0)
UNUSED_DARK_DIT = 100.0


def _plan_night_calibrations(
    params: SimulationParameters, programmes: dict[str, Programme], night: NightPlan, nights: list[NightPlan]
) -> None:
    obs = [o for ob in night.obs for o in ob.observations]
    irdis = [o for o in obs if o.arm == "IRDIS"]
    ifs = [o for o in obs if o.arm == "IFS"]
    counter = [0]

    def new_seq(
        arm: str,
        role: FrameKind,
        dpr_type: str,
        dits: tuple[float, ...],
        filt: str,
        block: str,
        tech: str,
        coro: str,
        nfiles: int,
        t: datetime,
    ) -> tuple[CalSequencePlan, datetime]:
        counter[0] += 1
        ob_id = 900_000 + (night.night.toordinal() % 1000) * 100 + counter[0]
        seq = CalSequencePlan(
            f"{night.night.isoformat()}/{arm}/{role.value}/{counter[0]:02d}",
            arm,
            role,
            dpr_type,
            night.night,
            dits,
            filt,
            ob_id,
            block,
        )
        tpl_start = _round_time(t)
        tpl = {
            FrameKind.DARK: "dark",
            FrameKind.BACKGROUND: "dark_bg",
            FrameKind.FLAT: "flat",
            FrameKind.WAVE: "wave",
            FrameKind.SPECPOS: "specpos",
        }[role]
        tpl_id = f"SPHERE_{arm.lower()}_cal_{tpl}"
        expno = 0
        all_dits = (
            [d for d in dits for _ in range(nfiles)] if role in (FrameKind.DARK, FrameKind.BACKGROUND) else list(dits)
        )
        for dit in all_dits:
            expno += 1
            f = FilePlan(
                arm,
                role,
                "CALIB",
                dpr_type,
                tech,
                _round_time(t),
                dit,
                params.calib_ndit,
                filt,
                coro,
                "ND_0.0",
                night.night,
                tpl_id,
                tpl_start,
                expno,
                len(all_dits),
                calseq=seq,
            )
            seq.files.append(f)
            t = t + timedelta(seconds=f.exptime + FILE_OVERHEAD_S)
        night.calibrations.append(seq)
        return seq, t + timedelta(seconds=30.0)

    irdis_dits = sorted({d for o in irdis for d in (o.science_dit, o.flux_dit)})
    irdis_bg = sorted({(d, o.filter, o.coronagraph) for o in irdis for d in (o.science_dit, o.flux_dit)})
    irdis_filters = sorted({o.filter for o in irdis})
    ifs_dits = sorted({d for o in ifs for d in (o.science_dit, o.flux_dit)})
    ifs_bg = sorted({(d, o.filter, o.coronagraph) for o in ifs for d in (o.science_dit, o.flux_dit)})
    ifs_modes = sorted({o.filter for o in ifs})
    default_filter = irdis_filters[0] if irdis_filters else "DB_H23"

    def full_block(t: datetime, block: str) -> None:
        dark_dits = sorted(set(irdis_dits) | (set(IRDIS_FLAT_DITS) if irdis_filters else set()))
        for d in dark_dits:
            _, t = new_seq(
                "IRDIS",
                FrameKind.DARK,
                "DARK",
                (d,),
                default_filter,
                block,
                "IMAGE",
                "N_NS_CLEAR",
                params.calib_files_per_sequence,
                t,
            )
        for d, filt, coro in irdis_bg:
            _, t = new_seq(
                "IRDIS",
                FrameKind.BACKGROUND,
                "DARK,BACKGROUND",
                (d,),
                filt,
                block,
                "IMAGE",
                coro,
                params.calib_files_per_sequence,
                t,
            )
        for filt in irdis_filters:
            _, t = new_seq(
                "IRDIS", FrameKind.FLAT, "FLAT,LAMP", IRDIS_FLAT_DITS, filt, block, "IMAGE", "N_NS_CLEAR", 1, t
            )
        if ifs:
            for d in sorted(set(ifs_dits) | set(IFS_LAMP_DITS)):
                _, t = new_seq(
                    "IFS",
                    FrameKind.DARK,
                    "DARK",
                    (d,),
                    ifs_modes[0],
                    block,
                    "IFU",
                    "N_NS_CLEAR",
                    params.calib_files_per_sequence,
                    t,
                )
            for d, mode, coro in ifs_bg:
                _, t = new_seq(
                    "IFS",
                    FrameKind.BACKGROUND,
                    "DARK,BACKGROUND",
                    (d,),
                    mode,
                    block,
                    "IFU",
                    coro,
                    params.calib_files_per_sequence,
                    t,
                )
            for mode in ifs_modes:
                _, t = new_seq(
                    "IFS", FrameKind.FLAT, "FLAT,LAMP", IFS_LAMP_DITS, mode, block, "IFU", "N_NS_CLEAR", 1, t
                )
                _, t = new_seq(
                    "IFS",
                    FrameKind.SPECPOS,
                    "SPECPOS,LAMP",
                    (IFS_LAMP_DITS[0],),
                    mode,
                    block,
                    "IFU",
                    "N_NS_CLEAR",
                    1,
                    t,
                )
                _, t = new_seq(
                    "IFS", FrameKind.WAVE, "LAMP,WAVE", (IFS_LAMP_DITS[1],), mode, block, "IFU", "N_NS_CLEAR", 1, t
                )
        if not night.archival:
            # a dark at a DIT that no observation uses: matching must not pick it
            new_seq(
                "IRDIS", FrameKind.DARK, "DARK", (UNUSED_DARK_DIT,), default_filter, block, "IMAGE", "N_NS_CLEAR", 1, t
            )

    afternoon = datetime.combine(night.night, time(19, 0), tzinfo=UTC)
    next_morning_start = datetime.combine(night.night + timedelta(days=1), time(13, 0), tzinfo=UTC)
    if night.calibrations_next_morning:
        full_block(next_morning_start, "morning")
    else:
        full_block(afternoon, "afternoon")
        if not night.archival:
            # morning backgrounds for the science DITs (after the night, 07:00 local)
            t = datetime.combine(night.night + timedelta(days=1), time(11, 0), tzinfo=UTC)
            for d, filt, coro in sorted({(o.science_dit, o.filter, o.coronagraph) for o in irdis}):
                _, t = new_seq(
                    "IRDIS",
                    FrameKind.BACKGROUND,
                    "DARK,BACKGROUND",
                    (d,),
                    filt,
                    "morning",
                    "IMAGE",
                    coro,
                    params.calib_files_per_sequence,
                    t,
                )
    # the hot-pixel burst: one dark sequence (science DIT of the first observation) in one night
    recent = [n for n in nights if not n.archival]
    burst_night = recent[1] if len(recent) >= 2 else (recent[0] if recent else nights[0])
    if night is burst_night and irdis:
        target_dit = irdis[0].science_dit
        for seq in night.calibrations:
            if seq.arm == "IRDIS" and seq.role == FrameKind.DARK and seq.dits == (target_dit,):
                seq.flags.append("hot_pixel_burst")
                break


def _name_files(nights: list[NightPlan]) -> None:
    """File names from DATE-OBS, made unique at the millisecond."""
    files = [f for n in nights for ob in n.obs for o in ob.observations for f in o.files]
    files += [f for n in nights for c in n.calibrations for f in c.files]
    files.sort(key=lambda f: (f.start, f.arm))
    seen: set[str] = set()
    for f in files:
        while True:
            name = f"SPHER.{f.date_obs}.fits"
            if name not in seen:
                break
            f.start += timedelta(milliseconds=1)
        seen.add(name)
        f.name = name


def _compute_astrometry(params: SimulationParameters, nights: list[NightPlan]) -> None:
    """Parallactic angles, altitudes, airmasses and written conditions of on-sky files."""
    for night in nights:
        rng = rng_for(params.seed, "dimm", night.night.isoformat())
        for ob in night.obs:
            files = [f for o in ob.observations for f in o.files]
            times: list[datetime] = []
            for f in files:
                times += [f.start, f.end] + f.frame_mid_times()
            ha, dec, lst = apparent_hour_angle(ob.target, times)
            q = parallactic_angle(ha, dec, PARANAL_LATITUDE_DEG)
            alt = altitude_deg(ha, dec)
            am = airmass(alt)
            k = 0
            for f in files:
                n = 2 + f.ndit
                f.parang_start, f.parang_end = float(q[k]), float(q[k + 1])
                f.altitude_start = float(alt[k])
                f.airmass_start, f.airmass_end = float(am[k]), float(am[k + 1])
                f.lst_start_s = float(lst[k] * 3600.0)
                f.frame_parang = [float(v) for v in q[k + 2 : k + n]]
                f.frame_mid_mjd = [mjd(t) for t in f.frame_mid_times()]
                k += n
                f.seeing_start = round(night.seeing_at(f.start) * float(np.exp(rng.normal(0, 0.04))), 2)
                f.seeing_end = round(night.seeing_at(f.end) * float(np.exp(rng.normal(0, 0.04))), 2)
                f.tau0_s = round(night.tau0_at(f.start) * float(np.exp(rng.normal(0, 0.05))), 6)
                f.wind_ms = round(night.wind_at(f.start) + float(rng.normal(0, 0.3)), 2)
                f.wind_dir_deg = round(float(np.degrees(f.observation.wind_angle_rad) % 360.0), 1)
