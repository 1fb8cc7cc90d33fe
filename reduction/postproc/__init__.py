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
