"""The instrument abstraction: header keywords as data, constants with sources.

An :class:`Instrument` turns a raw FITS header into a :class:`FrameInfo` (what
the frame is, when, of what, in which set-up) without opening the pixels. The
keywords it reads are declared in a :class:`KeywordMap` (data, not code), so a
new instrument or a renamed keyword is a table change, and the simulator writes
headers with the very same names.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any, ClassVar, Mapping

from astropy.io.fits import Header


class FrameKind(StrEnum):
    """What a raw frame is, independent of the instrument's vocabulary."""

    SCIENCE = "science"  #: coronagraphic/saturated science sequence (OBJECT)
    CENTER = "center"  #: star-centre frames with waffle/satellite spots (OBJECT,CENTER)
    FLUX = "flux"  #: off-axis, unsaturated PSF through a neutral density (OBJECT,FLUX)
    SKY = "sky"  #: sky background with the science set-up (SKY)
    DARK = "dark"  #: closed-shutter dark (DARK)
    BACKGROUND = "background"  #: instrument background, coronagraph in (DARK,BACKGROUND)
    FLAT = "flat"  #: lamp or sky flat (FLAT,LAMP / FLAT,SKY)
    WAVE = "wave"  #: wavelength calibration (LAMP,WAVE, GPI arc)
    SPECPOS = "specpos"  #: IFS spectra positions (SPECPOS,LAMP)
    DISTORTION = "distortion"  #: distortion grid (LAMP,DISTORT)
    AO = "ao"  #: AO telemetry (OBJECT,AO)
    ACQUISITION = "acquisition"  #: acquisition / technical frames
    OTHER = "other"  #: recognised instrument, kind not used by HC-DC

    @property
    def is_science_sequence(self) -> bool:
        """Frames that belong to an observation (not shared calibrations)."""
        return self in (FrameKind.SCIENCE, FrameKind.CENTER, FrameKind.FLUX)

    @property
    def is_calibration(self) -> bool:
        """Frames matched to observations as calibrations."""
        return self in (
            FrameKind.SKY,
            FrameKind.DARK,
            FrameKind.BACKGROUND,
            FrameKind.FLAT,
            FrameKind.WAVE,
            FrameKind.SPECPOS,
            FrameKind.DISTORTION,
        )


class ClassificationError(ValueError):
    """A header that cannot be classified, naming the file and the keyword.

    Parameters
    ----------
    path : str
        The file.
    keyword : str or None
        The header keyword that is missing or unusable (None when the problem is
        not one keyword, e.g. an unknown instrument).
    reason : str
        A sentence for a person.
    """

    def __init__(self, path: str, keyword: str | None, reason: str):
        self.path = path
        self.keyword = keyword
        self.reason = reason
        where = f" (keyword {keyword})" if keyword else ""
        super().__init__(f"{path}: {reason}{where}")


@dataclass(frozen=True)
class Constant:
    """An instrument constant with its uncertainty and where it comes from."""

    value: float
    uncertainty: float
    unit: str
    source: str


@dataclass(frozen=True)
class Filter:
    """A filter (or filter pair for dual-band imaging).

    ``wavelengths_um`` has one entry per simultaneous band (two for IRDIS DBI).
    """

    name: str
    wavelengths_um: tuple[float, ...]
    widths_um: tuple[float, ...]
    source: str


