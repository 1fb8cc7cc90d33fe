"""Statistical detection maps from vip-hci's inverse-problem algorithms: ANDROMEDA and PACO.

Both model the companion's signature in the ADI sequence and give, at every pixel, a flux estimate,
its standard deviation and their ratio, a detection S/N whose false-alarm meaning is defined by the
algorithm's noise model (not by aperture statistics):

``andromeda`` (Cantalloube et al. 2015; ``vip_hci.invprob.andromeda``)
    maximum likelihood on pairwise frame differences; the map used is the *normalised* S/N
    (``snr_norm``: the S/N divided by its robust radial standard deviation), so a threshold of 5 is a
    5-sigma Gaussian false-alarm rate under the algorithm's residual model.
``paco`` (Flasseur et al. 2018; ``vip_hci.invprob.FastPACO``, computed by default by its vectorised
    rewrite :mod:`reduction.postproc.paco`)
    patch covariances learned from the sequence; the S/N is ``b / sqrt(a)`` (their eq. 24), Gaussian
    under its model (its standard deviation over the field is 1 on the NACO cube: measured).

vip-hci does the science; this module adapts the inputs (even-sized frames for ANDROMEDA, the FWHM
in arcsec for PACO) and returns one :class:`StatisticalMaps` object. It mends one line of vip-hci's
ANDROMEDA (:func:`andromeda_core`): with it, the maps reproduce the IDL implementation's
(``bench/bench_andromeda_idl.py``; ``tests/test_statistical_idl.py``).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import io
import warnings
from dataclasses import dataclass, field

import numpy as np

from reduction.steps import StepParameters

from ._checks import check_angles, check_cube, check_positive

STATISTICAL_ALGORITHMS = ("andromeda", "paco")

#: what each map's S/N means, written in the product header (``SNRDEF``)
FALSE_ALARM = {
    "andromeda": (
        "ANDROMEDA-norm",
        "normalised S/N (Cantalloube+2015): Gaussian FAP under the model",
    ),
    "paco": ("PACO", "b/sqrt(a), Flasseur+2018 eq. 24: Gaussian FAP under the model"),
}


@dataclass(frozen=True)
class StatisticalParameters(StepParameters):
    """Parameters of the statistical detection algorithms (vip-hci's names and defaults where they exist).

    Attributes
    ----------
    andromeda_oversampling : float
        ANDROMEDA's oversampling factor, lambda/(2D) in pixels; 0: the PSF's FWHM / 2.
    andromeda_filtering_fraction : float
        Fraction of the Fourier plane kept by ANDROMEDA's high-pass filter (1: no filtering).
    andromeda_min_sep : float
        Smallest angular separation (in lambda/D) between the two frames of a difference.
    andromeda_opt_method : {'no', 'total', 'lsq', 'robust'}
        How ANDROMEDA optimises the subtraction of the frame pairs.
    andromeda_nsmooth_snr : int
        Width (in pixels) of the radial smoothing of the S/N normalisation (0: none).
    andromeda_iwa : float
        Inner working angle in lambda/D: inside it ANDROMEDA's maps are not used (the star's residuals
        dominate the frame differences there; on the NACO cube the normalised S/N scatters by 13 within
        3 lambda/D and by 1 beyond 7: measured).
    paco_subpixel_psf : bool
        PACO shifts the PSF model to its sub-pixel position in each frame (higher S/N). vip-hci's
        ``FastPACO.run`` ignores this option and always shifts; HC-DC's engine honours it.
    paco_psf_grid : int
        Sub-pixel steps per pixel of the shifted PSF models of HC-DC's PACO engine (nearest model);
        0: one exact shift per pixel and frame, as vip-hci (slow). At 100 the S/N map is within 0.011
        of the exact shifts' and the flux within 0.2 % where S/N > 3 (NACO cube, measured).
    paco_engine : {'hcdc', 'vip'}
        Who computes PACO. ``hcdc``: :func:`reduction.postproc.paco.fast_paco`, vip-hci's FastPACO
        vectorised (the same maps to rounding with ``paco_psf_grid=0``; 71 times faster on a 201-px
        field, 45 s on a full IRDIS frame); ``vip``: ``vip_hci.invprob.FastPACO`` itself, the reference
        (hours on a full frame).
    """

    andromeda_oversampling: float = 0.0
    andromeda_filtering_fraction: float = 0.25
    andromeda_min_sep: float = 0.5
    andromeda_opt_method: str = "lsq"
    andromeda_nsmooth_snr: int = 18
    andromeda_iwa: float = 3.0
    paco_subpixel_psf: bool = True
    paco_psf_grid: int = 100
    paco_engine: str = "hcdc"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._at_least(andromeda_oversampling=0, andromeda_filtering_fraction=0.01, andromeda_min_sep=0.1)
        self._at_least(andromeda_nsmooth_snr=0, andromeda_iwa=0.5, paco_psf_grid=0)


@dataclass(frozen=True, eq=False)
class StatisticalMaps:
    """One algorithm's maps of a cube (frames of the input's shape; NaN where it gives nothing).

    Attributes
    ----------
    algorithm : str
    snr : ndarray
        The detection map (see the module docstring for its false-alarm meaning).
    flux : ndarray
        Flux estimate, in units of the given PSF (1xFWHM-aperture flux when the PSF is normalised so).
    flux_std : ndarray
        Its 1-sigma uncertainty.
    false_alarm : tuple of str
        ``(short name, definition)`` of the S/N.
    other_maps : dict of str to ndarray
        The algorithm's other outputs, under vip-hci's names (ANDROMEDA: ``snr`` before normalisation,
        ``stdcontrast`` before normalisation, ``likelihood``), for diagnostics and for comparison with
        other implementations.
    """

    algorithm: str
    snr: np.ndarray
    flux: np.ndarray
    flux_std: np.ndarray
    false_alarm: tuple[str, str]
    other_maps: dict = field(default_factory=dict)


#: vip-hci's ANDROMEDA (2.1.1, and its main branch of June 2026) rounds the fraction of a pixel of each
#: planet model's position *before* scaling it to the sub-pixel grid of shifted PSFs, so every model
#: sits on a whole pixel (up to half a pixel from where the planet would be). The IDL implementation
#: and vip-hci's own port of 2018 (``vip_hci/andromeda/andromeda.py`` at 3cc516f5) round the scaled
#: fraction. With the line as vip-hci has it, the S/N map of the NACO beta Pic cube correlates at 0.76
#: with the IDL one and the contrast map is 27 % low; mended, the maps agree within vip-hci's own 2018
#: tolerances on 99.6 % of the pixels (bench/README.md, ``bench_andromeda_idl.py``).
VIP_SUBPIXEL_ROUNDING = ("(idl_round(tbr) * precision)", "idl_round(tbr * precision)")


@functools.cache
def andromeda_core():
    """vip-hci's ``andromeda_core`` with its sub-pixel rounding mended (:data:`VIP_SUBPIXEL_ROUNDING`).

    The function is vip-hci's own source, compiled in its module's namespace with the one expression
    replaced (in x and in y); vip-hci's function unchanged if it no longer has that expression (mended
    upstream). Returns the function to use; vip-hci's own is its attribute ``vip_released``.
    """
    module = importlib.import_module("vip_hci.invprob.andromeda")  # the package's name is the function's
    wrong, right = VIP_SUBPIXEL_ROUNDING
    source = inspect.getsource(module.andromeda_core)
    if wrong not in source:
        return module.andromeda_core
    if source.count(wrong) != 2:
        raise RuntimeError(f"vip-hci's andromeda_core has changed: {source.count(wrong)} of {wrong!r}, 2 expected")
    namespace = dict(vars(module))
    exec(compile(source.replace(wrong, right), inspect.getsourcefile(module), "exec"), namespace)  # noqa: S102
    mended = namespace["andromeda_core"]
    mended.vip_released = module.andromeda_core  # for the comparison with vip-hci as released
    return mended


def _pad_to(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[: frame.shape[0], : frame.shape[1]] = frame
    return out


def andromeda_maps(cube, angles, psf, fwhm: float, params: StatisticalParameters) -> StatisticalMaps:
    """ANDROMEDA's maps of a centred ADI cube (``vip_hci.invprob.andromeda``).

    vip's ANDROMEDA works on even-sized frames with the star at ``(n // 2, n // 2)``: an odd frame
    loses its last row and column (the star stays on the same pixel); the maps are padded back with NaN.
    vip's ANDROMEDA takes the derotation angles of its ``psfsub`` functions (the IDL reference maps of
    ``shared/data/naco_betapic`` were made in VIP's pre-1.0 convention, with the opposite sign).
    The maps are NaN inside ``params.andromeda_iwa`` lambda/D (taken as the PSF's FWHM).
    """
    from vip_hci.invprob import andromeda

    # vip's annulus loop looks the core up in its module: the mended one (see VIP_SUBPIXEL_ROUNDING)
    importlib.import_module("vip_hci.invprob.andromeda").andromeda_core = andromeda_core()
    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    fwhm = check_positive(fwhm, "fwhm")
    ny, nx = cube.shape[-2:]
    even = cube[:, : ny - ny % 2, : nx - nx % 2]
    psf = np.asarray(psf, dtype=float)
    if psf.shape[0] % 2:  # ANDROMEDA wants an even PSF too (centred like the frames)
        psf = psf[:-1, :-1]
    oversampling = params.andromeda_oversampling or fwhm / 2.0
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        contrast, snr, snr_norm, std, std_norm, likelihood, _radius = andromeda(
            cube=even,
            oversampling_fact=oversampling,
            angle_list=angles,
            psf=psf,
            filtering_fraction=params.andromeda_filtering_fraction,
            min_sep=params.andromeda_min_sep,
            opt_method=params.andromeda_opt_method,
            nsmooth_snr=params.andromeda_nsmooth_snr,
            homogeneous_variance=True,
            iwa=params.andromeda_iwa,
            verbose=False,
        )
    yy, xx = np.indices((ny, nx))
    inside = np.hypot(yy - ny // 2, xx - nx // 2) < params.andromeda_iwa * fwhm

    def full(array) -> np.ndarray:
        out = _pad_to(np.asarray(array, dtype=float), (ny, nx))
        out[inside] = np.nan
        return out

    return StatisticalMaps(
        "andromeda",
        full(snr_norm),
        full(contrast),
        full(std_norm),
        FALSE_ALARM["andromeda"],
        other_maps={"snr": full(snr), "stdcontrast": full(std), "likelihood": full(likelihood)},
    )


def paco_maps(cube, angles, psf, fwhm: float, pixel_scale: float, params: StatisticalParameters) -> StatisticalMaps:
    """FastPACO's maps of a centred ADI cube (Flasseur et al. 2018, Algorithm 2).

    ``params.paco_engine`` picks HC-DC's vectorised FastPACO (:mod:`reduction.postproc.paco`) or
    ``vip_hci.invprob.FastPACO`` (its FWHM in arcsec). Either way an odd frame is padded by one row and
    column in front first: vip-hci's geometry rotates a frame about ``n / 2``, which is the star
    (``n // 2``) only when ``n`` is even.
    """
    from .paco import even_frames, fast_paco

    cube = check_cube(cube)
    angles = check_angles(angles, cube.shape[0])
    fwhm = check_positive(fwhm, "fwhm")
    psf = np.asarray(psf, dtype=float)
    if params.paco_engine == "hcdc":
        maps = fast_paco(
            cube,
            angles,
            psf,
            # vip-hci's int(fwhm_arcsec / pixscale), bit for bit: an integer FWHM can lose a pixel of
            # patch radius to the rounding (harmless with fitted FWHMs), as it does in vip-hci
            fwhm * pixel_scale / pixel_scale,
            subpixel_psf=params.paco_subpixel_psf,
            psf_grid=params.paco_psf_grid,
        )
        snr, flux, std = maps.snr, maps.flux, maps.flux_std
    else:
        from vip_hci.invprob import FastPACO

        padded, odd = even_frames(cube)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            paco = FastPACO(cube=padded, angles=angles, psf=psf, fwhm=fwhm * pixel_scale, pixscale=pixel_scale)
            paco.run(cpu=1, use_subpixel_psf_astrometry=params.paco_subpixel_psf)
        snr, flux, std = paco.snr, paco.flux, paco.std
        if odd:
            snr, flux, std = snr[1:, 1:], flux[1:, 1:], std[1:, 1:]
    return StatisticalMaps(
        "paco",
        np.asarray(snr, dtype=float),
        np.asarray(flux, dtype=float),
        np.asarray(std, dtype=float),
        FALSE_ALARM["paco"],
    )


def statistical_maps(
    algorithm: str, cube, angles, psf, fwhm: float, pixel_scale: float, params: StatisticalParameters
) -> StatisticalMaps:
    """The maps of ``algorithm`` (one of :data:`STATISTICAL_ALGORITHMS`)."""
    if algorithm == "andromeda":
        return andromeda_maps(cube, angles, psf, fwhm, params)
    if algorithm == "paco":
        return paco_maps(cube, angles, psf, fwhm, pixel_scale, params)
    raise ValueError(f"algorithm must be one of {', '.join(STATISTICAL_ALGORITHMS)}; got {algorithm!r}")


def candidates_from_map(maps: StatisticalMaps, fwhm: float, threshold: float, max_candidates: int | None):
    """Peaks of the algorithm's S/N map above ``threshold``, brightest first, one per FWHM.

    Positions are refined to the sub-pixel (the peak of a Gaussian fitted to the map around it); the S/N,
    significance and false-positive fraction are the map's own (Gaussian, under the algorithm's model).
    """
    from scipy import ndimage
    from scipy.stats import norm

    from reduction.conventions import star_centre

    from .detection import candidate_at, subpixel_peak
    from .results import Candidate

    smap = np.asarray(maps.snr, dtype=float)
    work = np.where(np.isfinite(smap), smap, -np.inf)
    peaks = (work == ndimage.maximum_filter(work, size=3, mode="constant", cval=-np.inf)) & (work >= threshold)
    py, px = np.nonzero(peaks)
    order = np.argsort(work[py, px], kind="stable")[::-1]
    cy, cx = star_centre(smap.shape)
    candidates: list[Candidate] = []
    for i in order:
        if max_candidates is not None and len(candidates) >= max_candidates:
            break
        y_pk, x_pk = int(py[i]), int(px[i])
        ys, xs = subpixel_peak(np.nan_to_num(smap), (y_pk, x_pk), fwhm)
        if np.hypot(ys - cy, xs - cx) < fwhm or any(np.hypot(ys - c.y, xs - c.x) < fwhm for c in candidates):
            continue
        value = float(smap[y_pk, x_pk])
        candidates.append(candidate_at(xs, ys, (cy, cx), value, value, float(norm.sf(value)), value, 0))
    return tuple(candidates)


def statistical_limit(maps: StatisticalMaps, fwhm: float, sigma: float, star_flux, pixel_scale, parameters: dict):
    """Detection limits from the algorithm's flux uncertainty map: ``sigma`` x its median in 1-px annuli.

    The estimators are unbiased under their models, so no throughput correction applies (1 by
    construction); the median makes the limit robust to the companions themselves.
    """
    from reduction.conventions import star_centre

    from .results import ContrastCurve

    std = np.asarray(maps.flux_std, dtype=float)
    cy, cx = star_centre(std.shape)
    yy, xx = np.indices(std.shape)
    rho = np.hypot(yy - cy, xx - cx)
    separations, noise = [], []
    for r in np.arange(max(1.0, fwhm), min(std.shape) / 2 - fwhm / 2, 1.0):
        ring = std[(rho >= r - 0.5) & (rho < r + 0.5)]
        ring = ring[np.isfinite(ring) & (ring > 0)]
        if ring.size:
            separations.append(r)
            noise.append(float(np.median(ring)))
    separations, noise = np.asarray(separations), np.asarray(noise)
    flux_limit = sigma * noise
    contrast = np.clip(flux_limit / star_flux, None, 1) if star_flux else None
    ones = np.ones_like(separations)
    return ContrastCurve(
        separation_px=separations,
        separation_arcsec=separations * pixel_scale if pixel_scale else None,
        flux_limit=flux_limit,
        contrast=contrast,
        contrast_gaussian=contrast,
        throughput=ones,
        noise=noise,
        sigma_corrected=sigma * ones,
        throughput_separation_px=np.zeros(0),
        throughput_measured=np.zeros(0),
        sigma=float(sigma),
        star_flux=star_flux,
        fwhm=float(fwhm),
        parameters={
            "algorithm": maps.algorithm,
            "definition": "sigma x median flux std per 1-px annulus",
            **parameters,
        },
    )
