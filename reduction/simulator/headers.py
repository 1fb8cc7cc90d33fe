"""Raw FITS headers as ESO writes them for SPHERE, from the plan of one file.

Keyword names come from the instrument layer (:class:`SphereIrdis.keywords`,
:class:`SphereIfs.keywords`) wherever HC-DC reads them, so that the simulator
and the classifier cannot drift apart; the rest follow the real SPHERE header
quoted in DESIGN.md. Nothing from the truth (companions, true centres,
degraded-frame flags) is ever written here.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from astropy.io import fits

from reduction.conventions import PARANAL_ELEVATION_M, PARANAL_LATITUDE_DEG, PARANAL_LONGITUDE_DEG
from reduction.instruments.base import FrameKind
from reduction.instruments.sphere import SphereIfs, SphereIrdis

from .detector import Readout
from .schedule import DROT2_RENAME_DATE, FilePlan

#: INS1 FILT NAME (broad-band) and INS1 OPTI2 NAME (dual-band) of each IRDIS DBI filter.
IRDIS_FILTER_ELEMENTS = {
    "DB_Y23": ("B_Y", "D_Y23"),
    "DB_J23": ("B_J", "D_J23"),
    "DB_H23": ("B_H", "D_H23"),
    "DB_NDH23": ("B_ND-H", "D_ND-H23"),
    "DB_H34": ("B_H", "D_H34"),
    "DB_K12": ("B_Ks", "D_K12"),
}
WAFFLE_AMPLITUDE_UM = 0.05
WAFFLE_ORIENTATION = "x"


def _sexagesimal_ra(ra_deg: float) -> float:
    """ESO's TEL TARG ALPHA format hhmmss.sss as a float."""
    h = (ra_deg % 360.0) / 15.0
    hh = int(h)
    mm = int((h - hh) * 60)
    ss = (h - hh - mm / 60.0) * 3600.0
    return round(hh * 10000 + mm * 100 + ss, 3)


def _sexagesimal_dec(dec_deg: float) -> float:
    sign = -1 if dec_deg < 0 else 1
    d = abs(dec_deg)
    dd = int(d)
    mm = int((d - dd) * 60)
    ss = (d - dd - mm / 60.0) * 3600.0
    return sign * round(dd * 10000 + mm * 100 + ss, 3)


def _drotator_position(altitude_deg: float) -> float:
    """Derotator position in pupil tracking (a K-mirror follows half the elevation)."""
    return round((altitude_deg / 2.0 + 21.32) % 360.0, 4)