@dataclass(frozen=True)
class KeywordMap:
    """Logical field -> FITS header keyword(s), the instrument's vocabulary.

    Each value is a tuple of keywords tried in order: the first one present
    wins, so renamed keywords (``INS4 DROT2 BEGIN`` -> ``START`` in June 2021)
    are just two entries. ``None`` means the instrument has no such keyword.
    """

    category: tuple[str, ...] | None = ("HIERARCH ESO DPR CATG",)
    type: tuple[str, ...] | None = ("HIERARCH ESO DPR TYPE",)
    technique: tuple[str, ...] | None = ("HIERARCH ESO DPR TECH",)
    date_obs: tuple[str, ...] | None = ("DATE-OBS",)
    mjd_obs: tuple[str, ...] | None = ("MJD-OBS",)
    target: tuple[str, ...] | None = ("HIERARCH ESO OBS TARG NAME", "OBJECT")
    ra_deg: tuple[str, ...] | None = ("RA",)
    dec_deg: tuple[str, ...] | None = ("DEC",)
    programme: tuple[str, ...] | None = ("HIERARCH ESO OBS PROG ID",)
    pi_coi: tuple[str, ...] | None = ("HIERARCH ESO OBS PI-COI NAME",)
    ob_id: tuple[str, ...] | None = ("HIERARCH ESO OBS ID",)
    ob_name: tuple[str, ...] | None = ("HIERARCH ESO OBS NAME",)
    template_start: tuple[str, ...] | None = ("HIERARCH ESO TPL START",)
    template_expno: tuple[str, ...] | None = ("HIERARCH ESO TPL EXPNO",)
    template_nexp: tuple[str, ...] | None = ("HIERARCH ESO TPL NEXP",)
    dit: tuple[str, ...] | None = ("HIERARCH ESO DET SEQ1 DIT", "HIERARCH ESO DET DIT")
    ndit: tuple[str, ...] | None = ("HIERARCH ESO DET NDIT",)
    exptime: tuple[str, ...] | None = ("EXPTIME", "HIERARCH ESO DET SEQ1 EXPTIME")
    mode: tuple[str, ...] | None = None
    filter: tuple[str, ...] | None = None
    coronagraph: tuple[str, ...] | None = None
    neutral_density: tuple[str, ...] | None = None
    derotator_mode: tuple[str, ...] | None = None
    derotator_start: tuple[str, ...] | None = None
    parang_start: tuple[str, ...] | None = ("HIERARCH ESO TEL PARANG START",)
    parang_end: tuple[str, ...] | None = ("HIERARCH ESO TEL PARANG END",)
    airmass_start: tuple[str, ...] | None = ("HIERARCH ESO TEL AIRM START",)
    airmass_end: tuple[str, ...] | None = ("HIERARCH ESO TEL AIRM END",)
    seeing_start: tuple[str, ...] | None = ("HIERARCH ESO TEL AMBI FWHM START",)
    seeing_end: tuple[str, ...] | None = ("HIERARCH ESO TEL AMBI FWHM END",)
    tau0: tuple[str, ...] | None = ("HIERARCH ESO TEL AMBI TAU0",)
    wind_speed: tuple[str, ...] | None = ("HIERARCH ESO TEL AMBI WINDSP",)

    def lookup(self, header: Header, name: str) -> tuple[str | None, Any]:
        """Return ``(keyword, value)`` of the first keyword of ``name`` present.

        Blank strings count as absent (ESO writes empty values for unused
        elements). Returns ``(None, None)`` when none is present.
        """
        keywords = getattr(self, name)
        if not keywords:
            return None, None
        for keyword in keywords:
            if keyword in header:
                value = header[keyword]
                if isinstance(value, str):
                    value = value.strip()
                    if value == "":
                        continue
                return keyword, value
        return None, None

    def first_keyword(self, name: str) -> str | None:
        """The preferred (first) keyword of a field, used when writing headers."""
        keywords = getattr(self, name)
        return keywords[0] if keywords else None

    def field_names(self) -> list[str]:
        """All logical field names."""
        return [f.name for f in fields(self)]


@dataclass(frozen=True)
class ObservingConditions:
    """Conditions as ESO writes them (start/end averaged where both exist)."""

    seeing_arcsec: float | None = None
    tau0_ms: float | None = None
    airmass: float | None = None
    wind_speed_ms: float | None = None


