"""Result objects of the post-processing functions.

Each function returns one of these frozen dataclasses (never a tuple whose
shape depends on flags). Arrays are numpy arrays; positions are 0-based pixels
of the final (derotated, north-up) image; angles follow
:mod:`reduction.conventions`:

* ``theta_deg`` is the polar angle counter-clockwise from +x in the final image
  (the ``theta`` of ``vip_hci.fm.cube_inject_companions`` and of vip's NEGFC),
* ``pa_deg`` is the position angle east of north, ``theta_deg - 90`` modulo 360.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np


def theta_to_pa(theta_deg: float) -> float:
    """Polar angle from +x (counter-clockwise) to position angle east of north."""
    return float(np.mod(theta_deg - 90.0, 360.0))


def pa_to_theta(pa_deg: float) -> float:
    """Position angle east of north to polar angle from +x (counter-clockwise)."""
    return float(np.mod(pa_deg + 90.0, 360.0))


if TYPE_CHECKING:  # pragma: no cover
    from .budget import ErrorBudget, Systematics


@dataclass(frozen=True, eq=False)
class NormalizedPsf:
    """An off-axis PSF cropped, centred and normalised like vip's ``normalize_psf``.

    Attributes
    ----------
    psf : ndarray
        The PSF, odd-sized, centred on its central pixel, with a flux of 1 in a
        circular aperture of diameter ``fwhm`` (unless it was already within
        10 % of 1, as vip does).
    fwhm : float
        FWHM in pixels (mean of the Gaussian fit's x and y FWHM, or as given).
    fwhm_x, fwhm_y : float
        The Gaussian fit's FWHM along x and y (NaN when ``fwhm`` was given).
    aperture_flux : float
        Flux of the *input* PSF in the 1xFWHM aperture.
    scale : float
        What the cropped input PSF was divided by (``aperture_flux``, or 1 when
        it was already within 10 % of 1, as vip): a companion of normalised
        flux ``f`` is ``f / scale`` times the input PSF.
    """

    psf: np.ndarray
    fwhm: float
    fwhm_x: float
    fwhm_y: float
    aperture_flux: float
    scale: float = 1.0


@dataclass(frozen=True)
class AnnulusInfo:
    """What annular PCA did in one annulus.

    Attributes
    ----------
    index : int
        Annulus number, from the centre.
    inner_radius, outer_radius : float
        Radii in pixels (``inner <= r < outer``).
    pa_threshold_deg : float
        Rotation threshold for the frame library (``delta_rot`` FWHM at the
        annulus centre).
    min_library : int
        Smallest number of frames left in a frame's library.
    ncomp : int
        Principal components used.
    skipped : bool
        True when the annulus was not processed (its residuals are NaN).
    reason : str
        Why it was skipped (empty otherwise).
    """

    index: int
    inner_radius: float
    outer_radius: float
    pa_threshold_deg: float
    min_library: int
    ncomp: int
    skipped: bool = False
    reason: str = ""


@dataclass(frozen=True, eq=False)
class PsfSubtractionResult:
    """A PSF-subtracted, derotated and combined image.

    Attributes
    ----------
    residuals : ndarray
        Final image ``(y, x)``, north up; NaN where nothing was computed
        (skipped annuli).
    residual_cube : ndarray
        Derotated residual frames ``(t, y, x)`` that were combined.
    algorithm : str
        ``"pca"``, ``"annular-pca"``, ``"cadi"``, ``"rdi-pca"`` or ``"asdi-pca"``.
    parameters : dict
        The parameters used (JSON-serialisable).
    annuli : tuple of AnnulusInfo
        Per-annulus bookkeeping (annular PCA only).
    notes : tuple of str
        Human-readable remarks (e.g. skipped annuli), also logged.
    """

    residuals: np.ndarray
    residual_cube: np.ndarray
    algorithm: str
    parameters: dict[str, Any]
    annuli: tuple[AnnulusInfo, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def skipped_annuli(self) -> tuple[AnnulusInfo, ...]:
        """The annuli that were skipped, with their reasons."""
        return tuple(a for a in self.annuli if a.skipped)


@dataclass(frozen=True)
class SnrMeasurement:
    """S/N of one resolution element, Mawet et al. (2014) small-sample statistics.

    Attributes
    ----------
    x, y : float
        Test position (0-based pixels).
    snr : float
        ``(F - mean(F_i)) / (std(F_i, ddof=1) * sqrt(1 + 1/n))`` with ``n`` noise apertures.
    signal : float
        Flux in the test aperture (diameter 1 FWHM).
    noise : float
        Standard deviation (ddof=1) of the noise apertures' fluxes.
    background : float
        Mean of the noise apertures' fluxes.
    n_apertures : int
        Number of noise apertures ``n``.
    fpf : float
        False-positive fraction: Student-t survival function of ``snr`` with ``n - 1`` d.o.f.
    significance : float
        Gaussian-equivalent significance (sigma) of ``fpf``.
    """

    x: float
    y: float
    snr: float
    signal: float
    noise: float
    background: float
    n_apertures: int
    fpf: float
    significance: float


@dataclass(frozen=True)
class Candidate:
    """A point source above the detection threshold in the S/N map.

    Attributes
    ----------
    x, y : float
        Sub-pixel position in the final image (0-based pixels).
    separation_px : float
        Distance to the star.
    theta_deg : float
        Polar angle counter-clockwise from +x (vip convention).
    pa_deg : float
        Position angle east of north.
    snr : float
        S/N at the sub-pixel position (Mawet 2014).
    peak_snr : float
        Maximum of the S/N map at the candidate.
    fpf : float
        False-positive fraction of ``snr`` (Student-t, small-sample statistics).
    significance : float
        Gaussian-equivalent significance of ``fpf``.
    n_apertures : int
        Noise apertures used at this separation.
    """

    x: float
    y: float
    separation_px: float
    theta_deg: float
    pa_deg: float
    snr: float
    peak_snr: float
    fpf: float
    significance: float
    n_apertures: int


@dataclass(frozen=True, eq=False)
class DetectionResult:
    """Candidates found in an S/N map, brightest (highest S/N) first.

    Attributes
    ----------
    candidates : tuple of Candidate
    snr_map : ndarray
        The S/N map the candidates were extracted from.
    threshold : float
        The detection threshold.
    threshold_on : str
        ``"snr"`` (Student-t S/N) or ``"significance"`` (Gaussian-equivalent sigma).
    fwhm : float
    """

    candidates: tuple[Candidate, ...]
    snr_map: np.ndarray
    threshold: float
    threshold_on: str
    fwhm: float

    @property
    def brightest(self) -> Candidate | None:
        """The highest-S/N candidate, or None."""
        return self.candidates[0] if self.candidates else None


@dataclass(frozen=True)
class Uncertainty:
    """1-sigma uncertainties of a NEGFC fit, per term.

    Attributes
    ----------
    speckle : tuple of float
        ``(sep_px, theta_deg, flux)`` from injecting and recovering fake
        companions at the same separation (Wertz et al. 2017).
    fit : tuple of float
        ``(sep_px, theta_deg, flux)`` from the curvature of the figure of merit
        at the optimum (Gaussian likelihood, corrected for pixel correlation).
    total : tuple of float
        The measurement error: the larger of the two terms, which measure the same noise
        (:func:`reduction.postproc.negfc.measurement_error`).
    speckle_bias : tuple of float
        Mean offset found in the injection-recovery tests (subtracted from the fit when
        ``bias_correction``, see :mod:`reduction.postproc.negfc`).
    n_injections : int
        Fake companions used for the speckle term.
    """

    speckle: tuple[float, float, float]
    fit: tuple[float, float, float]
    total: tuple[float, float, float]
    speckle_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    n_injections: int = 0


@dataclass(frozen=True)
class NegfcResult:
    """Position and flux of a companion by negative fake companion fitting.

    Attributes
    ----------
    x, y : float
        Position in the final image (0-based pixels).
    separation_px, theta_deg, pa_deg : float
        Polar position (vip ``theta`` and position angle east of north).
    flux : float
        Flux in units of the normalised PSF (1 = 1xFWHM-aperture flux of the PSF).
    figure_of_merit : float
        Value at the optimum.
    n_evaluations : int
        Figure-of-merit evaluations of the simplex.
    success : bool
        Whether the simplex converged.
    uncertainty : Uncertainty or None
        1-sigma uncertainties when computed.
    """

    x: float
    y: float
    separation_px: float
    theta_deg: float
    pa_deg: float
    flux: float
    figure_of_merit: float
    n_evaluations: int
    success: bool
    uncertainty: Uncertainty | None = None

    def with_uncertainty(self, uncertainty: Uncertainty) -> "NegfcResult":
        """A copy with ``uncertainty`` set."""
        return dataclasses.replace(self, uncertainty=uncertainty)


@dataclass(frozen=True, eq=False)
class ContrastCurve:
    """Detection limits versus separation (vip's ``contrast_curve`` algorithm).

    Attributes
    ----------
    separation_px : ndarray
        Separations in pixels.
    separation_arcsec : ndarray or None
        Separations in arcsec (None when no pixel scale was given).
    flux_limit : ndarray
        ``sigma_corr * noise / throughput``: the 1xFWHM-aperture flux a
        companion needs to be detected at the confidence of ``sigma`` Gaussian
        sigma, with the Student-t small-sample correction (cube units); inf
        where the measured throughput is not positive.
    contrast : ndarray or None
        ``flux_limit / star_flux`` (None without a stellar flux), clipped to
        [.., 1] like vip.
    contrast_gaussian : ndarray or None
        The same without the small-sample correction.
    throughput : ndarray
        Algorithm throughput interpolated at ``separation_px``.
    noise : ndarray
        Standard deviation of 1xFWHM-aperture fluxes in each annulus (smoothed).
    sigma_corrected : ndarray
        Student-t-corrected multiplier of the noise.
    throughput_separation_px, throughput_measured : ndarray
        Where the throughput was measured with fake companions and the values.
    sigma : float
        Gaussian-equivalent confidence (5 for "5 sigma").
    star_flux : float or None
        Stellar flux in a 1xFWHM aperture (cube units).
    fwhm : float
    parameters : dict
    """

    separation_px: np.ndarray
    separation_arcsec: np.ndarray | None
    flux_limit: np.ndarray
    contrast: np.ndarray | None
    contrast_gaussian: np.ndarray | None
    throughput: np.ndarray
    noise: np.ndarray
    sigma_corrected: np.ndarray
    throughput_separation_px: np.ndarray
    throughput_measured: np.ndarray
    sigma: float
    star_flux: float | None
    fwhm: float
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class RecenterResult:
    """A cube re-centred on the star.

    Attributes
    ----------
    cube : ndarray
        The shifted cube; the star is at ``(ny // 2, nx // 2)``.
    shifts_y, shifts_x : ndarray
        Shifts applied to each frame (pixels).
    guess_xy : tuple of float
        Where the fit started.
    method : str
    """

    cube: np.ndarray
    shifts_y: np.ndarray
    shifts_x: np.ndarray
    guess_xy: tuple[float, float]
    method: str

    @property
    def centre_scatter_px(self) -> float:
        """Per-axis scatter (ddof=1) of the per-frame fitted centres: the centring error counted for the cube.

        Each frame is shifted by its own fit, so the fits' scatter bounds the error of each frame's centring.
        """
        shifts = np.stack([np.asarray(self.shifts_x, float), np.asarray(self.shifts_y, float)])
        return float(np.sqrt(np.mean(np.var(shifts, axis=1, ddof=1)))) if shifts.shape[1] > 1 else 0.0


@dataclass(frozen=True, eq=False)
class CharacterisedCandidate:
    """A candidate with its NEGFC characterisation (None when not fitted)."""

    candidate: Candidate
    negfc: NegfcResult | None
    note: str = ""
    #: every term of its uncertainties (:mod:`reduction.postproc.budget`); None without a fit
    budget: "ErrorBudget | None" = None
    #: the algorithms whose own detection map finds it (the post-processing's main algorithm first when it
    #: does); empty when only one algorithm ran
    found_by: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class AlgorithmRun:
    """What one more algorithm gave on the same cube (``PostprocessParameters.confirm_with``).

    Attributes
    ----------
    algorithm : str
    detection : DetectionResult
        Its detection map and candidates above the same threshold.
    contrast : ContrastCurve
        Its own detection limit.
    definition : str
        What its S/N means (false-alarm definition).
    """

    algorithm: str
    detection: DetectionResult
    contrast: ContrastCurve
    definition: str = ""


@dataclass(frozen=True, eq=False)
class PostprocessResult:
    """Everything :func:`reduction.postproc.pipeline.postprocess` produces for one cube.

    Attributes
    ----------
    subtraction : PsfSubtractionResult
    detection : DetectionResult
    characterised : tuple of CharacterisedCandidate
    contrast : ContrastCurve
    psf : NormalizedPsf
    recentering : RecenterResult or None
    pixel_scale : float
        arcsec per pixel.
    star_flux : float or None
    parameters : dict
    systematics : Systematics or None
    """

    subtraction: PsfSubtractionResult
    detection: DetectionResult
    characterised: tuple[CharacterisedCandidate, ...]
    contrast: ContrastCurve
    psf: NormalizedPsf
    recentering: RecenterResult | None
    pixel_scale: float
    star_flux: float | None
    parameters: dict[str, Any]
    #: the observation's systematic terms the budgets used (centre, calibration, photometry)
    systematics: "Systematics | None" = None
    #: the other algorithms run on the same cube (``PostprocessParameters.confirm_with``), in that order
    others: tuple[AlgorithmRun, ...] = ()
