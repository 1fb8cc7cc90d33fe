"""Units, UCDs and meanings of the catalog's columns, written once.

Every column of every table in :mod:`hcdc.catalog.models` resolves here to a :class:`ColumnInfo`: its unit
(an astropy unit string), or the mark that it is a plain number (``dimensionless``: ratios, counts, S/N) or
not a quantity at all (identifiers, names, dates, text, flags, JSON); an IVOA UCD where one fits; and a
one-line description. The documentation's catalog reference is generated from this module, and the tests
check that every column resolves and that the exports (:mod:`hcdc.tables`, :mod:`hcdc.dashboards.exports`)
state the same units as the catalog for the columns they share.

Units follow the columns' names (``*_deg`` degrees, ``*_arcsec``, ``*_mas``, ``*_mas_yr``, ``*_um``, ``*_s``,
``*_ms``, ``*_px``...), so a new column named that way needs no entry; :data:`OVERRIDES` holds the
exceptions and the descriptions, :data:`UCDS` the UCDs (IVOA UCD1+ list, version 1.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the marks of columns that carry no unit
DIMENSIONLESS = "dimensionless"
NOT_A_QUANTITY = "not a quantity"


@dataclass(frozen=True)
class ColumnInfo:
    """What a catalog column holds."""

    unit: str | None  #: astropy unit string; None when :attr:`kind` says why there is none
    kind: str  #: "quantity", DIMENSIONLESS or NOT_A_QUANTITY
    ucd: str | None
    description: str

    @property
    def unit_text(self) -> str:
        return self.unit if self.unit else self.kind


#: suffix -> (astropy unit, what it measures); the longest matching suffix wins
SUFFIX_UNITS: tuple[tuple[str, str, str], ...] = (
    ("_mas_yr", "mas / yr", "proper motion"),
    ("_err_mas_yr", "mas / yr", "proper-motion uncertainty"),
    ("_mas", "mas", "angle"),
    ("_arcsec", "arcsec", "angle on the sky"),
    ("_deg", "deg", "angle"),
    ("_um", "um", "wavelength"),
    ("_ms", "ms", "time"),
    ("_s", "s", "time"),
    ("_px", "pix", "position or length in pixels"),
    ("_myr", "Myr", "age"),
    ("_err_myr", "Myr", "age uncertainty"),
    ("_msun", "solMass", "mass"),
    ("_bytes", "byte", "size"),
    ("_ns", "ns", "time"),
    ("_mjd", "d", "Modified Julian Date"),
    ("_seconds", "s", "time"),
)
#: name patterns of plain numbers
DIMENSIONLESS_NAMES = re.compile(
    r"^(n_.*|.*_count|snr|fpf|contrast.*|throughput|airmass|sigma|mag|mag_err|flux|flux_err|ndit|n_frames|"
    r"attempts|version|proprietary_months|seq)$"
)

#: (table, column) -> ColumnInfo fields that the rules above do not give (units, descriptions)
OVERRIDES: dict[tuple[str, str], dict] = {
    ("catalog_state", "changes"): {
        "kind": DIMENSIONLESS,
        "description": "Write transactions committed to the catalog so far (kept by triggers on every table; "
        "the dashboards serve a stored first paint only while it has not moved)",
    },
    ("catalog_state", "token"): {
        "kind": NOT_A_QUANTITY,
        "description": "Random token drawn again with every change (a count seen before a restore never vouches "
        "for the data after it)",
    },
    ("observations", "wind_speed_ms"): {"unit": "m / s", "description": "Wind speed at the telescope"},
    ("observations", "tau0_ms"): {"unit": "ms", "description": "Coherence time tau0 (ASM)"},
    ("observations", "seeing_arcsec"): {"description": "DIMM seeing (FWHM at 0.5 um, zenith)"},
    ("observations", "airmass"): {"description": "Mean airmass of the science frames"},
    ("observations", "field_rotation_deg"): {"description": "Parallactic-angle range of the science frames"},
    ("observations", "pixel_scale_arcsec"): {"description": "Pixel scale of the observation's frames"},
    ("observations", "dit_s"): {"description": "Detector integration time of the science frames"},
    ("observations", "exposure_time_s"): {"description": "Total science exposure time"},
    ("observations", "release_date"): {
        "description": "First day the observation is public (night + proprietary period)"
    },
    ("observations", "night"): {
        "description": "Observing night (the date at the start of the night, local noon to noon)"
    },
    ("observations", "key"): {"description": "Observation key (what hcdc catalog observations prints)"},
    ("detection_limits", "sigma"): {"description": "Detection threshold of the curve (sigma)"},
    ("detection_limit_points", "contrast"): {"description": "Limiting contrast (flux ratio) at this separation"},
    ("detection_limit_points", "throughput"): {"description": "Algorithm throughput at this separation"},
    ("target_magnitudes", "mag"): {"unit": "mag", "kind": "quantity", "description": "Apparent magnitude"},
    ("target_magnitudes", "mag_err"): {"unit": "mag", "kind": "quantity", "description": "Magnitude uncertainty"},
    ("targets", "pm_ra_mas_yr"): {"description": "Proper motion in right ascension, mu_alpha cos(delta)"},
    ("targets", "pm_dec_mas_yr"): {"description": "Proper motion in declination"},
    ("targets", "parallax_mas"): {"description": "Parallax"},
    ("targets", "mass_msun"): {"description": "Stellar mass (bounds the orbital motion of bound companions)"},
    ("instruments", "site_latitude_deg"): {"description": "Geodetic latitude of the telescope"},
    ("instruments", "site_longitude_deg"): {"description": "Longitude of the telescope (east positive)"},
    ("raw_files", "mtime_ns"): {"description": "File modification time (ns since the epoch), for change detection"},
    ("raw_files", "mjd_obs"): {"unit": "d", "kind": "quantity", "description": "MJD-OBS of the file"},
    ("reductions", "science_seconds"): {"description": "Wall time of the science in the step (no I/O)"},
    ("reductions", "save_key"): {
        "description": "Key of an interactive save, sent by the PI's kernel: a repeated save is recorded once"
    },
    ("external_detections", "epoch_mjd"): {"description": "Epoch of the published measurement"},
    ("spectra", "wavelength_um"): {"description": "Wavelength of the IFS channel"},
    ("spectra", "contrast"): {
        "description": "Flux ratio to the star in the channel (1-FWHM apertures; the ASDI self-subtraction fitted)"
    },
    ("spectra", "contrast_err"): {"description": "1-sigma uncertainty of the channel's contrast"},
    ("spectra", "snr"): {"description": "S/N of the detection in the channel"},
    ("observation_calibrations", "for_dit_s"): {"description": "The science DIT this calibration serves"},
}

#: (table, column) -> UCD
UCDS: dict[tuple[str, str], str] = {
    ("targets", "ra_deg"): "pos.eq.ra;meta.main",
    ("targets", "dec_deg"): "pos.eq.dec;meta.main",
    ("targets", "pm_ra_mas_yr"): "pos.pm;pos.eq.ra",
    ("targets", "pm_dec_mas_yr"): "pos.pm;pos.eq.dec",
    ("targets", "pm_ra_err_mas_yr"): "stat.error;pos.pm;pos.eq.ra",
    ("targets", "pm_dec_err_mas_yr"): "stat.error;pos.pm;pos.eq.dec",
    ("targets", "parallax_mas"): "pos.parallax",
    ("targets", "parallax_err_mas"): "stat.error;pos.parallax",
    ("targets", "name"): "meta.id;meta.main",
    ("targets", "spectral_type"): "src.spType",
    ("targets", "age_myr"): "time.age",
    ("targets", "mass_msun"): "phys.mass",
    ("target_magnitudes", "mag"): "phot.mag",
    ("target_magnitudes", "mag_err"): "stat.error;phot.mag",
    ("observations", "night"): "time.epoch;obs",
    ("observations", "date_start"): "time.start;obs.exposure",
    ("observations", "date_end"): "time.end;obs.exposure",
    ("observations", "dit_s"): "time.duration;obs.exposure",
    ("observations", "exposure_time_s"): "time.duration;obs.exposure",
    ("observations", "seeing_arcsec"): "instr.obsty.seeing",
    ("observations", "airmass"): "obs.airMass",
    ("observations", "filter"): "meta.id;instr.filter",
    ("observations", "field_rotation_deg"): "pos.posAng;obs.param",
    ("observations", "pixel_scale_arcsec"): "instr.scale",
    ("observations", "release_date"): "time.release",
    ("detections", "sep_arcsec"): "pos.angDistance",
    ("detections", "sep_err_arcsec"): "stat.error;pos.angDistance",
    ("detections", "pa_deg"): "pos.posAng",
    ("detections", "pa_err_deg"): "stat.error;pos.posAng",
    ("detections", "snr"): "stat.snr",
    ("detections", "fpf"): "stat.probability",
    ("detections", "contrast"): "phot.flux;arith.ratio",
    ("detections", "contrast_err"): "stat.error;phot.flux;arith.ratio",
    ("detections", "wavelength_um"): "em.wl",
    ("detections", "release_date"): "time.release",
    ("detection_limits", "wavelength_um"): "em.wl",
    ("detection_limit_points", "sep_arcsec"): "pos.angDistance",
    ("detection_limit_points", "contrast"): "phot.flux;arith.ratio;stat.max",
    ("external_detections", "sep_arcsec"): "pos.angDistance",
    ("external_detections", "pa_deg"): "pos.posAng",
    ("external_detections", "epoch_mjd"): "time.epoch",
    ("instruments", "pixel_scale_mas"): "instr.scale",
    ("spectra", "wavelength_um"): "em.wl",
    ("spectra", "contrast"): "phot.flux;arith.ratio",
    ("spectra", "contrast_err"): "stat.error;phot.flux;arith.ratio",
    ("spectra", "snr"): "stat.snr",
}


#: words of column names spelt out for the descriptions
WORDS = {
    "ra": "right ascension (ICRS)",
    "dec": "declination (ICRS)",
    "pm": "proper motion",
    "pa": "position angle (east of north)",
    "sep": "separation from the star",
    "parang": "parallactic angle",
    "n": "number of",
    "ob": "OB",
    "dit": "detector integration time",
    "ndit": "number of integrations (NDIT)",
    "dpr": "DPR",
    "catg": "category",
    "tech": "technique",
    "sha256": "SHA-256",
    "mjd": "MJD",
    "obs": "of the observation",
    "fwhm": "FWHM",
    "snr": "S/N",
    "fpf": "false-positive fraction",
}


def _describe(column: str) -> str:
    """A readable description from a column name (``pm_ra_err`` -> "Uncertainty (1 sigma) of: proper motion ...")."""
    tokens = column.split("_")
    error = "err" in tokens
    words = " ".join(WORDS.get(t, t) for t in tokens if t != "err")
    text = f"uncertainty (1 sigma) of the {words}" if error else words
    return text[:1].upper() + text[1:]


def column_info(table: str, column) -> ColumnInfo:
    """The :class:`ColumnInfo` of ``table.column`` (``column``: a SQLAlchemy Column or its name)."""
    from sqlalchemy import JSON, Boolean, Date, DateTime, String, Text

    name = column if isinstance(column, str) else column.name
    sqltype = None if isinstance(column, str) else column.type
    override = OVERRIDES.get((table, name), {})
    unit = kind = None
    if name == "ob_id":
        kind, description = NOT_A_QUANTITY, "ESO observing block (OB) identifier"
    elif name == "id" or name.endswith("_id"):
        kind, description = NOT_A_QUANTITY, "Row identifier" if name == "id" else f"Row id in table {name[:-3]}s"
    elif sqltype is not None and isinstance(sqltype, (String, Text, Boolean, JSON, Date, DateTime)):
        kind = NOT_A_QUANTITY
        description = _describe(name)
    elif DIMENSIONLESS_NAMES.match(name):
        kind, description = DIMENSIONLESS, _describe(name)
    else:
        for suffix, suffix_unit, _what in sorted(SUFFIX_UNITS, key=lambda s: -len(s[0])):
            if name.endswith(suffix):
                stem = name[: -len(suffix)]
                if suffix.startswith("_err"):
                    stem += "_err"
                unit, kind, description = suffix_unit, "quantity", _describe(stem)
                break
        else:
            description = _describe(name)
    if table == "detections":  # the detections' own schema (also the products' and the exports') describes them
        from reduction.postproc.tables import DETECTION_FIELDS

        field = next((f for f in DETECTION_FIELDS if f.name == name), None)
        if field is not None:
            description = field.description
    unit = override.get("unit", unit)
    kind = override.get("kind", kind)
    if kind is None:
        raise KeyError(f"{table}.{name}: no unit rule and no entry in hcdc.catalog.units.OVERRIDES")
    return ColumnInfo(unit, kind, UCDS.get((table, name)), override.get("description", description))


def table_columns(table) -> list[tuple[str, ColumnInfo, str]]:
    """``(column name, info, SQL type)`` of every column of a SQLAlchemy ``Table``."""
    return [(c.name, column_info(table.name, c), str(c.type)) for c in table.columns]
