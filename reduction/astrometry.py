"""Sources across epochs: is a point source bound to its star or a background star?

A bound companion shares its star's proper motion and parallax, and moves only by its orbit; a distant
background star stays put on the sky, so relative to the star it traces the *background track*: minus
the star's proper motion and minus its parallactic ellipse. Given the relative astrometry of one source at
several epochs, this module computes the evidence (marginal likelihood) of each hypothesis and their odds.

Both models are linear in their unknowns with Gaussian priors, so both evidences are exact and analytic
(no sampling: the whole catalog is tested in milliseconds per source):

* **common offset** ``Δ0`` (RA*, Dec), the source's position at no particular epoch: flat prior, the same in
  both models, marginalised analytically (its prior volume cancels in the odds);
* **co-moving**: orbital motion. For a circular orbit of semi-major axis ``a`` and mean motion
  ``ω = 2π sqrt(M / a³)`` seen at a random phase, each coordinate is ``A cos ωt + B sin ωt`` with
  ``A, B ~ N(0, a²/2)``: a Gaussian process with covariance ``(a²/2) cos(ω Δt)`` per axis. ``a`` is
  marginalised on a log-uniform grid from half the largest measured separation (the apocentre of an
  eccentric orbit can reach ``2a``) to :attr:`MotionTestParameters.max_orbit_factor` times it; ``M`` is
  the star's mass (:attr:`StarAstrometry.mass_msun`). No orbital motion beyond what gravity allows: a source
  that moves faster than an orbit at its separation can has a low co-moving evidence;
* **background**: the track ``-μ (t - t_ref) - ϖ P(t)`` with ``P`` the parallax factors of the star's
  direction at each epoch (Earth's barycentric position from astropy's ephemeris), the star's ``μ`` and
  ``ϖ`` uncertain by their published errors, and the background star's own proper motion drawn from a
  Gaussian field-star model (:attr:`MotionTestParameters.background_pm_sigma_mas_yr`, per axis) and its
  parallax taken as zero (a faint background star is far).

The measurement errors come from each epoch's separation and position-angle errors (radial and tangential).

Status (:func:`common_proper_motion_test`): ``co-moving`` when ``log10`` of the odds (co-moving over
background) is at least :attr:`MotionTestParameters.decisive_log10_odds` (2 by default: odds of 100 to 1,
"decisive" on Jeffreys' 1961 scale), ``background`` at or below minus that, ``undetermined`` otherwise, with
a single epoch, or when the favoured model does not fit (its whitened residual's chi² per degree of freedom
above :attr:`MotionTestParameters.max_reduced_chi2`: a mis-linked source, a motion no orbit allows, or errors
more than twice too small); a verdict whose chi² is merely improbable keeps its status with a note.

Why not ``backtracks`` (Herz et al.; PyPI): it fits the background model by nested sampling (minutes per
source) and does not give the co-moving evidence; the linear-Gaussian models here are exact and fast
enough for the whole catalog. The parallactic motion is astropy's (``get_body_barycentric``).

Units: mas, mas/yr, years, solar masses. RA offsets are ``Δα cos δ`` (east positive), position angles
east of north (:mod:`reduction.conventions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: Julian year in days (IAU), for epochs in years
DAYS_PER_YEAR = 365.25
#: Statuses a source can have.
STATUSES = ("co-moving", "background", "undetermined")


@dataclass(frozen=True)
class Epoch:
    """One relative astrometry measurement of a source (1 sigma errors)."""

    mjd: float
    sep_mas: float
    sep_err_mas: float
    pa_deg: float
    pa_err_deg: float

    @property
    def year(self) -> float:
        """Julian epoch (J2000 = 2000.0)."""
        return 2000.0 + (self.mjd - 51544.5) / DAYS_PER_YEAR

    @property
    def offset(self) -> np.ndarray:
        """``(ΔRA*, ΔDec)`` in mas, east and north positive."""
        pa = math.radians(self.pa_deg)
        return np.array([self.sep_mas * math.sin(pa), self.sep_mas * math.cos(pa)])

    @property
    def covariance(self) -> np.ndarray:
        """2x2 covariance of :attr:`offset` from the radial and tangential errors."""
        pa = math.radians(self.pa_deg)
        radial = np.array([math.sin(pa), math.cos(pa)])
        tangential = np.array([math.cos(pa), -math.sin(pa)])
        along = self.sep_err_mas**2
        across = (self.sep_mas * math.radians(self.pa_err_deg)) ** 2
        return along * np.outer(radial, radial) + across * np.outer(tangential, tangential)


@dataclass(frozen=True)
class StarAstrometry:
    """The host star's astrometry (1 sigma errors; NaN errors count as zero)."""

    ra_deg: float
    dec_deg: float
    pm_ra_mas_yr: float
    pm_dec_mas_yr: float
    parallax_mas: float
    pm_ra_err_mas_yr: float = 0.0
    pm_dec_err_mas_yr: float = 0.0
    parallax_err_mas: float = 0.0
    mass_msun: float = 1.0

    def __post_init__(self) -> None:
        for name in ("ra_deg", "dec_deg", "pm_ra_mas_yr", "pm_dec_mas_yr", "parallax_mas"):
            value = getattr(self, name)
            if value is None or not np.isfinite(value):
                raise ValueError(f"star astrometry: {name} is missing ({value!r}); the background track needs it")
        if not self.parallax_mas > 0:
            raise ValueError(f"star astrometry: parallax_mas must be > 0, got {self.parallax_mas}")
        if not (self.mass_msun and self.mass_msun > 0):
            raise ValueError(f"star astrometry: mass_msun must be > 0, got {self.mass_msun}")


