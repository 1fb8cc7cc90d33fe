#!/usr/bin/env python
"""Are the NEGFC uncertainties right? Pulls of injected fake companions (issue 18).

For each dataset, ``--trials`` fake companions are injected one at a time at random separations
(2.5 FWHM to the edge of the NEGFC annulus), random position angles and fluxes chosen for a random
S/N between 5 and 30 in a full-frame PCA image; each is characterised by
:func:`reduction.postproc.negfc.characterise` (the pipeline's NEGFC with its speckle-noise and fit
terms) starting from a position offset from the truth as a detection peak would be (0.5 px rms). The
pull of each quantity, (measured - true) / sigma, must have |mean| < 0.2 and a standard deviation
between 0.8 and 1.2 when sigma is right.

The systematic terms of the budget (star centre, instrument calibration, star flux) are excluded:
the fakes are injected at exactly known positions relative to the cube's centre, so those terms have
nothing to describe here; sigma is the measurement error (the larger of the fit and speckle terms), as the catalog's
``*_err_fit`` and ``*_err_speckle`` columns hold them.

Datasets:

* ``naco``: the real NACO L' beta Pic cube (re-centred as in the VIP tutorial), b removed with the
  tutorial's values (the planet-free cube);
* ``irdis``: a simulated IRDIS DBI observation of a star without companion, pre-processed by HC-DC
  (noise, aberrations, AO residuals and degraded frames on; band 1, 101-px frames).

Writes ``bench/results/bench_uncertainties.json`` and ``bench/results/uncertainty_pulls.png`` (with
``--seed N`` other than 0: ``..._seedN.json`` and ``..._seedN.png``, a held-out run beside the reference).
A run of some datasets keeps the file's other datasets; each dataset records its own time, load and
commit.

    python bench/bench_uncertainties.py [--trials 100] [--datasets naco,irdis] [--workers 2] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reduction.conventions import star_centre  # noqa: E402

QUANTITIES = ("separation_px", "theta_deg", "flux")
N_INJECTIONS = 12  # the pipeline's default (CharacterisationParameters.n_injections)
#: principal components per dataset, as HC-DC reduces them: the NACO cube's 61 frames take 10; the simulated
#: IRDIS sequences (24 frames) take the campaign's 5. With 10 of 24, bright fakes are absorbed by the PCA and
#: 11 of 60 NEGFC fits ran away (pulls up to 34) on the first run: the components, not the error model.
NCOMP = {"naco": 10, "irdis": 5}


def naco_dataset() -> dict | None:
    from astropy.io import fits

    from reduction.postproc import inject_companions, normalize_psf, recenter_cube

    base = Path(os.environ.get("HCDC_REFERENCE_DATA", REPO.parent / "shared" / "data")) / "naco_betapic"
    if not (base / "naco_betapic_cube.fits").is_file():
        return None
    cube = fits.getdata(base / "naco_betapic_cube.fits").astype(float)
    angles = fits.getdata(base / "naco_betapic_pa.fits").astype(float).ravel()
    npsf = normalize_psf(fits.getdata(base / "naco_betapic_psf.fits").astype(float))
    cube = recenter_cube(cube, npsf.fwhm, xy=(51, 51)).cube
    free = inject_companions(cube, npsf.psf, angles, -700.0, 16.583, 44.721)
    return {"name": "naco", "cube": free, "angles": angles, "psf": npsf.psf, "fwhm": npsf.fwhm}


def irdis_dataset(seed: int = 5) -> dict:
    """A simulated IRDIS observation, pre-processed by HC-DC (band 1); fakes keep 3 FWHM from its companions."""
    from reduction.postproc import normalize_psf
    from reduction.preprocess import PreprocessParameters, preprocess_observation
    from reduction.simulator import simulate_archive

    sys.path.insert(0, str(REPO / "tests"))
    from simulated import observation_files  # noqa: E402

    root = Path(tempfile.mkdtemp(prefix="hcdc-pulls-")) / "archive"
    # a December archival night (51 Eri, beta Pic), as in the reference runs; the simulator's default is June
    simulate_archive(root, nights=2, seed=seed, window=256, ifs=False, archival_date=date(2016, 12, 10))
    truth = json.loads((root / "truth.json").read_text())
    entries = [e for e in truth["observations"] if e["instrument"] == "SPHERE-IRDIS"]
    entry = min(entries, key=lambda e: len(e["companions"]))  # the fewest known companions
    result = preprocess_observation(observation_files(root, truth, entry), PreprocessParameters(crop_px=101))
    npsf = normalize_psf(np.asarray(result.psf[0], dtype=float))
    avoid = [
        (c["separation_arcsec"] / result.pixel_scale_arcsec, (c["pa_deg"] + 90.0) % 360.0) for c in entry["companions"]
    ]
    return {
        "avoid": avoid,
        "name": "irdis",
        "cube": np.asarray(result.cube[0], dtype=float),
        "angles": np.asarray(result.derotation_deg, dtype=float),
        "psf": npsf.psf,
        "fwhm": npsf.fwhm,
        "observation": entry["obs_id"],
    }


def _flux_for_snr(cube, angles, psf, fwhm, r, theta, target_snr, ncomp) -> float:
    """The flux giving ``target_snr`` in a full-frame PCA image (PCA is linear in a faint fake)."""
    from reduction.postproc import inject_companions, pca_adi, snr
    from reduction.postproc.photometry import aperture_sums

    free = pca_adi(cube, angles, ncomp).residuals
    test_flux = 50.0
    with_fake = pca_adi(inject_companions(cube, psf, angles, test_flux, r, theta), angles, ncomp).residuals
    cy, cx = star_centre(free.shape)
    x, y = cx + r * math.cos(math.radians(theta)), cy + r * math.sin(math.radians(theta))
    signal = float(aperture_sums(with_fake - free, [x], [y], fwhm / 2)[0])
    measurement = snr(free, (x, y), fwhm)
    noise = float(measurement.noise) * math.sqrt(1 + 1 / measurement.n_apertures)
    return target_snr * noise / max(signal / test_flux, 1e-12)


def one_trial(args) -> dict:
    """Inject one fake, characterise it, return the truth, the fit and the pulls."""
    name, cube, angles, psf, fwhm, seed, avoid = args
    from reduction.postproc import inject_companions
    from reduction.postproc.negfc import characterise

    rng = np.random.default_rng(seed)
    half = min(cube.shape[-2:]) / 2
    r_max = half - 3.0 * fwhm / 2 - 2
    while True:  # at least 3 FWHM from the cube's own companions (their polar r, theta)
        r = float(rng.uniform(2.5 * fwhm, r_max))
        theta = float(rng.uniform(0, 360))
        if all(
            math.hypot(
                r * math.cos(math.radians(theta)) - ar * math.cos(math.radians(at)),
                r * math.sin(math.radians(theta)) - ar * math.sin(math.radians(at)),
            )
            > 3 * fwhm
            for ar, at in avoid
        ):
            break
    target_snr = float(rng.uniform(5, 30))
    flux = _flux_for_snr(cube, angles, psf, fwhm, r, theta, target_snr, NCOMP[name])
    injected = inject_companions(cube, psf, angles, flux, r, theta)
    cy, cx = star_centre(cube.shape[-2:])
    x = cx + r * math.cos(math.radians(theta)) + rng.normal(0, 0.5)
    y = cy + r * math.sin(math.radians(theta)) + rng.normal(0, 0.5)
    started = time.perf_counter()
    try:
        fit = characterise(injected, angles, psf, fwhm, (x, y), ncomp=NCOMP[name], n_injections=N_INJECTIONS)
    except ValueError as exc:
        return {"dataset": name, "seed": seed, "error": str(exc)}
    seconds = time.perf_counter() - started
    unc = fit.uncertainty
    measured = {"separation_px": fit.separation_px, "theta_deg": fit.theta_deg, "flux": fit.flux}
    truth = {"separation_px": r, "theta_deg": theta, "flux": flux}
    out = {
        "dataset": name,
        "seed": seed,
        "target_snr": target_snr,
        "truth": truth,
        "measured": measured,
        "sigma": dict(zip(QUANTITIES, unc.total)),
        "sigma_fit": dict(zip(QUANTITIES, unc.fit)),
        "sigma_speckle": dict(zip(QUANTITIES, unc.speckle)),
        # the mean offset of the injections, subtracted from the fit (measured + bias is the raw fit)
        "bias": dict(zip(QUANTITIES, unc.speckle_bias)),
        "seconds": seconds,
    }
    pulls = {}
    for q in QUANTITIES:
        delta = measured[q] - truth[q]
        if q == "theta_deg":
            delta = (delta + 180) % 360 - 180
        sigma = out["sigma"][q]
        pulls[q] = delta / sigma if sigma and np.isfinite(sigma) and sigma > 0 else float("nan")
    out["pull"] = pulls
    return out


#: a fit whose pull exceeds this in any quantity locked on a wrong solution (reported apart, and counted)
CATASTROPHIC_PULL = 5.0


def _code_version() -> str:
    """The commit the run measured (with ``+dirty`` when the work tree differs from it)."""
    import subprocess

    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "diff", "--quiet", "HEAD", "--", "reduction"]).returncode
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def summarise(trials: list[dict]) -> dict:
    ok = [t for t in trials if "pull" in t]
    caught = [t for t in ok if any(abs(t["pull"][q]) > CATASTROPHIC_PULL for q in QUANTITIES)]
    summary = {"n": len(ok), "failed": len(trials) - len(ok), "catastrophic": len(caught)}
    for q in QUANTITIES:
        pulls = np.array([t["pull"][q] for t in ok], dtype=float)
        pulls = pulls[np.isfinite(pulls)]
        core = np.array([t["pull"][q] for t in ok if t not in caught], dtype=float)
        core = core[np.isfinite(core)]
        mad = float(np.median(np.abs(pulls - np.median(pulls))) * 1.4826) if pulls.size else float("nan")
        summary[q] = {
            "n": int(pulls.size),
            "mean": float(pulls.mean()) if pulls.size else float("nan"),
            "std": float(pulls.std(ddof=1)) if pulls.size > 1 else float("nan"),
            "robust_std": mad,
            "within_1sigma": float(np.mean(np.abs(pulls) <= 1)) if pulls.size else float("nan"),
            "passes": bool(pulls.size and abs(pulls.mean()) < 0.2 and 0.8 <= pulls.std(ddof=1) <= 1.2),
            "without_catastrophic": {
                "n": int(core.size),
                "mean": float(core.mean()) if core.size else float("nan"),
                "std": float(core.std(ddof=1)) if core.size > 1 else float("nan"),
            },
        }
    return summary


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, axes = plt.subplots(len(names), 3, figsize=(12, 3.4 * len(names)), squeeze=False)
    grid = np.linspace(-5, 5, 200)
    for row, name in enumerate(names):
        trials = [t for t in results[name]["trials"] if "pull" in t]
        for col, q in enumerate(QUANTITIES):
            ax = axes[row][col]
            pulls = np.array([t["pull"][q] for t in trials], dtype=float)
            pulls = pulls[np.isfinite(pulls)]
            ax.hist(np.clip(pulls, -5, 5), bins=np.linspace(-5, 5, 26), density=True, color="#4477aa", alpha=0.8)
            ax.plot(grid, np.exp(-(grid**2) / 2) / math.sqrt(2 * math.pi), "k-", lw=1.5, label="N(0, 1)")
            s = results[name]["summary"][q]
            ax.set_title(f"{name}: {q}\nmean {s['mean']:+.2f}, std {s['std']:.2f} (n={s['n']})", fontsize=9)
            ax.set_xlabel("(measured - true) / sigma")
            if col == 0:
                ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def report(results: dict) -> None:
    print(
        f"{'dataset':8s} {'quantity':14s} {'n':>4s} {'mean':>7s} {'std':>6s} {'robust':>7s}  |pull|<=1  verdict"
        f"   without catastrophic fits (|pull| > {CATASTROPHIC_PULL:g})"
    )
    for name, data in results.items():
        for q in QUANTITIES:
            s = data["summary"][q]
            core = s["without_catastrophic"]
            print(
                f"{name:8s} {q:14s} {s['n']:4d} {s['mean']:+7.2f} {s['std']:6.2f} {s['robust_std']:7.2f}  "
                f"{100 * s['within_1sigma']:6.0f} %   {'ok ' if s['passes'] else 'OUT'}     "
                f"n {core['n']}, mean {core['mean']:+.2f}, std {core['std']:.2f}"
            )


def _names(seed: int) -> tuple[str, str]:
    """File names of a run: seed 0 is the reference run; another seed is a held-out check beside it."""
    suffix = f"_seed{seed}" if seed else ""
    return f"bench_uncertainties{suffix}.json", f"uncertainty_pulls{suffix}.png"


def _write(results: dict, started: float, seed: int = 0) -> Path:
    """Write this run's datasets into the seed's JSON, keeping the datasets of that file this run did not
    redo (each dataset carries its own time, load and code version, so a file may hold runs of two days)."""
    target = REPO / "bench" / "results"
    target.mkdir(parents=True, exist_ok=True)
    json_name, png_name = _names(seed)
    path = target / json_name
    kept: dict = {}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            kept = {name: data for name, data in old.get("results", {}).items() if name not in results}
            for data in kept.values():  # a file of the old layout: its run's metadata go with its datasets
                for key in ("time_utc", "load_average", "seconds"):
                    data.setdefault(key, old.get(key))
        except (ValueError, OSError):
            kept = {}
    merged = {**kept, **results}
    record = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": platform.node(),
        "load_average": list(os.getloadavg()),
        "seed": seed,
        "n_injections": N_INJECTIONS,
        "ncomp": NCOMP,
        "seconds": time.time() - started,
        "results": merged,
    }
    path.write_text(json.dumps(record, indent=1, default=float))
    if merged:
        plot(merged, target / png_name)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="fake companions per dataset")
    parser.add_argument("--datasets", default="naco,irdis")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    results = {}
    started = time.time()
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        data = naco_dataset() if name == "naco" else irdis_dataset()
        if data is None:
            print(f"{name}: data not found, skipped", file=sys.stderr)
            continue
        jobs = [
            (
                name,
                data["cube"],
                data["angles"],
                data["psf"],
                data["fwhm"],
                args.seed * 100000 + k,
                data.get("avoid", []),
            )
            for k in range(args.trials)
        ]
        print(f"== {name}: {args.trials} fakes on {args.workers} worker(s)", file=sys.stderr, flush=True)
        dataset_started = time.time()
        trials = []
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for k, trial in enumerate(pool.map(one_trial, jobs), start=1):
                trials.append(trial)
                if k % 10 == 0 or k == len(jobs):
                    print(f"   {k}/{len(jobs)} ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
        results[name] = {
            "trials": trials,
            "summary": summarise(trials),
            "fwhm_px": data["fwhm"],
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": list(os.getloadavg()),
            "seconds": time.time() - dataset_started,
            "code_version": _code_version(),
        }
        _write(results, started, args.seed)  # after each dataset: a later failure loses nothing
    target = _write(results, started, args.seed)
    report(results)
    json_name, png_name = _names(args.seed)
    print(f"\nwritten {target / json_name} and {png_name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
