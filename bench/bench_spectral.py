"""IFS spectral post-processing (issue 19): per-channel recovery of companion spectra over random cases.

Each case is a spectral cube on the real SPHERE IFS PSF, wavelengths and angles (tests/spectral_cube.py)
with two companions at random separations and angles, one with a methane-like band and one with a red
slope, at random contrasts; the chain is ``reduction.postproc.spectral.postprocess_spectral`` with its
default parameters. Reported per case and overall: position error, the share of channels with S/N >= 10
recovered within 10 %, the share of the others within 3 sigma, the pulls' mean and standard deviation,
the collapsed S/N against the best single channel reduced alone (PCA-ADI, 1-5 components) and against
the best channel of the ASDI residual, and the time of the chain.

    .venv/bin/python bench/bench_spectral.py [--cases 6] [--seed 100] [--rotation 5]

Writes bench/results/bench_spectral.json (``--rotation``: the real sequence's angles squeezed into that
many degrees of field rotation, written to bench_spectral_rotation<N>.json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reduction.conventions import star_centre  # noqa: E402
from reduction.postproc.snr import snr  # noqa: E402
from reduction.postproc.spectral import SpectralParameters, postprocess_spectral  # noqa: E402
from tests.spectral_cube import best_single_channel_snr, spectral_cube  # noqa: E402

PIXEL_SCALE = 0.00746


def oracle_collapse_snr(result, star_flux, true_contrast, xy) -> float:
    """S/N of the ASDI channels collapsed with the matched filter of the true spectrum (not known in practice)."""
    limits, nl = result.limits, len(result.fwhm)
    cy, cx = star_centre(result.collapsed.shape)
    sep = float(np.hypot(xy[0] - cx, xy[1] - cy))
    noise = np.array([np.interp(sep, limits.radii_px, limits.noise[k]) for k in range(nl)])
    throughput = np.array([np.interp(sep, limits.radii_px, limits.throughput[k]) for k in range(nl)])
    weights = true_contrast * star_flux * throughput / noise**2
    collapsed = np.tensordot(weights / weights.sum(), result.channels, axes=1)
    return float(snr(collapsed, xy, float(np.mean(result.fwhm))).snr)


def one_case(
    rng: np.random.Generator, seed: int, rotation_deg: float | None = None, position_fit: str = "forward-model"
) -> dict:
    seps = rng.uniform(12, 30, 2)
    thetas = [rng.uniform(0, 360), 0.0]
    thetas[1] = (thetas[0] + rng.uniform(90, 270)) % 360
    contrasts = 10 ** rng.uniform(-2.9, -2.3, 2)
    spec = [(seps[0], thetas[0], "methane", contrasts[0]), (seps[1], thetas[1], "red", contrasts[1])]
    cube = spectral_cube(spec, seed=seed, rotation_deg=rotation_deg)
    start = time.perf_counter()
    result = postprocess_spectral(
        cube.cube,
        cube.angles,
        cube.psfs,
        cube.wavelengths,
        PIXEL_SCALE,
        star_flux=cube.star_flux,
        params=SpectralParameters(position_fit=position_fit),
    )
    seconds = time.perf_counter() - start
    rows = []
    for source, (sep, theta, kind, contrast) in zip(cube.sources, spec):
        x, y = cube.truth_xy(source)
        near = [c for c in result.candidates if np.hypot(c.candidate.x - x, c.candidate.y - y) < 3]
        row = {"kind": kind, "separation_px": round(float(sep), 2), "contrast": float(contrast)}
        if not near:
            row["found"] = False
            rows.append(row)
            continue
        found = near[0]
        sp = found.spectrum
        rel = sp.contrast / source.spectrum - 1
        pull = (sp.contrast - source.spectrum) / sp.contrast_err
        bright = sp.snr >= 10
        offset = float(np.hypot(found.candidate.x - x, found.candidate.y - y))
        row.update(
            found=True,
            collapsed_snr=round(float(found.candidate.snr), 2),
            position_error_px=round(offset, 3),
            position_err_px_reported=round(float(found.position_err_px), 3),  # per axis
            position_pull=round(offset / float(found.position_err_px), 3),
            position_from=found.position_from,
            status=found.status,
            radial_slope=round(float(found.radial_slope), 3),
            bright_channels=int(bright.sum()),
            bright_within_10pc=int((np.abs(rel[bright]) <= 0.10).sum()),
            # what honest Gaussian errors give: P(|error| <= 10 % of the truth) = erf(0.1 truth / (σ √2))
            bright_within_10pc_expected=round(
                float(special.erf(0.1 * source.spectrum[bright] / (sp.contrast_err[bright] * np.sqrt(2))).sum()), 1
            ),
            faint_channels=int((~bright).sum()),
            faint_within_3sigma=int((np.abs(pull[~bright]) <= 3).sum()),
            max_relative_error_bright=round(float(np.abs(rel[bright]).max()), 3) if bright.any() else None,
            pull_mean=round(float(pull.mean()), 3),
            pull_std=round(float(pull.std(ddof=1)), 3),
            note=found.note,
            # issue 19: the collapse against the best channel reduced alone (PCA-ADI, 1-5 components),
            # and against the best channel of the ASDI residual (which is not a channel alone)
            best_single_channel_snr=round(float(best_single_channel_snr(cube, (x, y), result.fwhm)), 2),
            best_asdi_channel_snr=round(
                max(float(snr(result.channels[k], (x, y), float(result.fwhm[k])).snr) for k in range(len(result.fwhm))),
                2,
            ),
            # what the collapse could reach if it knew the companion's spectrum: the channels weighted by
            # true contrast x star flux x throughput over noise variance at its separation (an oracle)
            oracle_collapse_snr=round(oracle_collapse_snr(result, cube.star_flux, source.spectrum, (x, y)), 2),
        )
        rows.append(row)
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "spectrum_passes": result.spectrum_passes,
        "spectrum_converged": result.spectrum_converged,
        "companions": rows,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--rotation", type=float, default=None, help="field rotation, degrees (default: the real 40°+)")
    parser.add_argument("--position-fit", default="forward-model", help="SpectralParameters.position_fit")
    parser.add_argument("--only", type=int, nargs="*", help="run only these case numbers (0-based; no result file)")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    load = os.getloadavg()
    cases = []
    for i in range(args.cases):
        if args.only is not None and i not in args.only:
            rng.uniform(size=6)  # the six draws of a case, so that the others get theirs
            continue
        case = one_case(rng, args.seed + i, args.rotation, args.position_fit)
        cases.append(case)
        print(json.dumps(case))
    comps = [c for case in cases for c in case["companions"] if c.get("found")]

    def ratio(part: str, whole: str) -> str:
        return f"{sum(c[part] for c in comps)}/{sum(c[whole] for c in comps)}"

    def beats(channel_snr: str) -> str:
        return f"{sum(c['collapsed_snr'] > c[channel_snr] for c in comps)}/{len(comps)}"

    means = np.array([c["pull_mean"] for c in comps])
    summary = {
        "companions": sum(len(case["companions"]) for case in cases),
        "found": len(comps),
        "position_error_px_max": max(c["position_error_px"] for c in comps),
        "bright_within_10pc": ratio("bright_within_10pc", "bright_channels"),
        "bright_within_10pc_expected_if_errors_are_right": round(
            sum(c["bright_within_10pc_expected"] for c in comps), 1
        ),
        "faint_within_3sigma": ratio("faint_within_3sigma", "faint_channels"),
        # the channels' errors are correlated (one speckle pattern scaled with λ): each companion's mean
        # pull is the figure whose spread over companions says whether the errors are right (1 if so)
        "companion_pull_means": [round(float(m), 2) for m in means],
        # the position's error per axis: the RMS over the companions of (offset / error) / sqrt(2) is 1 when
        # the errors are right (the offset is 2-D)
        "position_pull_rms": round(
            float(np.sqrt(np.mean([c["position_pull"] ** 2 for c in comps]) / 2)),
            2,
        ),
        "position_within_half_px": f"{sum(c['position_error_px'] < 0.5 for c in comps)}/{len(comps)}",
        "companion_pull_mean_std": round(float(means.std(ddof=1)), 2) if means.size > 1 else None,
        "speckle_like": sum(c["status"] != "candidate" for c in comps),
        "collapsed_beats_best_single_channel": beats("best_single_channel_snr"),
        "collapsed_over_best_single_channel": [
            round(c["collapsed_snr"] / c["best_single_channel_snr"], 2) for c in comps
        ],
        "collapsed_beats_best_asdi_channel": beats("best_asdi_channel_snr"),
        "oracle_collapse_beats_best_asdi_channel": (
            f"{sum(c['oracle_collapse_snr'] > c['best_asdi_channel_snr'] for c in comps)}/{len(comps)}"
        ),
        "seconds_median": float(np.median([case["seconds"] for case in cases])),
        "spectrum_passes": [case["spectrum_passes"] for case in cases],
        "rotation_deg": args.rotation,
        "position_fit": args.position_fit,
        "load_average_at_start": [round(v, 2) for v in load],
    }
    print(json.dumps(summary))
    if args.only is not None:
        return 0
    name = "bench_spectral.json" if args.rotation is None else f"bench_spectral_rotation{args.rotation:g}.json"
    out = ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "cases": cases}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