@dataclass(frozen=True)
class MotionTestParameters:
    """Priors and thresholds of the common-proper-motion test (see the module docstring)."""

    #: per-axis dispersion of a background star's own proper motion, mas/yr. Faint field stars seen
    #: behind nearby young stars have proper motions of a few mas/yr (Gaia DR3 at G ~ 18-20); zero makes
    #: the background model stricter than nature.
    background_pm_sigma_mas_yr: float = 5.0
    #: the semi-major-axis grid of the orbit runs from half the largest separation to this times it
    max_orbit_factor: float = 20.0
    #: points of that grid (log-uniform prior)
    orbit_grid_points: int = 48
    #: |log10 odds| at and above which a verdict is given (Jeffreys 1961: 2 = "decisive")
    decisive_log10_odds: float = 2.0
    #: above this chi² per degree of freedom the favoured model is said not to fit and the status is
    #: undetermined: the errors of different instruments and epochs are often too small by up to a factor 2
    #: (chi²/dof up to 4, beta Pic b's published astrometry gives 1.7-1.9); beyond, the model itself is wrong
    #: (a mis-linked source, a motion no orbit allows)
    max_reduced_chi2: float = 4.0
    #: below this chi² p-value (and within ``max_reduced_chi2``) the verdict stands with a note that it fits poorly
    poor_fit_p_value: float = 1e-3

    def __post_init__(self) -> None:
        if self.background_pm_sigma_mas_yr < 0:
            raise ValueError("background_pm_sigma_mas_yr must be >= 0")
        if not self.max_orbit_factor > 0.5:
            raise ValueError("max_orbit_factor must be > 0.5")
        if self.orbit_grid_points < 1:
            raise ValueError("orbit_grid_points must be >= 1")
        if not self.decisive_log10_odds > 0:
            raise ValueError("decisive_log10_odds must be > 0")


@dataclass(frozen=True)
class MotionTest:
    """The verdict on one source."""

    status: str
    log10_odds: float
    ln_evidence_comoving: float
    ln_evidence_background: float
    chi2_comoving: float
    chi2_background: float
    dof: int
    n_epochs: int
    span_years: float
    note: str = ""
    parameters: MotionTestParameters = field(default_factory=MotionTestParameters)


def parallax_factors(mjd, ra_deg: float, dec_deg: float) -> np.ndarray:
    """Parallax factors ``(N, 2)``: the star's apparent ``(ΔRA*, ΔDec)`` per mas of parallax.

    ``ΔRA* = ϖ (X sin α - Y cos α)``, ``ΔDec = ϖ (X cos α sin δ + Y sin α sin δ - Z cos δ)`` with
    ``(X, Y, Z)`` Earth's barycentric position in au (ICRS), from astropy's built-in ephemeris.
    """
    from astropy.coordinates import get_body_barycentric
    from astropy.time import Time

    mjd = np.atleast_1d(np.asarray(mjd, dtype=float))
    earth = get_body_barycentric("earth", Time(mjd, format="mjd", scale="tdb"))
    x, y, z = (getattr(earth, c).to_value("au") for c in ("x", "y", "z"))
    a, d = math.radians(ra_deg), math.radians(dec_deg)
    p_ra = x * math.sin(a) - y * math.cos(a)
    p_dec = x * math.cos(a) * math.sin(d) + y * math.sin(a) * math.sin(d) - z * math.cos(d)
    return np.stack([p_ra, p_dec], axis=-1)


