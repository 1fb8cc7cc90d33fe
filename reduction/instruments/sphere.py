"""VLT/SPHERE: the IRDIS and IFS arms.

Keywords are those of the ESO SPHERE raw data (SPHERE User Manual, ESO
VLT-MAN-SPH-14690-0430; a real IRDIS DBI header is quoted in DESIGN.md).
Astrometric constants: Maire et al. 2016, SPIE 9908, 990834 ("SPHERE IRDIS and
IFS astrometric strategy and calibration"), as used by the SPHERE Data Center
and the open ``vlt-sphere`` pipeline.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import ClassVar

from astropy.io.fits import Header

from reduction.conventions import PARANAL_ELEVATION_M, PARANAL_LATITUDE_DEG, PARANAL_LONGITUDE_DEG

from .base import Constant, Filter, FrameKind, Instrument, KeywordMap

_MAIRE2016 = "Maire et al. 2016, SPIE 9908, 990834"
_SPHERE_MANUAL = "ESO SPHERE User Manual (VLT-MAN-SPH-14690-0430), filter tables"
_CLAUDI2008 = "Claudi et al. 2008, SPIE 7014, 70143E (SPHERE IFS: lenslet array sampling)"
_VIGAN2020 = "Vigan 2020, vlt-sphere (ascl:2009.002), IFS.py wave_lasers"
_SIMULATED_IFS = "HC-DC simulated IFS, reduction.simulator.ifs (not the real instrument)"

#: ESO ``DPR TYPE`` -> kind, shared by both arms. Types not listed are OTHER.
SPHERE_DPR_TYPES: dict[str, FrameKind] = {
    "OBJECT": FrameKind.SCIENCE,
    "OBJECT,CENTER": FrameKind.CENTER,
    "OBJECT,FLUX": FrameKind.FLUX,
    "OBJECT,AO": FrameKind.AO,
    "SKY": FrameKind.SKY,
    "DARK": FrameKind.DARK,
    "DARK,BACKGROUND": FrameKind.BACKGROUND,
    "FLAT,LAMP": FrameKind.FLAT,
    "FLAT,SKY": FrameKind.FLAT,
    "LAMP,WAVE": FrameKind.WAVE,
    "WAVE,LAMP": FrameKind.WAVE,
    "SPECPOS,LAMP": FrameKind.SPECPOS,
    "LAMP,DISTORT": FrameKind.DISTORTION,
}


class _Sphere(Instrument):
    """What both SPHERE arms share: site, DPR vocabulary, derotator keywords."""

    telescope: ClassVar[str] = "VLT-UT3"
    site_latitude_deg = PARANAL_LATITUDE_DEG
    site_longitude_deg = PARANAL_LONGITUDE_DEG
    site_elevation_m = PARANAL_ELEVATION_M
    #: Chile standard time; nights run from local noon to local noon.
    utc_offset_hours: ClassVar[float] = -4.0
    arm: ClassVar[str]
    pupil_offset_deg = Constant(135.99, 0.11, "deg", _MAIRE2016 + " (pupil-tracking offset, INS4 DROT2 MODE = ELEV)")
    true_north_deg = Constant(-1.75, 0.08, "deg", _MAIRE2016)
    #: The anamorphism of SPHERE's common path, "0.60 +- 0.02 % between the horizontal and vertical
    #: directions of the detector, i.e. 6 mas at 1 arcsec", common to IRDIS and IFS (Maire et al. 2016).
    #: HC-DC does not correct it: it is counted as an uncertainty of its full amplitude.
    distortion = Constant(0.0060, 0.0002, "fraction", _MAIRE2016 + " (anamorphism, not corrected by HC-DC)")

    @classmethod
    def matches(cls, header: Header) -> bool:
        return (
            str(header.get("INSTRUME", "")).strip().upper() == "SPHERE"
            and str(header.get("HIERARCH ESO SEQ ARM", "")).strip().upper() == cls.arm
        )

    @classmethod
    def frame_kind(cls, category: str, type_: str, technique: str, header: Header) -> FrameKind:
        if category == "ACQUISITION":
            return FrameKind.ACQUISITION
        return SPHERE_DPR_TYPES.get(type_.replace(" ", ""), FrameKind.OTHER)

    @classmethod
    def coronagraph_of(cls, header: Header, path: str) -> str | None:
        value = cls._opt_str(header, "coronagraph", path)
        # "N_NS_CLEAR"/"CLEAR": no coronagraph in the beam.
        if value is None or "CLEAR" in value.upper():
            return None
        return value


#: Neutral densities of SPHERE's common path (INS4 COMB IND / FILT2): nominal optical density.
NEUTRAL_DENSITY_OD: dict[str, float] = {"OPEN": 0.0, "ND_0.0": 0.0, "ND_1.0": 1.0, "ND_2.0": 2.0, "ND_3.5": 3.5}
#: Chromatic slope of the transmission (per µm, relative, around 1.6 µm). An approximation of the
#: tabulated CPI ND curves (SPHERE User Manual; vlt-sphere data/SPHERE_CPI_ND.txt), which are not in
#: this repository: replace by the tabulated curve when available.
#: Relative uncertainty of a neutral density's transmission as modelled here (nominal density and
#: linear chromatic slope). No uncertainty is published with the SPHERE CPI ND curves; 5 % is the
#: size of the slope correction across an IRDIS band pair for ND_2.0, i.e. what an error in the
#: linear approximation of the tabulated curve could be. It enters a contrast's photometric error
#: only when the FLUX frames and the science frames were taken through different densities.
NEUTRAL_DENSITY_REL_UNCERTAINTY = 0.05
NEUTRAL_DENSITY_SLOPE_PER_UM: dict[str, float] = {
    "OPEN": 0.0,
    "ND_0.0": 0.0,
    "ND_1.0": 0.06,
    "ND_2.0": 0.11,
    "ND_3.5": 0.18,
}


def neutral_density_transmission(name: str | None, wavelength_um: float) -> float:
    """Transmission of a SPHERE neutral density at ``wavelength_um`` (1 for none/OPEN).

    Accepts ESO's spellings (``ND_1.0``, ``ND_N_1.0``...).
    """
    if name is None or name.strip() == "":
        return 1.0
    key = name.strip().upper().replace("ND_N_", "ND_")
    if key not in NEUTRAL_DENSITY_OD:
        raise ValueError(f"unknown neutral density {name!r}; known: {', '.join(NEUTRAL_DENSITY_OD)}")
    od = NEUTRAL_DENSITY_OD[key]
    return float(10 ** (-od) * (1.0 + NEUTRAL_DENSITY_SLOPE_PER_UM[key] * (wavelength_um - 1.6)))


class SphereIrdis(_Sphere):
    """SPHERE's InfraRed Dual-band Imager and Spectrograph (Dohlen et al. 2008)."""

    name: ClassVar[str] = "SPHERE-IRDIS"
    arm: ClassVar[str] = "IRDIS"
    keywords: ClassVar[KeywordMap] = KeywordMap(
        mode=("HIERARCH ESO INS1 MODE",),
        filter=("HIERARCH ESO INS COMB IFLT",),
        coronagraph=("HIERARCH ESO INS COMB ICOR",),
        neutral_density=("HIERARCH ESO INS4 COMB IND", "HIERARCH ESO INS4 FILT2 NAME"),
        derotator_mode=("HIERARCH ESO INS4 DROT2 MODE",),
        # renamed from BEGIN to START in June 2021: both are read.
        derotator_start=("HIERARCH ESO INS4 DROT2 BEGIN", "HIERARCH ESO INS4 DROT2 START"),
    )
    #: Mean over the DBI filters; per-filter values in :attr:`pixel_scales_mas`.
    pixel_scale_mas = Constant(12.255, 0.009, "mas/px", _MAIRE2016 + " (H2)")
    pixel_scales_mas: ClassVar[dict[str, Constant]] = {
        "DB_Y23": Constant(12.283, 0.010, "mas/px", _MAIRE2016),
        "DB_J23": Constant(12.261, 0.009, "mas/px", _MAIRE2016),
        "DB_H23": Constant(12.255, 0.009, "mas/px", _MAIRE2016),
        "DB_NDH23": Constant(12.255, 0.009, "mas/px", _MAIRE2016),
        "DB_H34": Constant(12.250, 0.009, "mas/px", _MAIRE2016),
        "DB_K12": Constant(12.267, 0.009, "mas/px", _MAIRE2016),
    }
    #: Full detector, both halves side by side (2 x 1024 x 1024).
    detector_shape: ClassVar[tuple[int, int]] = (1024, 2048)
    filters = MappingProxyType(
        {
            "DB_Y23": Filter("DB_Y23", (1.022, 1.076), (0.049, 0.050), _SPHERE_MANUAL),
            "DB_J23": Filter("DB_J23", (1.190, 1.273), (0.042, 0.046), _SPHERE_MANUAL),
            "DB_H23": Filter("DB_H23", (1.593, 1.667), (0.052, 0.054), _SPHERE_MANUAL),
            "DB_NDH23": Filter("DB_NDH23", (1.593, 1.667), (0.052, 0.054), _SPHERE_MANUAL),
            "DB_H34": Filter("DB_H34", (1.667, 1.733), (0.054, 0.057), _SPHERE_MANUAL),
            "DB_K12": Filter("DB_K12", (2.110, 2.251), (0.102, 0.109), _SPHERE_MANUAL),
        }
    )

    #: Position of the star in the second DBI half relative to the first (x, y) in pixels:
    #: the halves are 1024 px apart; the residual offset (< ~20 px) is measured on the data.
    dbi_band_offset_px: ClassVar[tuple[float, float]] = (1024.0, 0.0)

    @classmethod
    def pixel_scale_arcsec(cls, filter_name: str | None = None) -> float:
        return cls.pixel_scale_constant(filter_name).value / 1000.0

    @classmethod
    def pixel_scale_constant(cls, filter_name: str | None = None) -> Constant:
        return cls.pixel_scales_mas.get(filter_name or "", cls.pixel_scale_mas)

    @classmethod
    def readout_windows(cls, header) -> list[tuple[int, int, int, int]]:
        """Detector windows ``(x0, y0, nx, ny)`` (0-based) in the order they sit in the data.

        ``DET WINDOWS``/``DET WINk STRX/STRY/NX/NY`` when written; otherwise the two
        1024 x 1024 halves of the full detector (one per DBI band).
        """
        count = header.get("HIERARCH ESO DET WINDOWS")
        if count is None:
            return [(0, 0, 1024, 1024), (1024, 0, 1024, 1024)]
        windows = []
        for k in range(1, int(count) + 1):
            try:
                windows.append(
                    (
                        int(header[f"HIERARCH ESO DET WIN{k} STRX"]) - 1,
                        int(header[f"HIERARCH ESO DET WIN{k} STRY"]) - 1,
                        int(header[f"HIERARCH ESO DET WIN{k} NX"]),
                        int(header[f"HIERARCH ESO DET WIN{k} NY"]),
                    )
                )
            except KeyError as exc:
                raise KeyError(f"HIERARCH ESO DET WIN{k}: incomplete window description ({exc})") from exc
        return windows