@dataclass(frozen=True)
class FrameInfo:
    """What HC-DC knows about one raw file from its header alone.

    Attributes are in the catalog's units: degrees, seconds, UTC datetimes.
    ``night`` is the date of the evening the night started on (noon-to-noon,
    local civil time of the site, see :meth:`Instrument.night_of`).
    """

    path: str
    instrument: str
    kind: FrameKind
    category: str
    type: str
    technique: str
    date_obs: datetime
    mjd_obs: float
    night: date
    dit_s: float
    ndit: int
    n_frames: int
    shape: tuple[int, ...]
    target: str | None = None
    ra_deg: float | None = None
    dec_deg: float | None = None
    programme: str | None = None
    pi_coi: str | None = None
    ob_id: int | None = None
    ob_name: str | None = None
    template_start: str | None = None
    mode: str | None = None
    filter: str | None = None
    coronagraph: str | None = None
    neutral_density: str | None = None
    derotator_mode: str | None = None
    derotator_start_deg: float | None = None
    parang_start_deg: float | None = None
    parang_end_deg: float | None = None
    conditions: ObservingConditions = field(default_factory=ObservingConditions)
    exptime_s: float | None = None

    @property
    def dit_key(self) -> float:
        """DIT rounded to 0.01 s, the key darks and skies are matched on."""
        return round(self.dit_s, 2)

    def summary(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the header summary stored in the catalog."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, ObservingConditions):
                out.update({k.name: getattr(value, k.name) for k in fields(value)})
            elif isinstance(value, (datetime, date)):
                out[f.name] = value.isoformat()
            elif isinstance(value, FrameKind):
                out[f.name] = value.value
            elif isinstance(value, tuple):
                out[f.name] = list(value)
            else:
                out[f.name] = value
        return out


def _as_float(value: Any) -> float | None:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _mean_defined(*values: float | None) -> float | None:
    """Mean of the physical values; ESO writes -1 (or 0) when the DIMM/ASM is not running."""
    defined = [v for v in values if v is not None and v > 0]
    return sum(defined) / len(defined) if defined else None


class Instrument(abc.ABC):
    """One instrument (or one arm of an instrument): keywords, constants, rules.

    Subclasses declare class attributes and implement :meth:`matches` and
    :meth:`frame_kind`; everything else is driven by :attr:`keywords`.
    """

    #: Catalog name, e.g. ``"SPHERE-IRDIS"``.
    name: ClassVar[str]
    telescope: ClassVar[str]
    site_latitude_deg: ClassVar[float]
    site_longitude_deg: ClassVar[float]
    site_elevation_m: ClassVar[float]
    #: Hours to add to UTC for local civil-ish time; nights run noon to noon local.
    utc_offset_hours: ClassVar[float]
    keywords: ClassVar[KeywordMap]
    pixel_scale_mas: ClassVar[Constant]
    true_north_deg: ClassVar[Constant]
    pupil_offset_deg: ClassVar[Constant]
    #: Distortion left in HC-DC's reduced data: unit ``fraction`` (relative amplitude, e.g. an
    #: uncorrected anamorphism) or ``px`` (a positional residual); it enters the detections'
    #: calibration uncertainty (:mod:`reduction.postproc.budget`).
    distortion: ClassVar[Constant]
    detector_shape: ClassVar[tuple[int, int]]
    filters: ClassVar[Mapping[str, Filter]]
    #: Header keywords that must be present for a file to be classified at all.
    required: ClassVar[tuple[str, ...]] = ("category", "type", "date_obs", "dit")

    # -- what subclasses must say ------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def matches(cls, header: Header) -> bool:
        """True when ``header`` was written by this instrument (arm)."""

    @classmethod
    @abc.abstractmethod
    def frame_kind(cls, category: str, type_: str, technique: str, header: Header) -> FrameKind:
        """Map the instrument's own frame vocabulary to a :class:`FrameKind`."""

    # -- generic machinery ----------------------------------------------------------
    @classmethod
    def night_of(cls, when: datetime) -> date:
        """The observing night of a UTC time: the local date at the preceding noon.

        At Paranal (UTC-4 in the sense used by ESO's night logs), 2014-12-05T03:00
        UTC belongs to the night of 2014-12-04; 2014-12-05T16:30 UTC (12:30 local)
        starts the night of 2014-12-05.
        """
        local = when + timedelta(hours=cls.utc_offset_hours)
        return (local - timedelta(hours=12)).date()

    @classmethod
    def _value(cls, header: Header, name: str, path: str, required: bool = False) -> Any:
        keyword, value = cls.keywords.lookup(header, name)
        if keyword is None and required:
            wanted = cls.keywords.first_keyword(name) or name
            raise ClassificationError(path, wanted, f"missing header keyword needed to classify the frame ({name})")
        return value

    @classmethod
    def _float(cls, header: Header, name: str, path: str, required: bool = False) -> float | None:
        value = cls._value(header, name, path, required)
        if value is None:
            return None
        result = _as_float(value)
        if result is None and required:
            keyword = cls.keywords.lookup(header, name)[0]
            raise ClassificationError(path, keyword, f"value {value!r} is not a number ({name})")
        return result

    @classmethod
    def parse_date(cls, header: Header, path: str) -> datetime:
        """DATE-OBS as an aware UTC datetime."""
        raw = cls._value(header, "date_obs", path, required=True)
        try:
            parsed = datetime.fromisoformat(str(raw).replace("Z", ""))
        except ValueError as exc:
            raise ClassificationError(
                path, cls.keywords.lookup(header, "date_obs")[0], f"unreadable date {raw!r}"
            ) from exc
        return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed

    @classmethod
    def data_shape(cls, header: Header) -> tuple[int, ...]:
        """Shape of the primary data array as declared by NAXISn (numpy order)."""
        naxis = int(header.get("NAXIS", 0))
        return tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(naxis, 0, -1))

    @classmethod
    def classify(cls, header: Header, path: str, shape: tuple[int, ...] | None = None) -> FrameInfo:
        """Classify a header into a :class:`FrameInfo`.

        Raises
        ------
        ClassificationError
            A keyword needed for the classification is missing or unusable.
        """
        for name in cls.required:
            cls._value(header, name, path, required=True)
        category = str(cls._value(header, "category", path, required=True))
        type_ = str(cls._value(header, "type", path, required=True))
        technique = str(cls._value(header, "technique", path) or "")
        kind = cls.frame_kind(category.upper(), type_.upper(), technique.upper(), header)
        when = cls.parse_date(header, path)
        mjd = cls._float(header, "mjd_obs", path)
        if mjd is None:
            from astropy.time import Time

            mjd = float(Time(when).mjd)
        dit = cls._float(header, "dit", path, required=True)
        if dit is None or dit < 0:
            raise ClassificationError(path, cls.keywords.lookup(header, "dit")[0], f"invalid DIT {dit!r}")
        ndit = cls._float(header, "ndit", path)
        shape = shape if shape is not None else cls.data_shape(header)
        n_frames = shape[0] if len(shape) == 3 else (1 if len(shape) >= 2 else 0)
        ob_id = cls._float(header, "ob_id", path)
        conditions = ObservingConditions(
            seeing_arcsec=_mean_defined(
                cls._float(header, "seeing_start", path), cls._float(header, "seeing_end", path)
            ),
            tau0_ms=_mean_defined(cls._tau0_ms(header, path)),
            airmass=_mean_defined(cls._float(header, "airmass_start", path), cls._float(header, "airmass_end", path)),
            wind_speed_ms=cls._float(header, "wind_speed", path),
        )
        target = cls._value(header, "target", path)
        return FrameInfo(
            path=path,
            instrument=cls.name,
            kind=kind,
            category=category,
            type=type_,
            technique=technique,
            date_obs=when,
            mjd_obs=float(mjd),
            night=cls.night_of(when),
            dit_s=float(dit),
            ndit=int(ndit) if ndit is not None else n_frames,
            n_frames=n_frames,
            shape=tuple(shape),
            # calibration headers carry OBJECT='DARK' etc.: not a target
            target=str(target) if target is not None and (kind.is_science_sequence or kind == FrameKind.SKY) else None,
            ra_deg=cls._float(header, "ra_deg", path),
            dec_deg=cls._float(header, "dec_deg", path),
            programme=cls._opt_str(header, "programme", path),
            pi_coi=cls._opt_str(header, "pi_coi", path),
            ob_id=int(ob_id) if ob_id is not None else None,
            ob_name=cls._opt_str(header, "ob_name", path),
            template_start=cls._opt_str(header, "template_start", path),
            mode=cls.mode_of(header, path),
            filter=cls.filter_of(header, path),
            coronagraph=cls.coronagraph_of(header, path),
            neutral_density=cls._opt_str(header, "neutral_density", path),
            derotator_mode=cls._opt_str(header, "derotator_mode", path),
            derotator_start_deg=cls._float(header, "derotator_start", path),
            parang_start_deg=cls._float(header, "parang_start", path),
            parang_end_deg=cls._float(header, "parang_end", path),
            conditions=conditions,
            exptime_s=cls._float(header, "exptime", path),
        )

    @classmethod
    def _opt_str(cls, header: Header, name: str, path: str) -> str | None:
        value = cls._value(header, name, path)
        return None if value is None else str(value)

    @classmethod
    def _tau0_ms(cls, header: Header, path: str) -> float | None:
        """Coherence time in ms. ESO writes ``TEL AMBI TAU0`` in seconds."""
        tau0 = cls._float(header, "tau0", path)
        return None if tau0 is None else tau0 * 1000.0

    @classmethod
    def mode_of(cls, header: Header, path: str) -> str | None:
        """Instrument mode (e.g. ``DBI``); override for instruments that need rules."""
        return cls._opt_str(header, "mode", path)

    @classmethod
    def filter_of(cls, header: Header, path: str) -> str | None:
        """Filter (pair) name as the instrument spells it."""
        return cls._opt_str(header, "filter", path)

    @classmethod
    def coronagraph_of(cls, header: Header, path: str) -> str | None:
        """Coronagraph combination, ``None`` when none is in the beam."""
        return cls._opt_str(header, "coronagraph", path)

    @classmethod
    def pixel_scale_arcsec(cls, filter_name: str | None = None) -> float:
        """Pixel scale in arcsec per pixel (filter-dependent instruments override)."""
        return cls.pixel_scale_mas.value / 1000.0

    @classmethod
    def derotation_offset_deg(cls) -> float:
        """``pupil offset + true north``, to add to PARANG (vip-hci convention)."""
        return cls.pupil_offset_deg.value + cls.true_north_deg.value

    @classmethod
    def north_uncertainty_deg(cls) -> float:
        """1-sigma of the image's north: true north and pupil offset in quadrature."""
        return float((cls.true_north_deg.uncertainty**2 + cls.pupil_offset_deg.uncertainty**2) ** 0.5)

    @classmethod
    def pixel_scale_constant(cls, filter_name: str | None = None) -> Constant:
        """The pixel-scale constant that applies to ``filter_name`` (with its uncertainty and source)."""
        return cls.pixel_scale_mas

    @classmethod
    def constants(cls) -> dict[str, Constant]:
        """All :class:`Constant` class attributes, for documentation and tests."""
        return {name: getattr(cls, name) for name in dir(cls) if isinstance(getattr(cls, name, None), Constant)}