def _years(mjd) -> np.ndarray:
    return 2000.0 + (np.asarray(mjd, dtype=float) - 51544.5) / DAYS_PER_YEAR


def background_track(star: StarAstrometry, mjd, reference: Epoch) -> tuple[np.ndarray, np.ndarray]:
    """Where a background star seen at ``reference`` appears at ``mjd``, and the covariance of that.

    Returns ``(offsets (N, 2) mas, covariances (N, 2, 2) mas²)``; the covariance holds the reference
    measurement, the star's proper-motion and parallax errors, and no field-star motion (the track of a
    star at rest, as plotted).
    """
    mjd = np.atleast_1d(np.asarray(mjd, dtype=float))
    tau = _years(mjd) - reference.year
    dp = parallax_factors(mjd, star.ra_deg, star.dec_deg) - parallax_factors(reference.mjd, star.ra_deg, star.dec_deg)
    pm = np.array([star.pm_ra_mas_yr, star.pm_dec_mas_yr])
    offsets = reference.offset[None, :] - tau[:, None] * pm[None, :] - star.parallax_mas * dp
    pm_var = np.array([_var(star.pm_ra_err_mas_yr), _var(star.pm_dec_err_mas_yr)])
    cov = (
        reference.covariance[None]
        + (tau[:, None, None] ** 2) * np.diag(pm_var)[None]
        + _var(star.parallax_err_mas) * np.einsum("ni,nj->nij", dp, dp)
    )
    return offsets, cov


def _var(sigma: float | None) -> float:
    return float(sigma) ** 2 if sigma is not None and np.isfinite(sigma) else 0.0


def _measurements(epochs: list[Epoch]) -> tuple[np.ndarray, np.ndarray]:
    """Stacked ``(ra_1..ra_N, dec_1..dec_N)`` and their block covariance."""
    n = len(epochs)
    y = np.concatenate([[e.offset[0] for e in epochs], [e.offset[1] for e in epochs]])
    cov = np.zeros((2 * n, 2 * n))
    for i, e in enumerate(epochs):
        c = e.covariance
        cov[i, i], cov[n + i, n + i], cov[i, n + i], cov[n + i, i] = c[0, 0], c[1, 1], c[0, 1], c[1, 0]
    return y, cov


def _offset_design(n: int) -> np.ndarray:
    """The common offset ``Δ0``: one column per axis."""
    h = np.zeros((2 * n, 2))
    h[:n, 0] = 1.0
    h[n:, 1] = 1.0
    return h


def _marginal(residual: np.ndarray, cov: np.ndarray, design: np.ndarray) -> tuple[float, float]:
    """``(ln evidence, chi²)`` of a Gaussian model with a flat prior on ``design``'s coefficients.

    The flat prior's volume is left out: it is the same for both models and cancels in the odds. The chi²
    is that of the residual with the offset fitted (``2N - 2`` degrees of freedom).
    """
    chol = np.linalg.cholesky(cov)
    solve = lambda b: np.linalg.solve(chol.T, np.linalg.solve(chol, b))  # noqa: E731
    ki_r = solve(residual)
    ki_h = solve(design)
    hkh = design.T @ ki_h
    beta = np.linalg.solve(hkh, design.T @ ki_r)
    chi2 = float(residual @ ki_r - (design.T @ ki_r) @ beta)
    logdet_k = 2.0 * float(np.log(np.diag(chol)).sum())
    _, logdet_h = np.linalg.slogdet(hkh / (2 * math.pi))
    ln_z = -0.5 * chi2 - 0.5 * (logdet_k + len(residual) * math.log(2 * math.pi)) - 0.5 * float(logdet_h)
    return ln_z, chi2


def _orbit_grid(epochs: list[Epoch], star: StarAstrometry, params: MotionTestParameters) -> np.ndarray:
    """Semi-major axes (mas) of the co-moving prior: log-uniform from half the largest separation."""
    r_max = max(e.sep_mas for e in epochs)
    return np.geomspace(0.5 * r_max, params.max_orbit_factor * r_max, params.orbit_grid_points)


def _orbit_covariance(years: np.ndarray, a_mas: float, star: StarAstrometry) -> np.ndarray:
    """Per-axis covariance ``(a²/2) cos(ω Δt)`` of a circular orbit at a random phase (block diagonal)."""
    a_au = a_mas / star.parallax_mas
    omega = 2 * math.pi * math.sqrt(star.mass_msun / a_au**3)  # rad / yr
    block = 0.5 * a_mas**2 * np.cos(omega * (years[:, None] - years[None, :]))
    n = len(years)
    cov = np.zeros((2 * n, 2 * n))
    cov[:n, :n] = block
    cov[n:, n:] = block
    return cov