class SphereIfs(_Sphere):
    """SPHERE's Integral Field Spectrograph (Claudi et al. 2008)."""

    name: ClassVar[str] = "SPHERE-IFS"
    arm: ClassVar[str] = "IFS"
    keywords: ClassVar[KeywordMap] = KeywordMap(
        mode=("HIERARCH ESO INS2 COMB IFS",),
        filter=("HIERARCH ESO INS2 COMB IFS",),
        coronagraph=("HIERARCH ESO INS COMB ICOR",),
        neutral_density=("HIERARCH ESO INS4 COMB IND", "HIERARCH ESO INS4 FILT2 NAME"),
        derotator_mode=("HIERARCH ESO INS4 DROT2 MODE",),
        derotator_start=("HIERARCH ESO INS4 DROT2 BEGIN", "HIERARCH ESO INS4 DROT2 START"),
    )
    pixel_scale_mas = Constant(7.46, 0.02, "mas/px", _MAIRE2016)
    #: IFS field is rotated with respect to IRDIS; added to the pupil offset.
    ifs_offset_deg: ClassVar[Constant] = Constant(-100.48, 0.10, "deg", _MAIRE2016)

    @classmethod
    def north_uncertainty_deg(cls) -> float:
        """True north, pupil offset and the IFS field's offset, in quadrature."""
        terms = (cls.true_north_deg, cls.pupil_offset_deg, cls.ifs_offset_deg)
        return float(sum(c.uncertainty**2 for c in terms) ** 0.5)

    detector_shape: ClassVar[tuple[int, int]] = (2048, 2048)
    filters = MappingProxyType(
        {
            "OBS_YJ": Filter("OBS_YJ", (0.957, 1.329), (0.0095,), _SPHERE_MANUAL + " (39 channels)"),
            "OBS_H": Filter("OBS_H", (0.957, 1.636), (0.018,), _SPHERE_MANUAL + " (39 channels, YJH)"),
        }
    )

    #: Spectral channels of a reduced cube, evenly spaced over the mode's range (the DRH's 39).
    n_channels: ClassVar[int] = 39
    #: Lenslet pitch on the sky: the field is sampled at this scale before the cubes are resampled
    #: to ``pixel_scale_mas``.
    lenslet_scale_mas: ClassVar[Constant] = Constant(12.25, 0.05, "mas", _CLAUDI2008)
    #: Wavelengths of the calibration lasers lit by LAMP,WAVE (the fourth only in YJH mode).
    laser_lines_um: ClassVar[tuple[float, ...]] = (0.98772, 1.12371, 1.30937, 1.54507)
    laser_lines_source: ClassVar[str] = _VIGAN2020 + " (IFS wavelength calibration lasers, nm in the code)"
    #: The lenslet lattice on the detector as the pre-processing models it (a square lattice of
    #: this pitch rotated so that the vertical spectra fall between their neighbours, and spectra
    #: of about ``n_channels`` pixels). This is the geometry of HC-DC's simulated IFS
    #: (reduction.simulator.ifs); the real IFS lattice is hexagonal (Claudi et al. 2008), which
    #: the spectra-position fit detects and refuses. The fit starts from these and refines them.
    lenslet_pitch_px: ClassVar[Constant] = Constant(14.142, 0.5, "px", _SIMULATED_IFS)
    lattice_rotation_deg: ClassVar[Constant] = Constant(18.435, 1.0, "deg", _SIMULATED_IFS)

    @classmethod
    def derotation_offset_deg(cls) -> float:
        return cls.pupil_offset_deg.value + cls.ifs_offset_deg.value + cls.true_north_deg.value

    @classmethod
    def channel_wavelengths_um(cls, mode: str) -> tuple[float, ...]:
        """Central wavelengths of the reduced cube's channels in ``mode`` (OBS_YJ, OBS_H)."""
        if mode not in cls.filters:
            raise ValueError(
                f"unknown IFS mode {mode!r}; modes: {', '.join(cls.filters)} (keyword HIERARCH ESO INS2 COMB IFS)"
            )
        import numpy as np

        lo, hi = cls.filters[mode].wavelengths_um
        return tuple(float(w) for w in np.linspace(lo, hi, cls.n_channels))

    @classmethod
    def laser_lines_in(cls, mode: str) -> tuple[float, ...]:
        """The calibration laser lines that fall in ``mode``'s range."""
        lo, hi = cls.filters[mode].wavelengths_um
        return tuple(w for w in cls.laser_lines_um if lo <= w <= hi)
