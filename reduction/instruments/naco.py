"""VLT/NACO (NAOS-CONICA), decommissioned 2019: ADI in L' with the L27 camera.

Keywords follow the ESO NACO raw data (NACO User Manual, VLT-MAN-ESO-14200-2761).
The calibrated L' beta Pic cube in the reference data is a NACO product.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar

from astropy.io.fits import Header

from reduction.conventions import PARANAL_ELEVATION_M, PARANAL_LATITUDE_DEG, PARANAL_LONGITUDE_DEG

from .base import Constant, Filter, FrameKind, Instrument, KeywordMap

_NACO_MANUAL = "ESO NACO User Manual (VLT-MAN-ESO-14200-2761)"

NACO_DPR_TYPES: dict[str, FrameKind] = {
    "OBJECT": FrameKind.SCIENCE,
    "PSF": FrameKind.FLUX,
    "OBJECT,FLUX": FrameKind.FLUX,
    "SKY": FrameKind.SKY,
    "DARK": FrameKind.DARK,
    "FLAT,LAMP": FrameKind.FLAT,
    "FLAT,SKY": FrameKind.FLAT,
    "LAMP,WAVE": FrameKind.WAVE,
}


class Naco(Instrument):
    """NACO with the L27 camera (the ADI set-up of the beta Pic b papers)."""

    name: ClassVar[str] = "NACO"
    telescope: ClassVar[str] = "VLT-UT4"
    site_latitude_deg = PARANAL_LATITUDE_DEG
    site_longitude_deg = PARANAL_LONGITUDE_DEG
    site_elevation_m = PARANAL_ELEVATION_M
    utc_offset_hours: ClassVar[float] = -4.0
    keywords: ClassVar[KeywordMap] = KeywordMap(
        dit=("HIERARCH ESO DET DIT",),
        mode=("HIERARCH ESO INS MODE",),
        filter=("HIERARCH ESO INS OPTI6 ID", "HIERARCH ESO INS OPTI5 ID"),
        coronagraph=("HIERARCH ESO INS OPTI1 ID",),
        neutral_density=("HIERARCH ESO INS OPTI3 ID",),
        derotator_mode=("HIERARCH ESO ADA PUPILPOS",),
        derotator_start=("HIERARCH ESO ADA POSANG",),
        parang_start=("HIERARCH ESO TEL PARANG START",),
        parang_end=("HIERARCH ESO TEL PARANG END",),
    )
    pixel_scale_mas = Constant(
        27.19, 0.05, "mas/px", "L27 camera; Absil et al. 2013, A&A 559, L12 (the value of vip_hci.config.VLT_NACO)"
    )
    #: True north of the L27 camera (Chauvin et al. 2012, A&A 542, A41: -0.45 +- 0.09 deg).
    true_north_deg = Constant(-0.45, 0.09, "deg", "Chauvin et al. 2012, A&A 542, A41")
    #: NACO pupil tracking: the derotation angle is the parallactic angle plus
    #: the ADA offset, taken as 0 (ADI papers use PARANG directly, e.g. Absil et al. 2013).
    pupil_offset_deg = Constant(0.0, 0.0, "deg", "Absil et al. 2013, A&A 559, L12 (angles = PARANG)")
    #: No distortion solution of the L27 camera is used or published in the sources above (Chauvin
    #: et al. 2012 calibrate its scale and north only): no term is counted, a known gap.
    distortion = Constant(0.0, 0.0, "fraction", "none published in Chauvin et al. 2012 / Absil et al. 2013")
    detector_shape: ClassVar[tuple[int, int]] = (1024, 1024)
    filters = MappingProxyType(
        {
            "L_prime": Filter("L_prime", (3.80,), (0.62,), _NACO_MANUAL),
            "NB_4.05": Filter("NB_4.05", (4.05,), (0.02,), _NACO_MANUAL),
            "Ks": Filter("Ks", (2.18,), (0.35,), _NACO_MANUAL),
            "H": Filter("H", (1.66,), (0.33,), _NACO_MANUAL),
        }
    )

    @classmethod
    def matches(cls, header: Header) -> bool:
        return str(header.get("INSTRUME", "")).strip().upper() in ("NAOS+CONICA", "NACO")

    @classmethod
    def frame_kind(cls, category: str, type_: str, technique: str, header: Header) -> FrameKind:
        if category == "ACQUISITION":
            return FrameKind.ACQUISITION
        return NACO_DPR_TYPES.get(type_.replace(" ", ""), FrameKind.OTHER)