def _comoving(epochs, star, params) -> tuple[float, float]:
    y, meas = _measurements(epochs)
    years = np.array([e.year for e in epochs])
    design = _offset_design(len(epochs))
    results = []
    for a_mas in _orbit_grid(epochs, star, params):
        cov = meas + _orbit_covariance(years, a_mas, star)
        cov += 1e-9 * np.trace(cov) / len(cov) * np.eye(len(cov))  # the orbit block is rank 2: keep it solvable
        results.append(_marginal(y, cov, design))
    ln_z = np.array([r[0] for r in results])
    best = int(np.argmax(ln_z))
    # log-uniform prior on a: the evidence is the mean over the grid
    return float(np.logaddexp.reduce(ln_z) - math.log(len(ln_z))), float(results[best][1])


def _background(epochs, star, params) -> tuple[float, float]:
    y, meas = _measurements(epochs)
    n = len(epochs)
    mjd = np.array([e.mjd for e in epochs])
    tau = _years(mjd) - _years(mjd).mean()
    p = parallax_factors(mjd, star.ra_deg, star.dec_deg)
    mean = np.concatenate([-star.pm_ra_mas_yr * tau, -star.pm_dec_mas_yr * tau]) - star.parallax_mas * np.concatenate(
        [p[:, 0], p[:, 1]]
    )
    bg = params.background_pm_sigma_mas_yr**2
    cov = meas.copy()
    cov[:n, :n] += (_var(star.pm_ra_err_mas_yr) + bg) * np.outer(tau, tau)
    cov[n:, n:] += (_var(star.pm_dec_err_mas_yr) + bg) * np.outer(tau, tau)
    pp = np.concatenate([p[:, 0], p[:, 1]])
    cov += _var(star.parallax_err_mas) * np.outer(pp, pp)
    return _marginal(y - mean, cov, _offset_design(n))


def common_proper_motion_test(
    epochs: list[Epoch], star: StarAstrometry, params: MotionTestParameters | None = None
) -> MotionTest:
    """Odds that a source shares its star's motion, and the status they give.

    Parameters
    ----------
    epochs : list of Epoch
        The source's relative astrometry; epochs on the same night are kept (each is a measurement).
    star : StarAstrometry
    params : MotionTestParameters, optional

    Returns
    -------
    MotionTest
    """
    params = params or MotionTestParameters()
    epochs = sorted(epochs, key=lambda e: e.mjd)
    for e in epochs:
        if not (np.isfinite(e.sep_err_mas) and e.sep_err_mas > 0 and np.isfinite(e.pa_err_deg) and e.pa_err_deg > 0):
            raise ValueError(
                f"epoch MJD {e.mjd:.3f}: the test needs positive separation and angle errors "
                f"(got {e.sep_err_mas!r} mas, {e.pa_err_deg!r} deg)"
            )
    n = len(epochs)
    span = (epochs[-1].mjd - epochs[0].mjd) / DAYS_PER_YEAR if n else 0.0
    if n < 2:
        return MotionTest("undetermined", 0.0, math.nan, math.nan, math.nan, math.nan, 0, n, span, "one epoch", params)
    ln_co, chi2_co = _comoving(epochs, star, params)
    ln_bg, chi2_bg = _background(epochs, star, params)
    log10_odds = (ln_co - ln_bg) / math.log(10)
    dof = 2 * n - 2
    note = ""
    if log10_odds >= params.decisive_log10_odds:
        status, chi2 = "co-moving", chi2_co
    elif log10_odds <= -params.decisive_log10_odds:
        status, chi2 = "background", chi2_bg
    else:
        status, chi2 = "undetermined", None
    if chi2 is not None:
        from scipy import stats

        p_value = float(stats.chi2.sf(chi2, dof))
        if chi2 / dof > params.max_reduced_chi2:
            note = f"favoured model ({status}) does not fit: chi2 {chi2:.1f} for {dof} dof (p = {p_value:.1e})"
            status = "undetermined"
        elif p_value < params.poor_fit_p_value:
            note = f"fits poorly: chi2 {chi2:.1f} for {dof} dof (p = {p_value:.1e}); errors likely too small"
    return MotionTest(status, float(log10_odds), ln_co, ln_bg, chi2_co, chi2_bg, dof, n, span, note, params)


