"""Post-processing as pipeline steps, and the whole chain for one cube.

The command line (``hcdc postprocess``), the pipeline notebooks and the
widgets all call these, with the same frozen parameter objects:

* :class:`PsfSubtractionStep` — cADI, full-frame PCA-ADI or annular PCA-ADI
  (and RDI / ASDI when given a reference cube / wavelengths);
* :class:`DetectionStep` — S/N map and candidates;
* :class:`CharacterisationStep` — NEGFC position, flux and uncertainties;
* :class:`ContrastCurveStep` — detection limits;
* :class:`PostprocessStep` — all of it for one cube (:func:`postprocess`).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from reduction.steps import Step, StepParameters

from ._checks import check_angles, check_cube, check_positive, check_psf
from ._threads import blas_single_thread
from .annular import pca_annular
from .budget import Systematics, detection_budget
from .cadi import cadi
from .contrast import contrast_curve
from .detection import THRESHOLD_KINDS, detect_candidates
from .negfc import characterise, remove_companion
from .pca import pca_adi
from .psf import normalize_psf
from .rdi import pca_rdi, select_reference_frames
from .recenter import recenter_cube
from .results import (
    AlgorithmRun,
    CharacterisedCandidate,
    ContrastCurve,
    DetectionResult,
    NegfcResult,
    NormalizedPsf,
    PostprocessResult,
    PsfSubtractionResult,
)
from .sdi import pca_asdi
from .statistical import (
    STATISTICAL_ALGORITHMS,
    StatisticalParameters,
    candidates_from_map,
    statistical_limit,
    statistical_maps,
)

log = logging.getLogger(__name__)

#: PSF subtraction, then aperture S/N; and the statistical algorithms (their own detection maps)
#: algorithms that need a reference library (frames of other stars with the same set-up)
REFERENCE_ALGORITHMS = ("rdi", "ardi")
ALGORITHMS = ("pca", "annular-pca", "cadi", *REFERENCE_ALGORITHMS, *STATISTICAL_ALGORITHMS)


@dataclass(frozen=True)
class PsfSubtractionParameters(StepParameters):
    """Parameters of the PSF subtraction.

    Attributes
    ----------
    algorithm : {'pca', 'annular-pca', 'cadi', 'rdi', 'ardi', 'andromeda', 'paco'}
        PSF subtraction: full-frame PCA, annular PCA (vip's ``pca_annular``) or classical ADI; PCA with a
        library of reference-star frames (RDI), or annular PCA whose library is the reference frames and
        the science frames beyond the rotation threshold (ARDI, vip's ``pca_annular(cube_ref=...)``),
        which need a reference library; or a statistical detection map from vip-hci: ANDROMEDA or (fast) PACO
        (``reduction.postproc.statistical``).
    ncomp : int
        Principal components (PCA algorithms).
    asize : float
        Annulus width in pixels (annular PCA).
    delta_rot : float
        Rotation threshold in FWHM (annular PCA).
    radius_int : float
        Inner radius of the first annulus (annular PCA).
    min_frames_lib : int
        Annuli with smaller libraries are skipped (annular PCA).
    scaling : str or None
        vip's pixel scaling before PCA.
    mask_center_px : float or None
        Central mask radius (full-frame PCA).
    collapse : {'median', 'mean', 'sum'}
        How the derotated residual frames are combined.
    derotation : {'fft', 'spline'}
        Frame rotation: Fourier (flux-conserving, vip's 'fft') or spline interpolation.
    n_reference_frames : int
        RDI/ARDI: the library frames best correlated with the science frames (median frame, 1-10 FWHM
        annulus) that are kept.
    """

    algorithm: str = "pca"
    ncomp: int = 20
    asize: float = 4.0
    delta_rot: float = 0.5
    radius_int: float = 0.0
    min_frames_lib: int = 2
    scaling: str | None = None
    mask_center_px: float | None = None
    collapse: str = "median"
    derotation: str = "fft"
    n_reference_frames: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        self._at_least(ncomp=1, asize=0.5, delta_rot=0, radius_int=0, min_frames_lib=1, n_reference_frames=1)


def subtract_psf(
    cube, angles, params: PsfSubtractionParameters, fwhm: float | None = None, reference_cube=None, wavelengths=None
) -> PsfSubtractionResult:
    """Run the PSF subtraction described by ``params``.

    A ``reference_cube`` turns full-frame PCA into RDI; a 4-D cube with
    ``wavelengths`` into ASDI (mode 'single').
    """
    if params.algorithm in STATISTICAL_ALGORITHMS:
        raise ValueError(
            f"{params.algorithm} gives a detection map, not a PSF-subtracted image: run the whole post-processing"
        )
    common = dict(collapse_mode=params.collapse, derotation=params.derotation)
    cube_arr = np.asarray(cube)
    if cube_arr.ndim == 4:
        if wavelengths is None:
            raise ValueError("a 4-D (λ, t, y, x) cube needs its wavelengths for SDI/ASDI")
        if params.algorithm != "pca":
            raise ValueError("4-D cubes are processed with algorithm 'pca' (ASDI)")
        return pca_asdi(cube_arr, angles, wavelengths, params.ncomp, scaling=params.scaling, **common)
    if params.algorithm in REFERENCE_ALGORITHMS and reference_cube is None:
        raise ValueError(
            f"{params.algorithm} needs a reference library (frames of other stars with the same instrument, "
            f"filter and coronagraph): pass reference_cube"
        )
    if params.algorithm == "cadi":
        return cadi(cube_arr, angles, **common)
    if params.algorithm in ("annular-pca", "ardi"):  # ARDI: annular PCA with the reference frames
        if fwhm is None:
            raise ValueError(f"{params.algorithm} (annular) needs the FWHM")
        return pca_annular(
            cube_arr,
            angles,
            fwhm,
            params.ncomp,
            asize=params.asize,
            radius_int=params.radius_int,
            delta_rot=params.delta_rot,
            min_frames_lib=params.min_frames_lib,
            scaling=params.scaling,
            reference=reference_cube if params.algorithm == "ardi" else None,
            **common,
        )
    if reference_cube is not None:  # 'rdi', or 'pca' given a library
        return pca_rdi(
            cube_arr,
            angles,
            reference_cube,
            params.ncomp,
            scaling=params.scaling,
            mask_center_px=params.mask_center_px,
            **common,
        )
    return pca_adi(
        cube_arr, angles, params.ncomp, scaling=params.scaling, mask_center_px=params.mask_center_px, **common
    )


class PsfSubtractionStep(Step[PsfSubtractionParameters, PsfSubtractionResult]):
    """cADI / PCA-ADI / annular PCA-ADI (RDI with ``reference_cube``, ASDI with ``wavelengths``)."""

    name: ClassVar[str] = "psf-subtraction"
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[StepParameters]] = PsfSubtractionParameters
    inputs: ClassVar[tuple[str, ...]] = ("cube", "angles")
    optional_inputs: ClassVar[tuple[str, ...]] = ("fwhm", "reference_cube", "wavelengths")
    outputs: ClassVar[tuple[str, ...]] = ("residuals",)

    def run(self, params: PsfSubtractionParameters, **inputs: Any) -> PsfSubtractionResult:
        return subtract_psf(
            inputs["cube"],
            inputs["angles"],
            params,
            fwhm=inputs.get("fwhm"),
            reference_cube=inputs.get("reference_cube"),
            wavelengths=inputs.get("wavelengths"),
        )


@dataclass(frozen=True)
class DetectionParameters(StepParameters):
    """Parameters of the candidate extraction.

    Attributes
    ----------
    threshold : float
        Detection threshold (5).
    threshold_on : {'snr', 'significance'}
        Threshold on the Student-t S/N or on its Gaussian-equivalent significance.
    max_candidates : int
        At most this many candidates (brightest first) are kept.
    snr_tolerance : float
        Accuracy of the fast S/N map.
    """

    threshold: float = 5.0
    threshold_on: str = "snr"
    max_candidates: int = 20
    snr_tolerance: float = 2e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.threshold_on not in THRESHOLD_KINDS:
            raise ValueError(f"threshold_on must be one of {THRESHOLD_KINDS}, got {self.threshold_on!r}")
        self._at_least(max_candidates=0, snr_tolerance=0)


class DetectionStep(Step[DetectionParameters, DetectionResult]):
    """S/N map (Mawet et al. 2014) and candidates above the threshold."""

    name: ClassVar[str] = "detection"
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[StepParameters]] = DetectionParameters
    inputs: ClassVar[tuple[str, ...]] = ("residuals", "fwhm")
    outputs: ClassVar[tuple[str, ...]] = ("snr_map", "candidates", "threshold")

    def run(self, params: DetectionParameters, **inputs: Any) -> DetectionResult:
        return detect_candidates(
            inputs["residuals"],
            inputs["fwhm"],
            threshold=params.threshold,
            threshold_on=params.threshold_on,
            max_candidates=params.max_candidates,
            tolerance=params.snr_tolerance,
        )


@dataclass(frozen=True)
class CharacterisationParameters(StepParameters):
    """Parameters of the NEGFC characterisation.

    Attributes
    ----------
    ncomp : int
        Principal components of the annulus PCA (NEGFC model).
    method : {'pca', 'cadi'}
        PSF subtraction inside the NEGFC model.
    annulus_width : float
        PCA annulus width in FWHM.
    aperture_radius : float
        Figure-of-merit aperture radius in FWHM.
    fmerit : {'sum', 'stddev', 'chi2'}
        NEGFC figure of merit (vip's ``fmerit``).
    n_injections : int
        Fake companions for the speckle-noise uncertainty (0: none).
    bias_correction : bool
        Subtract the mean offset of the injected fakes from the fit (needs at least 3 injections).
    """

    ncomp: int = 20
    method: str = "pca"
    annulus_width: float = 3.0
    aperture_radius: float = 1.5
    fmerit: str = "sum"
    n_injections: int = 12
    bias_correction: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least(ncomp=1, annulus_width=0.5, aperture_radius=0.1, n_injections=0)


class CharacterisationStep(Step[CharacterisationParameters, NegfcResult]):
    """Separation, angle and flux of one candidate by NEGFC, with uncertainties."""

    name: ClassVar[str] = "negfc"
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[StepParameters]] = CharacterisationParameters
    inputs: ClassVar[tuple[str, ...]] = ("cube", "angles", "psf", "fwhm", "xy")
    outputs: ClassVar[tuple[str, ...]] = ("separation_px", "pa_deg", "flux", "uncertainty")

    def run(self, params: CharacterisationParameters, **inputs: Any) -> NegfcResult:
        return characterise(
            inputs["cube"],
            inputs["angles"],
            inputs["psf"],
            inputs["fwhm"],
            inputs["xy"],
            ncomp=params.ncomp,
            method=params.method,
            annulus_width=params.annulus_width,
            aperture_radius=params.aperture_radius,
            fmerit=params.fmerit,
            n_injections=params.n_injections,
            bias_correction=params.bias_correction,
        )


@dataclass(frozen=True)
class ContrastCurveParameters(StepParameters):
    """Parameters of the contrast curve (vip's ``contrast_curve`` names and defaults).

    Attributes
    ----------
    sigma : float
        Detection limit in sigma (Gaussian-equivalent false-alarm probability with ``student``).
    nbranch : int
        Radial branches of injected fake companions.
    theta : float
        Position angle (deg) of the first branch.
    inner_rad : int
        Innermost separation, in FWHM.
    fc_rad_sep : int
        Radial spacing of the fake companions, in FWHM.
    noise_sep : float
        Radial sampling of the noise, in FWHM.
    fc_snr : float
        S/N of the injected fake companions (throughput estimate).
    student : bool
        Small-sample (Student-t) correction, Mawet et al. (2014).
    smooth : bool
        Smooth the noise curve (Savitzky-Golay).
    interp_order : int
        Order of the throughput interpolation.
    """

    sigma: float = 5.0
    nbranch: int = 1
    theta: float = 0.0
    inner_rad: int = 1
    fc_rad_sep: int = 3
    noise_sep: float = 1.0
    fc_snr: float = 100.0
    student: bool = True
    smooth: bool = True
    interp_order: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least(sigma=0, nbranch=1, inner_rad=0, fc_rad_sep=1, noise_sep=0.1, fc_snr=1, interp_order=1)


class ContrastCurveStep(Step[ContrastCurveParameters, ContrastCurve]):
    """Detection limits with throughput and small-sample correction.

    Inputs: ``cube`` (known companions removed), ``angles``, ``psf`` (normalised),
    ``fwhm``, ``subtraction`` (:class:`PsfSubtractionParameters`), optional
    ``star_flux`` and ``pixel_scale``.
    """

    name: ClassVar[str] = "contrast-curve"
    version: ClassVar[str] = "1"
    Parameters: ClassVar[type[StepParameters]] = ContrastCurveParameters
    inputs: ClassVar[tuple[str, ...]] = ("cube", "angles", "psf", "fwhm", "subtraction")
    optional_inputs: ClassVar[tuple[str, ...]] = ("star_flux", "pixel_scale", "reference_cube")
    outputs: ClassVar[tuple[str, ...]] = ("separation_px", "separation_arcsec", "contrast", "throughput")

    def run(self, params: ContrastCurveParameters, **inputs: Any) -> ContrastCurve:
        sub: PsfSubtractionParameters = inputs["subtraction"]
        fwhm = inputs["fwhm"]
        reference = inputs.get("reference_cube") if sub.algorithm in REFERENCE_ALGORITHMS else None

        def algorithm(c, a):
            return subtract_psf(c, a, sub, fwhm=fwhm, reference_cube=reference).residuals

        return contrast_curve(
            inputs["cube"],
            inputs["angles"],
            inputs["psf"],
            fwhm,
            algorithm,
            star_flux=inputs.get("star_flux"),
            pixel_scale=inputs.get("pixel_scale"),
            **dataclasses.asdict(params),
        )


@dataclass(frozen=True)
class PostprocessParameters(StepParameters):
    """Everything :func:`postprocess` does to one cube.

    Attributes
    ----------
    subtraction, detection, characterisation, contrast :
        The parameters of each step.
    statistical :
        The parameters of ANDROMEDA and PACO (used when ``subtraction.algorithm`` is one of them).
    recenter : bool
        Re-centre the cube first (negative 2-D Gaussian fit, vip's recipe).
    recenter_negative : bool
        Fit a negative (vortex dark hole) or positive Gaussian.
    recenter_subi_size : int
        Side (px) of the sub-image fitted when re-centring.
    psf_size : int
        Side of the normalised PSF (vip tutorial: 19 px).
    max_characterised : int or None
        At most this many candidates (highest S/N first) get a NEGFC fit; None: every candidate.
    remove_significance : float
        Characterised candidates at least this significant (Gaussian sigma)
        are removed from the cube before the contrast curve.
    confirm_with : str
        Other algorithms run on the same cube, comma-separated (e.g. 'andromeda'; empty: none). Each
        candidate records which algorithms' own detection maps find it within one FWHM (``found_by``);
        what only another algorithm finds is characterised too; each algorithm gives its own detection
        limit.
    require_agreement : bool
        The catalog's vetting flags a candidate found by fewer than two algorithms (``single-algorithm``);
        without it, only a candidate the main algorithm misses is flagged.
    """

    subtraction: PsfSubtractionParameters = PsfSubtractionParameters()
    detection: DetectionParameters = DetectionParameters()
    characterisation: CharacterisationParameters = CharacterisationParameters()
    contrast: ContrastCurveParameters = ContrastCurveParameters()
    statistical: StatisticalParameters = StatisticalParameters()
    recenter: bool = False
    recenter_negative: bool = True
    recenter_subi_size: int = 5
    psf_size: int = 19
    max_characterised: int | None = None
    remove_significance: float = 5.0
    confirm_with: str = ""
    require_agreement: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least(recenter_subi_size=3, psf_size=5, max_characterised=0, remove_significance=0)
        others = self.other_algorithms
        unknown = [a for a in others if a not in ALGORITHMS]
        if unknown:
            raise ValueError(f"confirm_with: unknown algorithm(s) {', '.join(unknown)}; choose among {ALGORITHMS}")
        if self.subtraction.algorithm in others or len(set(others)) != len(others):
            raise ValueError(
                f"confirm_with lists {self.subtraction.algorithm!r} (the main algorithm) or an algorithm twice"
            )

    @property
    def other_algorithms(self) -> tuple[str, ...]:
        """The algorithms of ``confirm_with``, in order."""
        return tuple(a.strip() for a in self.confirm_with.split(",") if a.strip())


def _fits_in_frame(candidate_sep: float, fwhm: float, params: CharacterisationParameters, half_size: float) -> bool:
    outer = candidate_sep + params.annulus_width * fwhm / 2
    return candidate_sep > 1.5 * fwhm and outer < half_size - 1


@blas_single_thread
def postprocess(
    cube,
    angles,
    psf,
    pixel_scale: float,
    *,
    star_flux: float | None = None,
    params: PostprocessParameters = PostprocessParameters(),
    systematics: Systematics | None = None,
    reference_cube=None,
) -> PostprocessResult:
    """PSF subtraction, detection, NEGFC characterisation and detection limits of one ADI cube.

    Parameters
    ----------
    cube : ndarray, (t, y, x)
        ADI cube, centred on ``(ny // 2, nx // 2)`` unless ``params.recenter``.
    angles : ndarray, (t,)
        Derotation angles (vip-hci convention).
    psf : ndarray, (y, x)
        Off-axis PSF (normalised here like the VIP tutorial).
    pixel_scale : float
        arcsec per pixel.
    star_flux : float, optional
        Stellar flux in a 1xFWHM aperture (cube units); gives contrasts.
    params : PostprocessParameters
    systematics : Systematics, optional
        What the observation adds to every detection's errors (star centre, calibration, photometry;
        :mod:`reduction.postproc.budget`). Without it only the cube's own terms are known: the centre
        is ``given`` with no uncertainty, unless ``params.recenter`` measures it.
    reference_cube : ndarray, (n, y, x), optional
        The reference library of the RDI/ARDI algorithms (frames of other stars, centred like the cube);
        its ``params.subtraction.n_reference_frames`` frames best correlated with the science frames are
        used.

    Returns
    -------
    PostprocessResult
        Every candidate above the threshold characterised (up to ``params.max_characterised``), each
        with its :class:`~reduction.postproc.budget.ErrorBudget`; a candidate whose fit fails keeps its
        row with the reason in ``note``.
    """
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    psf = check_psf(psf, cube.shape[-2:])
    pixel_scale = check_positive(pixel_scale, "pixel_scale")
    if star_flux is not None:
        star_flux = check_positive(star_flux, "star_flux")
    npsf: NormalizedPsf = normalize_psf(psf, size=min(params.psf_size, min(psf.shape)))
    fwhm = npsf.fwhm
    recentering = None
    if params.recenter:
        recentering = recenter_cube(cube, fwhm, negative=params.recenter_negative, subi_size=params.recenter_subi_size)
        cube = recentering.cube
    systematics = _with_centre(systematics or Systematics(), recentering)
    uses_references = {params.subtraction.algorithm, *params.other_algorithms} & set(REFERENCE_ALGORITHMS)
    if uses_references and reference_cube is not None:
        reference_cube, _ = select_reference_frames(
            cube, reference_cube, params.subtraction.n_reference_frames, fwhm, 10 * fwhm
        )
    statistical = None
    if params.subtraction.algorithm in STATISTICAL_ALGORITHMS:
        # the algorithm's own detection map: its flux map stands for the residual image
        statistical = statistical_maps(
            params.subtraction.algorithm, cube, angles, npsf.psf, fwhm, pixel_scale, params.statistical
        )
        subtraction = PsfSubtractionResult(
            residuals=statistical.flux,
            residual_cube=np.zeros((0,) + statistical.flux.shape),
            algorithm=statistical.algorithm,
            parameters=params.statistical.to_dict(),
            notes=(f"{statistical.algorithm}: {statistical.false_alarm[1]}",),
        )
        detection = DetectionResult(
            candidates=candidates_from_map(
                statistical, fwhm, params.detection.threshold, params.detection.max_candidates
            ),
            snr_map=statistical.snr,
            threshold=params.detection.threshold,
            threshold_on="snr",
            fwhm=fwhm,
        )
    else:
        main_reference = reference_cube if params.subtraction.algorithm in REFERENCE_ALGORITHMS else None
        subtraction = subtract_psf(cube, angles, params.subtraction, fwhm=fwhm, reference_cube=main_reference)
        detection = DetectionStep()(params.detection, residuals=subtraction.residuals, fwhm=fwhm)
    for note in subtraction.notes:
        log.info(note)
    others = tuple(
        _other_algorithm(algorithm, cube, angles, npsf, fwhm, pixel_scale, star_flux, params, reference_cube)
        for algorithm in params.other_algorithms
    )
    found = _merge_candidates(params.subtraction.algorithm, detection.candidates, others, fwhm)
    char_params = params.characterisation
    if params.subtraction.algorithm == "cadi" and char_params.method == "pca":
        char_params = dataclasses.replace(char_params, method="cadi")
    characterised = []
    free_cube = cube
    half = min(cube.shape[-2:]) / 2
    for index, (candidate, found_by) in enumerate(found):
        if found_by and params.subtraction.algorithm not in found_by:
            # what only another algorithm finds is flagged for a person to look at (single-algorithm), with
            # that algorithm's position and S/N; not fitted: an ANDROMEDA map of a 24-frame IRDIS cube gave 20
            # such candidates (100 s of NEGFC with injections, measured), nearly all near its inner edge
            characterised.append(
                CharacterisedCandidate(
                    candidate, None, f"found by {'+'.join(found_by)} only: not fitted", found_by=found_by
                )
            )
            continue
        if params.max_characterised is not None and index >= params.max_characterised:
            characterised.append(
                CharacterisedCandidate(candidate, None, "not characterised (max_characterised)", found_by=found_by)
            )
            continue
        if not _fits_in_frame(candidate.separation_px, fwhm, char_params, half):
            characterised.append(
                CharacterisedCandidate(
                    candidate, None, "too close to the star or to the edge for NEGFC", found_by=found_by
                )
            )
            continue
        try:
            ncomp = min(char_params.ncomp, cube.shape[0])
            result = CharacterisationStep()(
                dataclasses.replace(char_params, ncomp=ncomp),
                cube=cube,
                angles=angles,
                psf=npsf.psf,
                fwhm=fwhm,
                xy=(candidate.x, candidate.y),
            )
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            # the candidate keeps its row (position and S/N from the detection) with the reason
            log.warning("NEGFC failed for the candidate at (%.1f, %.1f): %s", candidate.x, candidate.y, exc)
            characterised.append(
                CharacterisedCandidate(candidate, None, f"NEGFC failed: {exc}"[:200], found_by=found_by)
            )
            continue
        budget = negfc_budget(result, pixel_scale, star_flux, systematics)
        characterised.append(CharacterisedCandidate(candidate, result, budget=budget, found_by=found_by))
        if candidate.significance >= params.remove_significance and result.flux > 0:
            free_cube = remove_companion(free_cube, angles, npsf.psf, result)
    if statistical is not None:
        contrast = statistical_limit(
            statistical, fwhm, params.contrast.sigma, star_flux, pixel_scale, params.statistical.to_dict()
        )
    else:
        contrast = ContrastCurveStep()(
            params.contrast,
            cube=free_cube,
            angles=angles,
            psf=npsf.psf,
            fwhm=fwhm,
            subtraction=params.subtraction,
            star_flux=star_flux,
            pixel_scale=pixel_scale,
            reference_cube=reference_cube,
        )
    return PostprocessResult(
        subtraction=subtraction,
        detection=detection,
        characterised=tuple(characterised),
        contrast=contrast,
        psf=npsf,
        recentering=recentering,
        pixel_scale=pixel_scale,
        star_flux=star_flux,
        parameters=params.to_dict(),
        systematics=systematics,
        others=others,
    )


def _other_algorithm(
    algorithm: str, cube, angles, npsf: NormalizedPsf, fwhm: float, pixel_scale: float, star_flux, params, reference
) -> AlgorithmRun:
    """One more algorithm on the same cube: its detection map, candidates and detection limit."""
    if algorithm in STATISTICAL_ALGORITHMS:
        maps = statistical_maps(algorithm, cube, angles, npsf.psf, fwhm, pixel_scale, params.statistical)
        detection = DetectionResult(
            candidates=candidates_from_map(maps, fwhm, params.detection.threshold, params.detection.max_candidates),
            snr_map=maps.snr,
            threshold=params.detection.threshold,
            threshold_on="snr",
            fwhm=fwhm,
        )
        contrast = statistical_limit(
            maps, fwhm, params.contrast.sigma, star_flux, pixel_scale, params.statistical.to_dict()
        )
        return AlgorithmRun(algorithm, detection, contrast, maps.false_alarm[1])
    subtraction_params = dataclasses.replace(params.subtraction, algorithm=algorithm)
    reference = reference if algorithm in REFERENCE_ALGORITHMS else None
    subtraction = subtract_psf(cube, angles, subtraction_params, fwhm=fwhm, reference_cube=reference)
    detection = DetectionStep()(params.detection, residuals=subtraction.residuals, fwhm=fwhm)
    contrast = ContrastCurveStep()(
        params.contrast,
        cube=cube,
        angles=angles,
        psf=npsf.psf,
        fwhm=fwhm,
        subtraction=subtraction_params,
        star_flux=star_flux,
        pixel_scale=pixel_scale,
        reference_cube=reference,
    )
    return AlgorithmRun(algorithm, detection, contrast, "aperture S/N (Mawet et al. 2014, small-sample t statistics)")


def _merge_candidates(main: str, candidates, others: tuple[AlgorithmRun, ...], fwhm: float):
    """``[(candidate, found_by)]``: the main algorithm's candidates, then what only the others find.

    Two algorithms find the same candidate when their peaks are within one FWHM. Without other
    algorithms ``found_by`` stays empty (nothing was compared).
    """
    if not others:
        return [(c, ()) for c in candidates]
    merged: list[tuple[Any, list[str]]] = [(c, [main]) for c in candidates]
    for run in others:
        for candidate in run.detection.candidates:
            same = next(
                (entry for entry in merged if np.hypot(entry[0].x - candidate.x, entry[0].y - candidate.y) <= fwhm),
                None,
            )
            if same is None:
                merged.append((candidate, [run.algorithm]))
            elif run.algorithm not in same[1]:
                same[1].append(run.algorithm)
    return [(c, tuple(algorithms)) for c, algorithms in merged]


def _with_centre(systematics: Systematics, recentering) -> Systematics:
    """The systematics with the centre the re-centring measured (per-frame fits: their scatter)."""
    if recentering is None:
        return systematics
    scatter = recentering.centre_scatter_px
    sources = dict(systematics.sources)
    sources["centre"] = (
        f"re-centred by a 2-D Gaussian fit per frame ({recentering.method}): scatter of the fitted "
        f"centres over {len(recentering.shifts_x)} frames"
    )
    return dataclasses.replace(
        systematics, centre_px=scatter, centre_status="fitted", sources=tuple(sorted(sources.items()))
    )


def negfc_budget(result: NegfcResult, pixel_scale: float, star_flux: float | None, systematics: Systematics):
    """The :class:`~reduction.postproc.budget.ErrorBudget` of one NEGFC fit: its fit and speckle terms + systematics."""
    unc = result.uncertainty
    nan3 = (np.nan, np.nan, np.nan)
    fit, speckle = (unc.fit, unc.speckle) if unc is not None else (nan3, nan3)
    if unc is not None and unc.n_injections == 0:
        speckle = nan3  # not measured (n_injections 0): no term, not a zero
    to_contrast = 1.0 / star_flux if star_flux else np.nan
    return detection_budget(
        result.separation_px, pixel_scale, fit, speckle, result.flux * to_contrast, to_contrast, systematics
    )


class PostprocessStep(Step[PostprocessParameters, PostprocessResult]):
    """The whole post-processing of one cube (:func:`postprocess`)."""

    name: ClassVar[str] = "postprocess"
    #: 2: every candidate characterised by default, the full error budget of each (issue 18)
    #: 3: ANDROMEDA's planet models at their sub-pixel positions (statistical.VIP_SUBPIXEL_ROUNDING)
    #: 4: PACO by HC-DC's vectorised FastPACO, odd frames rotated about the star (statistical.paco_maps)
    version: ClassVar[str] = "4"
    Parameters: ClassVar[type[StepParameters]] = PostprocessParameters
    inputs: ClassVar[tuple[str, ...]] = ("cube", "angles", "psf", "pixel_scale")
    optional_inputs: ClassVar[tuple[str, ...]] = ("star_flux", "systematics", "reference_cube")
    outputs: ClassVar[tuple[str, ...]] = ("subtraction", "detection", "characterised", "contrast")

    def run(self, params: PostprocessParameters, **inputs: Any) -> PostprocessResult:
        return postprocess(
            inputs["cube"],
            inputs["angles"],
            inputs["psf"],
            inputs["pixel_scale"],
            star_flux=inputs.get("star_flux"),
            params=params,
            systematics=inputs.get("systematics"),
            reference_cube=inputs.get("reference_cube"),
        )