def header_cards(f: FilePlan, readout: Readout) -> list[tuple[str, object, str]]:
    """The cards ``(keyword, value, comment)`` of a raw file's primary header (no data keywords)."""
    inst = SphereIrdis if f.arm == "IRDIS" else SphereIfs
    kw = inst.keywords
    obs = f.observation
    seq = f.calseq
    on_sky = obs is not None
    target = obs.ob.target if on_sky else None
    cards: list[tuple[str, object, str]] = []

    def add(key: str, value: object, comment: str = "") -> None:
        cards.append((key, value, comment))

    def kwd(name: str, index: int = 0) -> str:
        keys = getattr(kw, name)
        return keys[index]

    add("EXTEND", True, "FITS Extension may be present")
    add("ORIGIN", "ESO-PARANAL", "European Southern Observatory")
    add("DATE", (f.end + timedelta(seconds=2.3)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:23], "UT date when file written")
    add("TELESCOP", "ESO-VLT-U3", "ESO Telescope Name")
    add("INSTRUME", "SPHERE", "Instrument used")
    if on_sky:
        add("OBJECT", target.name if f.role != FrameKind.SKY else target.name, "Original target")
        offset = 30.0 / 3600.0 if f.sky_offset else 0.0
        add("RA", round(target.ra_deg + offset, 6), "[deg] telescope pointing, J2000")
        add("DEC", round(target.dec_deg + offset, 6), "[deg] telescope pointing, J2000")
        add("EQUINOX", 2000.0, "Standard FK5 (years)")
        add("RADESYS", "ICRS", "Coordinate reference frame")
    else:
        add("OBJECT", f.dpr_type, "Original target")
    add(kwd("exptime"), round(f.exptime, 4), "Integration time")
    add(kwd("mjd_obs"), round(f.mid_mjd() - f.exptime / 2 / 86400.0, 8), "Obs start")
    add(kwd("date_obs"), f.date_obs, "Observing date")
    add(
        "UTC",
        round(f.start.hour * 3600 + f.start.minute * 60 + f.start.second + f.start.microsecond / 1e6, 3),
        "[s] UTC at start",
    )
    if on_sky and f.lst_start_s is not None:
        add("LST", round(f.lst_start_s, 3), "[s] LST at start")
    add("PI-COI", "UNKNOWN", "PI-COI name")
    add("OBSERVER", "UNKNOWN", "Name of observer")
    add("ARCFILE", f.name, "Archive File Name")
    origfile = f"SPHERE_{f.arm}_{'OBS' if on_sky else 'CAL'}{f.start.timetuple().tm_yday:03d}_{f.expno:04d}.fits"
    add("ORIGFILE", origfile, "Original File Name")

    # -- observation block and template
    if on_sky:
        ob = obs.ob
        add(kwd("ob_id"), ob.ob_id, "Observation block ID")
        add(kwd("ob_name"), ob.name, "OB name")
        add(kwd("programme"), ob.programme.prog_id, "ESO program identification")
        add(kwd("pi_coi"), ob.programme.pi.name, "PI-COI name")
        add("HIERARCH ESO OBS PI-COI ID", 70000 + sum(map(ord, ob.programme.pi.username)), "ESO internal PI-COI ID")
        add(kwd("target"), target.name, "OB target name")
        add("HIERARCH ESO OBS START", (ob.start).strftime("%Y-%m-%dT%H:%M:%S"), "OB start time")
        add("HIERARCH ESO OBS TPLNO", 2, "Template number within OB")
        add("HIERARCH ESO OBS GRP", "0", "linked blocks")
    else:
        add(kwd("ob_id"), seq.ob_id, "Observation block ID")
        add(kwd("ob_name"), "Calibration", "OB name")
        add(kwd("programme"), "60.A-9800(J)", "ESO program identification")
        add(kwd("pi_coi"), "UNKNOWN", "PI-COI name")
        add("HIERARCH ESO OBS START", f.tpl_start.strftime("%Y-%m-%dT%H:%M:%S"), "OB start time")
        add("HIERARCH ESO OBS TPLNO", 1, "Template number within OB")
    add("HIERARCH ESO TPL ID", f.tpl_id, "Template signature ID")
    add("HIERARCH ESO TPL NAME", f.tpl_id.replace("SPHERE_", "").replace("_", " "), "Template name")
    add(kwd("template_start"), f.tpl_start.strftime("%Y-%m-%dT%H:%M:%S"), "TPL start time")
    add(kwd("template_expno"), f.expno, "Exposure number within template")
    add(kwd("template_nexp"), f.nexp, "Number of exposures within template")

    # -- data product
    add(kwd("category"), f.dpr_catg, "Observation category")
    add(kwd("type"), f.dpr_type, "Observation type")
    add(kwd("technique"), f.dpr_tech, "Observation technique")
    add("HIERARCH ESO SEQ ARM", f.arm, "Name of the arm used")

    # -- detector
    add(kwd("dit"), round(f.dit, 6), "Integration Time")
    add(kwd("ndit"), f.ndit, "# of Sub-Integrations")
    add("HIERARCH ESO DET SEQ1 EXPTIME", round(f.exptime, 5), "Exposure time")
    add("HIERARCH ESO DET READ CURNAME", "Nondest" if f.arm == "IRDIS" else "Double_RdRstRd", "Used readout mode name")
    add("HIERARCH ESO DET CHIP ID", "H2RG-IRDIS" if f.arm == "IRDIS" else "H2RG-IFS", "Detector chip identification")
    for key, value, comment in readout.header_cards():
        add(key, value, comment)

    # -- instrument set-up
    if f.arm == "IRDIS":
        broad, dual = IRDIS_FILTER_ELEMENTS.get(f.filter, ("B_H", "D_H23"))
        add(kwd("mode"), "DBI", "Instrument mode")
        combination = obs.mode_combination if on_sky else "IRDIS_DBI"
        add("HIERARCH ESO INS4 MODE", combination, "Instrument mode")
        add("HIERARCH ESO INS1 FILT NAME", broad, "Filter name")
        add("HIERARCH ESO INS1 OPTI2 NAME", dual, "Optical element name")
    else:
        add(kwd("mode"), f.filter, "IFS mode")
        combination = obs.mode_combination if on_sky else ("IRDIFS" if f.filter == "OBS_YJ" else "IRDIFS_EXT")
        add("HIERARCH ESO INS4 MODE", combination, "Instrument mode")
        add("HIERARCH ESO INS2 OPTI2 NAME", "PRI_YJ" if f.filter == "OBS_YJ" else "PRI_YJH", "Prism")
    irdis_filter = f.filter if f.arm == "IRDIS" else ("DB_H23" if f.filter == "OBS_YJ" else "DB_K12")
    add("HIERARCH ESO INS COMB IFLT", irdis_filter, "IRDIS filter combination")
    add("HIERARCH ESO INS COMB ICOR", f.coronagraph, "Coronagraph combination")
    add("HIERARCH ESO INS COMB POLA", "", "Polarisation combination")
    add("HIERARCH ESO INS4 COMB ROT", "PUPIL" if on_sky else "FIELD", "Rotation combination")
    add(SphereIrdis.keywords.neutral_density[0], f.nd if f.nd != "ND_0.0" else "OPEN", "Neutral density combination")
    add("HIERARCH ESO INS4 SHUT ST", f.role != FrameKind.DARK, "Shutter open")
    add("HIERARCH ESO INS1 DITH POSX", 0.0, "Dithering position X")
    add("HIERARCH ESO INS1 DITH POSY", 0.0, "Dithering position Y")
    drot_mode_key = kw.derotator_mode[0]
    add(drot_mode_key, "ELEV" if on_sky else "STAT", "Derotator mode")
    # ESO renamed INS4 DROT2 BEGIN into INS4 DROT2 START in June 2021: the keyword map lists both.
    begin_key, start_key = kw.derotator_start[0], kw.derotator_start[1]
    drot_key = begin_key if f.night < DROT2_RENAME_DATE else start_key
    add(
        drot_key,
        _drotator_position(f.altitude_start if on_sky and f.altitude_start is not None else 90.0),
        "[deg] Derotator position at start",
    )
    if on_sky:
        add("HIERARCH ESO INS4 DROT2 RA", _sexagesimal_ra(target.ra_deg), "~RA for derotator (hhmmss.s)")
        add("HIERARCH ESO INS4 DROT2 DEC", _sexagesimal_dec(target.dec_deg), "~DEC for derotator (ddmmss.s)")

    # -- sequencer: coronagraph centre guess, waffle, observation types
    if on_sky and f.role.is_science_sequence:
        if f.arm == "IRDIS" and obs.seq_coro is not None:
            add("HIERARCH ESO SEQ CORO XC", obs.seq_coro[0], "Coronagraph center X (pixel)")
            add("HIERARCH ESO SEQ CORO YC", obs.seq_coro[1], "Coronagraph center Y (pixel)")
            add(
                "HIERARCH ESO SEQ CORO DATE",
                (obs.ob.start + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S"),
                "Coronagraph centring date",
            )
            add("HIERARCH ESO SEQ CORO CPI_ND", obs.flux_nd, "ND used for centring")
        add("HIERARCH ESO OCS WAFFLE AMPL", WAFFLE_AMPLITUDE_UM, "[um] Waffle amplitude")
        add("HIERARCH ESO OCS WAFFLE ORIENT", WAFFLE_ORIENTATION, "Waffle orientation")
        add("HIERARCH ESO OCS OBSTYPE LIST", "S C O C S K", "Observation types sequence")

    # -- telescope and ambient
    add("HIERARCH ESO TEL ID", "UT3", "Telescope ID")
    add("HIERARCH ESO TEL GEOLAT", PARANAL_LATITUDE_DEG, "[deg] Tel geo latitude (+=North)")
    add("HIERARCH ESO TEL GEOLON", PARANAL_LONGITUDE_DEG, "[deg] Tel geo longitude (+=East)")
    add("HIERARCH ESO TEL GEOELEV", PARANAL_ELEVATION_M, "[m] Elevation above sea level")
    if on_sky:
        add("HIERARCH ESO TEL TARG ALPHA", _sexagesimal_ra(target.ra_deg), "Alpha coordinate for the target")
        add("HIERARCH ESO TEL TARG DELTA", _sexagesimal_dec(target.dec_deg), "Delta coordinate for the target")
        add("HIERARCH ESO TEL TARG PMA", round(target.pm_ra_mas_yr / 1000.0, 5), "[arcsec/yr] Proper motion alpha")
        add("HIERARCH ESO TEL TARG PMD", round(target.pm_dec_mas_yr / 1000.0, 5), "[arcsec/yr] Proper motion delta")
        add("HIERARCH ESO TEL ALT", round(f.altitude_start, 3), "[deg] Alt angle at start")
        add(kwd("airmass_start"), round(f.airmass_start, 3), "Airmass at start")
        add(kwd("airmass_end"), round(f.airmass_end, 3), "Airmass at end")
        add(kwd("parang_start"), round(f.parang_start, 3), "Parallactic angle at start (deg)")
        add(kwd("parang_end"), round(f.parang_end, 3), "Parallactic angle at end (deg)")
        add(kwd("seeing_start"), f.seeing_start, "Observatory Seeing queried from AS")
        add(kwd("seeing_end"), f.seeing_end, "Observatory Seeing queried from AS")
        add(kwd("tau0"), f.tau0_s, "Average coherence time")
        add(kwd("wind_speed"), f.wind_ms, "[m/s] Observatory ambient wind speed")
        add("HIERARCH ESO TEL AMBI WINDDIR", f.wind_dir_deg, "[deg] Observatory ambient wind direction")
    else:
        # daytime: the DIMM does not run, ESO writes -1
        add(kwd("seeing_start"), -1.0, "Observatory Seeing queried from AS")
        add(kwd("seeing_end"), -1.0, "Observatory Seeing queried from AS")
    return cards


def build_header(f: FilePlan, readout: Readout) -> fits.Header:
    """The primary header of one raw file as an astropy Header (data keywords excluded)."""
    header = fits.Header()
    for key, value, comment in header_cards(f, readout):
        header[key] = (value, comment)
    return header


# -- a small, strict FITS writer (astropy's card machinery dominates the time of tiny files) ------------
def _format_value(value: object) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "T" if value else "F"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        text = repr(float(value)).upper()
        if "." not in text and "E" not in text and "INF" not in text and "NAN" not in text:
            text += ".0"
        if len(text) > 20:
            text = f"{float(value):.15G}"
            if "." not in text and "E" not in text:
                text += ".0"
        return text
    text = str(value).replace("'", "''")
    return "'" + text.ljust(8) + "'"


def format_card(key: str, value: object, comment: str = "") -> str:
    """One 80-character FITS card (fixed format for standard keys, ESO HIERARCH otherwise)."""
    val = _format_value(value)
    if key.startswith("HIERARCH "):
        head = f"{key} = {val}"
    else:
        if len(key) > 8:
            raise ValueError(f"keyword {key!r} longer than 8 characters without HIERARCH")
        head = f"{key:<8}= " + (val if val.startswith("'") else val.rjust(20))
    if len(head) > 80:
        raise ValueError(f"card too long: {head!r}")
    if comment and len(head) + 3 < 80:
        head = f"{head} / {comment}"
    return head[:80].ljust(80)


def fits_bytes(cards: list[tuple[str, object, str]], data: np.ndarray) -> bytes:
    """A complete single-HDU FITS file: uint16 data stored as BITPIX 16 with BZERO 32768."""
    if data.dtype != np.uint16:
        raise TypeError("raw data must be uint16")
    head = [
        format_card("SIMPLE", True, "conforms to FITS standard"),
        format_card("BITPIX", 16, "array data type"),
        format_card("NAXIS", data.ndim, "number of array dimensions"),
    ]
    for axis, size in enumerate(reversed(data.shape), start=1):
        head.append(format_card(f"NAXIS{axis}", int(size)))
    for key, value, comment in cards:
        head.append(format_card(key, value, comment))
    head.append(format_card("BSCALE", 1))
    head.append(format_card("BZERO", 32768))
    head.append("END".ljust(80))
    text = "".join(head)
    text += " " * (-len(text) % 2880)
    payload = (data.view(np.int16) ^ np.int16(-32768)).astype(">i2").tobytes()
    payload += b"\0" * (-len(payload) % 2880)
    return text.encode("ascii") + payload