def predicted_offsets(
    epoch: Epoch, star: StarAstrometry, mjd: float, params: MotionTestParameters | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Where a source seen at ``epoch`` should be at ``mjd`` under each hypothesis, with its covariance.

    ``co-moving``: at the same offset, give or take the orbital motion a circular orbit at the measured
    separation allows in that time (``|Δ| <= 2 sin(ω Δt / 2) r``, at most the orbit's diameter);
    ``background``: on the background track (with the field-star motion's spread). Used to link
    detections of different epochs into sources.
    """
    params = params or MotionTestParameters()
    dt = abs(_years(mjd) - epoch.year)
    r = max(epoch.sep_mas, 1e-6)
    a_au = 0.5 * r / star.parallax_mas  # the fastest orbit the prior allows: a = r / 2
    omega = 2 * math.pi * math.sqrt(star.mass_msun / a_au**3)
    chord = 2 * r * abs(math.sin(min(omega * dt, math.pi) / 2))
    co_cov = epoch.covariance + (chord / 2) ** 2 * np.eye(2)  # the chord as a 2-sigma allowance
    bg, bg_cov = background_track(star, [mjd], epoch)
    bg_cov = bg_cov[0] + (params.background_pm_sigma_mas_yr * dt) ** 2 * np.eye(2)
    return {"co-moving": (epoch.offset, co_cov), "background": (bg[0], bg_cov)}


def track_band(epochs: list[Epoch], star: StarAstrometry, params: MotionTestParameters | None = None, n: int = 400):
    """The background track from the first epoch over the epochs' span, with its 1-sigma width per axis.

    The width holds the first measurement's error, the star's proper-motion and parallax errors and the
    field-star motion. Returns a dict of arrays: ``years`` (n,), ``track`` (n, 2) and ``sigma`` (n, 2),
    in mas (RA*, Dec), and ``measured`` (epochs: ``years``, ``offsets`` (N, 2), ``errors`` (N, 2)).
    """
    params = params or MotionTestParameters()
    epochs = sorted(epochs, key=lambda e: e.mjd)
    ref = epochs[0]
    end = max(epochs[-1].mjd, ref.mjd + DAYS_PER_YEAR)
    grid = np.linspace(ref.mjd - 0.1 * (end - ref.mjd), end + 0.1 * (end - ref.mjd), n)
    track, cov = background_track(star, grid, ref)
    field_var = (params.background_pm_sigma_mas_yr * (_years(grid) - ref.year)) ** 2
    sigma = np.sqrt(np.stack([cov[:, 0, 0], cov[:, 1, 1]], axis=-1) + field_var[:, None])
    return {
        "years": _years(grid),
        "track": track,
        "sigma": sigma,
        "measured": {
            "years": np.array([e.year for e in epochs]),
            "offsets": np.array([e.offset for e in epochs]),
            "errors": np.array([np.sqrt(np.diag(e.covariance)) for e in epochs]),
        },
    }


def plot_source(
    epochs: list[Epoch],
    star: StarAstrometry,
    test: MotionTest | None = None,
    *,
    title: str = "",
    path=None,
):
    """The figure astronomers expect: ΔRA* and ΔDec against time, the background track and its band.

    The track starts at the first epoch; its 1- and 2-sigma bands hold the first measurement's error, the
    star's proper-motion and parallax errors and the field-star motion. Saved as PNG when ``path`` is given.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    params = test.parameters if test is not None else MotionTestParameters()
    band = track_band(epochs, star, params)
    years, track, sigma, measured = band["years"], band["track"], band["sigma"], band["measured"]
    fig = Figure(figsize=(8.0, 6.0)) if path is not None else plt.figure(figsize=(8.0, 6.0))
    axes = fig.subplots(2, 1, sharex=True)
    for k, (ax, label) in enumerate(zip(axes, ("ΔRA cos δ (mas, east +)", "ΔDec (mas, north +)"))):
        ax.plot(years, track[:, k], color="0.3", lw=1.2, label="background track (star at rest)")
        ax.fill_between(years, track[:, k] - 2 * sigma[:, k], track[:, k] + 2 * sigma[:, k], color="0.85", label="2σ")
        ax.fill_between(years, track[:, k] - sigma[:, k], track[:, k] + sigma[:, k], color="0.7", label="1σ")
        ax.errorbar(
            measured["years"],
            measured["offsets"][:, k],
            yerr=measured["errors"][:, k],
            fmt="o",
            color="C3",
            ms=4,
            label="measured",
        )
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch (Julian year)")
    axes[0].legend(loc="best", fontsize=8)
    if test is not None:
        verdict = f"{test.status}: log10 odds (co-moving/background) = {test.log10_odds:+.1f}, {test.n_epochs} epochs"
        title = f"{title} — {verdict}" if title else verdict
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
