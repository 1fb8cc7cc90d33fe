"""Small raw FITS files with real ESO keywords, written independently of the simulator.

The base header is the real SPHERE IRDIS DBI science header of 2014-12-04
quoted in DESIGN.md; tests override what they vary.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.time import Time

REAL_IRDIS_DBI_HEADER: dict[str, Any] = {
    "INSTRUME": "SPHERE",
    "TELESCOP": "ESO-VLT-U3",
    "OBJECT": "VY CMa",
    "DATE-OBS": "2014-12-04T21:06:51.0000",
    "RA": 110.742975,
    "DEC": -25.767562,
    "EXPTIME": 45.50742,
    "HIERARCH ESO DPR CATG": "SCIENCE",
    "HIERARCH ESO DPR TYPE": "OBJECT",
    "HIERARCH ESO DPR TECH": "IMAGE,DUAL,CORONOGRAPHY",
    "HIERARCH ESO SEQ ARM": "IRDIS",
    "HIERARCH ESO INS1 MODE": "DBI",
    "HIERARCH ESO INS4 MODE": "IRDIS_DBI",
    "HIERARCH ESO INS COMB ICOR": "N_ALC_YJH_S",
    "HIERARCH ESO INS COMB IFLT": "DB_J23",
    "HIERARCH ESO INS COMB POLA": "",
    "HIERARCH ESO INS1 FILT NAME": "B_J",
    "HIERARCH ESO INS1 OPTI2 NAME": "D_J23",
    "HIERARCH ESO INS4 COMB ROT": "PUPIL",
    "HIERARCH ESO INS4 COMB IND": "ND_N_1.0",
    "HIERARCH ESO INS4 DROT2 MODE": "ELEV",
    "HIERARCH ESO INS4 DROT2 BEGIN": 12.345,
    "HIERARCH ESO DET SEQ1 DIT": 0.8374640,
    "HIERARCH ESO DET SEQ1 EXPTIME": 45.50742,
    "HIERARCH ESO DET NDIT": 4,
    "HIERARCH ESO TEL PARANG START": -91.207,
    "HIERARCH ESO TEL PARANG END": -91.075,
    "HIERARCH ESO TEL AIRM START": 1.060,
    "HIERARCH ESO TEL AIRM END": 1.058,
    "HIERARCH ESO TEL AMBI FWHM START": 0.81,
    "HIERARCH ESO TEL AMBI FWHM END": 0.85,
    "HIERARCH ESO TEL AMBI TAU0": 0.0042,
    "HIERARCH ESO TEL AMBI WINDSP": 6.3,
    "HIERARCH ESO SEQ CORO XC": 476.185,
    "HIERARCH ESO SEQ CORO YC": 528.171,
    "HIERARCH ESO SEQ CORO DATE": "2014-12-04T21:06:51",
    "HIERARCH ESO SEQ CORO CPI_ND": "ND_1.0",
    "HIERARCH ESO OCS WAFFLE AMPL": 0.050,
    "HIERARCH ESO OCS WAFFLE ORIENT": "x",
    "HIERARCH ESO OCS OBSTYPE LIST": "S C O",
    "HIERARCH ESO TPL ID": "SPHERE_irdis_dbi_obs",
    "HIERARCH ESO TPL START": "2014-12-04T21:00:00",
    "HIERARCH ESO TPL EXPNO": 3,
    "HIERARCH ESO TPL NEXP": 18,
    "HIERARCH ESO OBS NAME": "OB-VYCMa-JH",
    "HIERARCH ESO OBS ID": 1001234,
    "HIERARCH ESO OBS TPLNO": 2,
    "HIERARCH ESO OBS TARG NAME": "VY CMa",
    "HIERARCH ESO OBS PROG ID": "094.D-0869(A)",
    "HIERARCH ESO OBS PI-COI NAME": "Kervella",
    "HIERARCH ESO INS1 DITH POSX": 0.0,
    "HIERARCH ESO INS1 DITH POSY": 0.0,
}

#: What a calibration template changes with respect to a science header.
CALIBRATION_TYPES = {
    "DARK": ("CALIB", "DARK", "IMAGE"),
    "DARK,BACKGROUND": ("CALIB", "DARK,BACKGROUND", "IMAGE"),
    "FLAT,LAMP": ("CALIB", "FLAT,LAMP", "IMAGE"),
    "SKY": ("SCIENCE", "SKY", "IMAGE,DUAL,CORONOGRAPHY"),
    "OBJECT,CENTER": ("SCIENCE", "OBJECT,CENTER", "IMAGE,DUAL,CORONOGRAPHY"),
    "OBJECT,FLUX": ("SCIENCE", "OBJECT,FLUX", "IMAGE,DUAL"),
    "OBJECT": ("SCIENCE", "OBJECT", "IMAGE,DUAL,CORONOGRAPHY"),
}


def sphere_header(
    dpr_type: str = "OBJECT",
    when: datetime | str | None = None,
    dit: float | None = None,
    ob_id: int | None = None,
    target: str | None = None,
    filt: str | None = None,
    template_start: str | None = None,
    **extra: Any,
) -> fits.Header:
    """A SPHERE IRDIS header of the given DPR TYPE and time (others as the real one)."""
    values = dict(REAL_IRDIS_DBI_HEADER)
    catg, type_, tech = CALIBRATION_TYPES[dpr_type]
    values["HIERARCH ESO DPR CATG"], values["HIERARCH ESO DPR TYPE"], values["HIERARCH ESO DPR TECH"] = (
        catg,
        type_,
        tech,
    )
    if when is not None:
        stamp = when if isinstance(when, str) else when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-2]
        values["DATE-OBS"] = stamp
        values["MJD-OBS"] = float(Time(stamp, scale="utc").mjd)
    if dit is not None:
        values["HIERARCH ESO DET SEQ1 DIT"] = dit
    if ob_id is not None:
        values["HIERARCH ESO OBS ID"] = ob_id
    if target is not None:
        values["HIERARCH ESO OBS TARG NAME"] = target
        values["OBJECT"] = target
    if filt is not None:
        values["HIERARCH ESO INS COMB IFLT"] = filt
    if template_start is not None:
        values["HIERARCH ESO TPL START"] = template_start
    if catg == "CALIB":
        values["OBJECT"] = type_
        values["HIERARCH ESO OBS TARG NAME"] = ""
        values["HIERARCH ESO OBS PROG ID"] = "60.A-9800(S)"  # ESO calibration plan
        values["HIERARCH ESO OBS ID"] = 200000000 + (ob_id or 0)
    values.update(extra)
    header = fits.Header()
    for key, value in values.items():
        if value is None:
            continue
        header[key] = value
    return header


def write_fits(path: Path, header: fits.Header, shape: tuple[int, ...] = (2, 8, 16), dtype=np.float32) -> Path:
    """Write a small FITS with ``header`` and zero data of ``shape`` (t, y, x)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    hdu = fits.PrimaryHDU(np.zeros(shape, dtype=dtype), header=header)
    hdu.writeto(path, overwrite=True)
    return path


def sequence(folder: Path, dpr_type: str, start: datetime, n: int, step_s: float = 60.0, **kwargs: Any) -> list[Path]:
    """``n`` files of one template starting at ``start``, ``step_s`` apart."""
    template = start.strftime("%Y-%m-%dT%H:%M:%S")
    paths = []
    for i in range(n):
        when = start + timedelta(seconds=i * step_s)
        header = sphere_header(dpr_type, when=when, template_start=template, **kwargs)
        header["HIERARCH ESO TPL EXPNO"] = i + 1
        header["HIERARCH ESO TPL NEXP"] = n
        name = f"SPHER.{when.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}.fits"
        paths.append(write_fits(folder / name, header))
    return paths
