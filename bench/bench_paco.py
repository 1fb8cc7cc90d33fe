#!/usr/bin/env python
"""HC-DC's vectorised FastPACO against vip-hci's ``FastPACO``, in the same run.

1. Time and agreement on centred, even crops of the real NACO beta Pic cube (61 frames) of growing size:
   vip-hci's ``FastPACO.run`` (its cost per pixel grows with the field: each pixel's patch is
   cut with a mask of the whole cube), HC-DC's ``fast_paco`` with exact shifts (``psf_grid=0``: the same
   computation, vectorised) and with its default grid of shifted models. Agreement: the largest
   difference of the S/N maps and of the flux where ``|S/N| > 3``.
2. Odd frames: three fakes (flux 400, 13 px) in the odd 45-px crop, found by vip-hci's ``FastPACO`` on
   the frame as it is and by HC-DC's engine (the frame padded to even): distance of the S/N peak (2-D
   Gaussian fit) from the truth, and the peak S/N.
3. HC-DC's engine alone on a noise cube of 24 frames (an IRDIS sequence's length) of 201^2 and 961^2
   pixels: seconds and peak memory (vip-hci would need 26 GB for 961^2 and is not run).

One BLAS thread. Writes ``bench/results/bench_paco.json`` with the load average.

    python bench/bench_paco.py [--sizes 30,60,100] [--skip-large]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"


def agreement(ours, reference_snr, reference_flux) -> dict:
    finite = np.isfinite(reference_snr)
    strong = finite & (np.abs(reference_snr) > 3)
    return {
        "same_pixels": bool(np.array_equal(finite, np.isfinite(ours.snr))),
        "pixels": int(finite.sum()),
        "snr_max_abs_difference": float(np.nanmax(np.abs(ours.snr - reference_snr))),
        "flux_max_relative_difference_snr_gt_3": (
            float(np.max(np.abs(ours.flux[strong] / reference_flux[strong] - 1))) if strong.any() else None
        ),
    }


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    out = function(*args, **kwargs)
    return out, time.perf_counter() - started


def main() -> int:
    from reduction.postproc import inject_companions
    from reduction.postproc.detection import subpixel_peak
    from reduction.postproc.paco import fast_paco
    from reduction.postproc.statistical import StatisticalParameters, paco_maps
    from tests.test_paco import vip_fast_paco  # vip-hci's FastPACO at NACO's pixel scale
    from tests.test_postproc_data import PIXEL_SCALE, data_dir, naco_prepared

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30,60,100")
    parser.add_argument("--skip-large", action="store_true", help="leave out the 961-px noise cube")
    args = parser.parse_args()
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "load_average_start": os.getloadavg(),
        "psf_grid": StatisticalParameters().paco_psf_grid,
    }
    if data_dir() is None:
        print("the NACO beta Pic data are not in ../shared/data: parts 1 and 2 skipped")
    else:
        cube, angles, npsf = naco_prepared()
        fwhm = npsf.fwhm
        c = cube.shape[-1] // 2
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            lo = c - size // 2
            crop = cube[:, lo : lo + size, lo : lo + size]
            reference, vip_s = timed(vip_fast_paco, crop, angles, npsf.psf, fwhm)
            exact, exact_s = timed(fast_paco, crop, angles, npsf.psf, fwhm, psf_grid=0)
            grid, grid_s = timed(fast_paco, crop, angles, npsf.psf, fwhm, psf_grid=results["psf_grid"])
            row = {
                "size_px": size,
                "frames": int(crop.shape[0]),
                "vip_s": round(vip_s, 2),
                "hcdc_exact_s": round(exact_s, 2),
                "hcdc_grid_s": round(grid_s, 2),
                "vip_over_hcdc_grid": round(vip_s / grid_s, 1),
                "exact_vs_vip": agreement(exact, reference.snr, reference.flux),
                "grid_vs_vip": agreement(grid, reference.snr, reference.flux),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
        results["naco_even_crops"] = rows

        fakes = []
        yy, xx = np.mgrid[0:45, 0:45]
        for theta in (240.0, 200.0, 120.0):
            crop = inject_companions(cube[:, c - 22 : c + 23, c - 22 : c + 23], npsf.psf, angles, 400.0, 13.0, theta)
            truth = (22 + 13 * math.cos(math.radians(theta)), 22 + 13 * math.sin(math.radians(theta)))
            near = np.hypot(xx - truth[0], yy - truth[1]) < 3
            row = {"theta_deg": theta, "truth_xy": [round(v, 3) for v in truth]}
            raw = vip_fast_paco(crop, angles, npsf.psf, fwhm).snr
            ours = paco_maps(crop, angles, npsf.psf, fwhm, PIXEL_SCALE, StatisticalParameters()).snr
            for name, snr in (("vip_as_is", raw), ("hcdc_padded", ours)):
                work = np.where(near & np.isfinite(snr), snr, -np.inf)
                peak = np.unravel_index(np.argmax(work), work.shape)
                y, x = subpixel_peak(snr, peak, fwhm)
                row[name] = {
                    "error_px": round(math.hypot(x - truth[0], y - truth[1]), 3),
                    "snr": round(float(work[peak]), 2),
                }
            fakes.append(row)
            print(json.dumps(row), flush=True)
        results["odd_crop_fakes"] = fakes

    noise = []
    if data_dir() is not None:
        psf = naco_prepared()[2].psf
    else:
        yy, xx = np.mgrid[-9:10, -9:10]
        psf = np.exp(-(xx**2 + yy**2) / (2 * 2.0**2))
    rng = np.random.default_rng(1)
    for size in (201,) if args.skip_large else (201, 961):
        cube = rng.normal(size=(24, size, size))
        out, seconds = timed(fast_paco, cube, np.linspace(0, 40, 24), psf, 4.6, psf_grid=results["psf_grid"])
        row = {
            "size_px": size,
            "frames": 24,
            "field_rotation_deg": 40,
            "hcdc_grid_s": round(seconds, 1),
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
            "snr_std_over_field": round(float(np.nanstd(out.snr)), 3),
        }
        noise.append(row)
        print(json.dumps(row), flush=True)
    results["noise_cubes"] = noise
    results["load_average_end"] = os.getloadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_paco.json").write_text(json.dumps(results, indent=1))
    print(f"written {RESULTS / 'bench_paco.json'}; load average {results['load_average_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
