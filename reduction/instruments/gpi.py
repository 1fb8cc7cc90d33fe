"""Gemini Planet Imager (Gemini South 2013-2022; GPI 2.0 at Gemini North).

GPI writes Gemini keywords, not ESO's: the frame type is ``OBSTYPE`` with the
observing class ``OBSCLASS``, the set-up is ``OBSMODE``/``IFSFILT``/``OCCULTER``
and exposure keywords live in the primary header while the pixels are in the
``SCI`` extension (GPI DRP documentation, "GPI keywords"). Astrometric constants:
De Rosa et al. 2020, JATIS 6, 015006.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar

from astropy.io.fits import Header

from reduction.conventions import (
    CERRO_PACHON_ELEVATION_M,
    CERRO_PACHON_LATITUDE_DEG,
    CERRO_PACHON_LONGITUDE_DEG,
)

from .base import Constant, Filter, FrameKind, Instrument, KeywordMap

_DEROSA2020 = "De Rosa et al. 2020, JATIS 6, 015006"
_GPI_DRP = "GPI Data Reduction Pipeline documentation, filter table"

GPI_OBSTYPES: dict[str, FrameKind] = {
    "OBJECT": FrameKind.SCIENCE,
    "DARK": FrameKind.DARK,
    "FLAT": FrameKind.FLAT,
    "ARC": FrameKind.WAVE,
}


class Gpi(Instrument):
    """GPI's integral field spectrograph (spectral and polarimetric modes)."""

    name: ClassVar[str] = "GPI"
    telescope: ClassVar[str] = "Gemini-South"
    site_latitude_deg = CERRO_PACHON_LATITUDE_DEG
    site_longitude_deg = CERRO_PACHON_LONGITUDE_DEG
    site_elevation_m = CERRO_PACHON_ELEVATION_M
    utc_offset_hours: ClassVar[float] = -4.0
    keywords: ClassVar[KeywordMap] = KeywordMap(
        category=("OBSCLASS",),
        type=("OBSTYPE",),
        technique=("DISPERSR",),
        date_obs=("DATE-OBS",),
        mjd_obs=("MJD-OBS",),
        target=("OBJECT",),
        ra_deg=("RA",),
        dec_deg=("DEC",),
        programme=("GEMPRGID",),
        pi_coi=("PI",),
        ob_id=None,
        ob_name=("OBSID",),
        template_start=("DATALAB",),
        template_expno=None,
        template_nexp=None,
        dit=("ITIME",),
        ndit=("COADDS",),
        exptime=("EXPTIME", "ITIME"),
        mode=("OBSMODE",),
        filter=("IFSFILT",),
        coronagraph=("OCCULTER",),
        neutral_density=("APODIZER",),
        derotator_mode=None,
        derotator_start=None,
        parang_start=("PAR_ANG",),
        parang_end=("AVPARANG",),
        airmass_start=("AIRMASS",),
        airmass_end=None,
        seeing_start=("AOSEEING",),
        seeing_end=None,
        tau0=None,
        wind_speed=("WINDSPEE",),
    )
    pixel_scale_mas = Constant(14.161, 0.021, "mas/px", _DEROSA2020)
    true_north_deg = Constant(0.45, 0.11, "deg", _DEROSA2020 + " (north angle offset)")
    pupil_offset_deg = Constant(0.0, 0.0, "deg", "GPI derotation uses AVPARANG directly (GPI DRP)")
    #: "Distortion is small, with an average positional residual of 0.26 pixels over the field of
    #: view" (Konopacky et al. 2014, SPIE 9147, 914784; GPI DRP documentation): uncorrected here.
    distortion = Constant(0.26, 0.0, "px", "Konopacky et al. 2014, SPIE 9147, 914784 (uncorrected)")
    detector_shape: ClassVar[tuple[int, int]] = (2048, 2048)
    filters = MappingProxyType(
        {
            "IFSFILT_Y_G1211": Filter("Y", (0.95, 1.14), (0.19,), _GPI_DRP),
            "IFSFILT_J_G1212": Filter("J", (1.12, 1.35), (0.23,), _GPI_DRP),
            "IFSFILT_H_G1213": Filter("H", (1.50, 1.80), (0.30,), _GPI_DRP),
            "IFSFILT_K1_G1214": Filter("K1", (1.90, 2.19), (0.29,), _GPI_DRP),
            "IFSFILT_K2_G1215": Filter("K2", (2.13, 2.40), (0.27,), _GPI_DRP),
        }
    )

    @classmethod
    def matches(cls, header: Header) -> bool:
        return str(header.get("INSTRUME", "")).strip().upper() == "GPI"

    @classmethod
    def frame_kind(cls, category: str, type_: str, technique: str, header: Header) -> FrameKind:
        if category in ("ACQ", "ACQCAL"):
            return FrameKind.ACQUISITION
        kind = GPI_OBSTYPES.get(type_, FrameKind.OTHER)
        # GPI takes unocculted PSF/satellite-spot calibrations as OBJECT with
        # the occulter out: those are the FLUX frames.
        if kind is FrameKind.SCIENCE and "BLANK" in str(header.get("OCCULTER", "")).upper():
            return FrameKind.FLUX
        return kind

    @classmethod
    def _tau0_ms(cls, header: Header, path: str) -> float | None:
        return None

    @classmethod
    def coronagraph_of(cls, header: Header, path: str) -> str | None:
        value = cls._opt_str(header, "coronagraph", path)
        if value is None or "BLANK" in value.upper():
            return None
        return value
