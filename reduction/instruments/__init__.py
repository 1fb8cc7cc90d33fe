"""Per-instrument classes and the registry that picks one for a header.

>>> from reduction.instruments import identify
>>> instrument = identify(header, path)          # doctest: +SKIP
>>> info = instrument.classify(header, path)     # doctest: +SKIP
"""

from __future__ import annotations

from astropy.io.fits import Header

from .base import (
    ClassificationError,
    Constant,
    Filter,
    FrameInfo,
    FrameKind,
    Instrument,
    KeywordMap,
    ObservingConditions,
)
from .gpi import Gpi
from .naco import Naco
from .sphere import SphereIfs, SphereIrdis

#: Every instrument HC-DC knows, in the order they are tried.
INSTRUMENTS: tuple[type[Instrument], ...] = (SphereIrdis, SphereIfs, Naco, Gpi)


def by_name(name: str) -> type[Instrument]:
    """The instrument class of a catalog name (``"SPHERE-IRDIS"``...)."""
    for instrument in INSTRUMENTS:
        if instrument.name.upper() == name.upper():
            return instrument
    known = ", ".join(i.name for i in INSTRUMENTS)
    raise KeyError(f"unknown instrument {name!r}; known: {known}")


def identify(header: Header, path: str) -> type[Instrument]:
    """The instrument that wrote ``header``.

    Raises
    ------
    ClassificationError
        No known instrument matches (``INSTRUME``/``SEQ ARM`` missing or unknown).
    """
    for instrument in INSTRUMENTS:
        if instrument.matches(header):
            return instrument
    if "INSTRUME" not in header:
        raise ClassificationError(path, "INSTRUME", "missing header keyword: cannot tell the instrument")
    value = str(header.get("INSTRUME")).strip()
    if value.upper() == "SPHERE":
        raise ClassificationError(
            path,
            "HIERARCH ESO SEQ ARM",
            f"SPHERE file with arm {header.get('HIERARCH ESO SEQ ARM')!r}: expected IRDIS or IFS",
        )
    raise ClassificationError(path, "INSTRUME", f"unknown instrument {value!r}")


def classify_header(header: Header, path: str, shape: tuple[int, ...] | None = None) -> FrameInfo:
    """Identify the instrument and classify the header in one call."""
    return identify(header, path).classify(header, path, shape)


__all__ = [
    "INSTRUMENTS",
    "ClassificationError",
    "Constant",
    "Filter",
    "FrameInfo",
    "FrameKind",
    "Gpi",
    "Instrument",
    "KeywordMap",
    "Naco",
    "ObservingConditions",
    "SphereIfs",
    "SphereIrdis",
    "by_name",
    "classify_header",
    "identify",
]
