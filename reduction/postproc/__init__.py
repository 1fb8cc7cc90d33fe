"""Post-processing of high-contrast imaging cubes: PSF subtraction, detection, characterisation, limits.

Angles follow vip-hci (an angle list that works with ``vip_hci.psfsub.pca``
works unchanged here), the star is at ``(ny // 2, nx // 2)``, positions are
0-based pixels (:mod:`reduction.conventions`).

PSF subtraction
    :func:`cadi`, :func:`pca_adi`, :func:`pca_annular`, :func:`pca_rdi`,
    :func:`pca_asdi` -> :class:`PsfSubtractionResult`
Detection
    :func:`snr` (one position), :func:`snr_map`, :func:`detect_candidates`
    -> :class:`DetectionResult` of :class:`Candidate`
Characterisation
    :func:`negfc_fit`, :func:`characterise` -> :class:`NegfcResult`
Detection limits
    :func:`contrast_curve` -> :class:`ContrastCurve`
Tools
    :func:`normalize_psf`, :func:`inject_companions`, :func:`recenter_cube`,
    :func:`derotate`, :func:`aperture_sums`
Steps
    :mod:`reduction.postproc.pipeline` (:func:`postprocess` and the Step classes)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers and IDEs
    from .annular import pca_annular
    from .cadi import cadi
    from .contrast import contrast_curve, noise_per_annulus, throughput
    from .detection import detect_candidates
    from .geometry import derotate
    from .inject import inject_companions
    from .negfc import characterise, negfc_fit, remove_companion
    from .pca import pca_adi
    from .photometry import aperture_sums
    from .psf import fit_gaussian, normalize_psf
    from .rdi import pca_rdi
    from .recenter import recenter_cube
    from .results import (
        AnnulusInfo,
        Candidate,
        CharacterisedCandidate,
        ContrastCurve,
        DetectionResult,
        NegfcResult,
        NormalizedPsf,
        PostprocessResult,
        PsfSubtractionResult,
        RecenterResult,
        SnrMeasurement,
        Uncertainty,
    )
    from .sdi import pca_asdi
    from .snr import snr, snr_map

#: where each public name lives: the submodules are imported on first use (PEP 562), so that a
#: light submodule (``reduction.postproc.tables``, ``.budget``) does not pull in scipy, photutils and
#: astropy.modeling for a command that only needs a table schema
_LOCATIONS = {
    "pca_annular": "annular",
    "cadi": "cadi",
    "contrast_curve": "contrast",
    "noise_per_annulus": "contrast",
    "throughput": "contrast",
    "detect_candidates": "detection",
    "derotate": "geometry",
    "inject_companions": "inject",
    "characterise": "negfc",
    "negfc_fit": "negfc",
    "remove_companion": "negfc",
    "pca_adi": "pca",
    "aperture_sums": "photometry",
    "fit_gaussian": "psf",
    "normalize_psf": "psf",
    "pca_rdi": "rdi",
    "recenter_cube": "recenter",
    "AnnulusInfo": "results",
    "Candidate": "results",
    "CharacterisedCandidate": "results",
    "ContrastCurve": "results",
    "DetectionResult": "results",
    "NegfcResult": "results",
    "NormalizedPsf": "results",
    "PostprocessResult": "results",
    "PsfSubtractionResult": "results",
    "RecenterResult": "results",
    "SnrMeasurement": "results",
    "Uncertainty": "results",
    "pca_asdi": "sdi",
    "snr": "snr",
    "snr_map": "snr",
}

__all__ = [
    "AnnulusInfo",
    "Candidate",
    "CharacterisedCandidate",
    "ContrastCurve",
    "DetectionResult",
    "NegfcResult",
    "NormalizedPsf",
    "PostprocessResult",
    "PsfSubtractionResult",
    "RecenterResult",
    "SnrMeasurement",
    "Uncertainty",
    "aperture_sums",
    "cadi",
    "characterise",
    "contrast_curve",
    "derotate",
    "detect_candidates",
    "fit_gaussian",
    "inject_companions",
    "negfc_fit",
    "noise_per_annulus",
    "normalize_psf",
    "pca_adi",
    "pca_annular",
    "pca_asdi",
    "pca_rdi",
    "recenter_cube",
    "remove_companion",
    "snr",
    "snr_map",
    "throughput",
]


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
    else:
        try:  # a submodule used as an attribute (``reduction.postproc.snr``-style access of a module)
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


#: public names that are also submodules' names (the function ``snr`` of the module ``snr``)
_SHADOWED = frozenset(name for name, module in _LOCATIONS.items() if name == module)


class _Package(types.ModuleType):
    """This package, whose public functions are never replaced by their submodule of the same name.

    Importing ``reduction.postproc.snr`` makes the import system set the package's attribute ``snr``
    to the submodule; with eager imports the ``from .snr import snr`` that followed put the function
    back. Here the function is loaded lazily, so that attribute is refused instead.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
