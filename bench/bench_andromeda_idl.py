#!/usr/bin/env python
"""HC-DC's ANDROMEDA step (vip-hci) against the IDL ANDROMEDA maps of the NACO beta Pic cube.

``shared/data/naco_betapic/andromeda_idl_reference.npz`` holds the output of the IDL implementation
(Cantalloube) for this cube, made in 2018 for vip-hci's own test, with these inputs (its SOURCES.md):
the cube cropped to 100x100, the PSF normalised by vip-hci to 38 px, oversampling 1, no high-pass filter,
min_sep 0.3, no optimisation of the pair subtraction, no S/N smoothing, homogeneous variance; IDL takes
parallactic angles, vip-hci >= 1.0 their opposite. vip-hci's test required contrast atol 1e-2 and S/N atol
1e-4.

The step (:func:`reduction.postproc.statistical.andromeda_maps`) is run on exactly those inputs, and each
map is compared with the reference outside 8 px (2 FWHM) where the star's residuals dominate (and
everywhere the reference is defined): the largest and median absolute differences, the correlation, the
ratio of the contrasts, and the pixels within vip-hci's tolerances. Variants that could explain a
mismatch (which 100 pixels of the 101-pixel frame; the half-pixel shift vip-hci >= 1.0 applies to an
even-sized PSF) are run too. Writes ``bench/results/bench_andromeda_idl.json``.

Known: vip-hci removed this comparison from its own tests in March 2019 (commit 9e8fcd37) and changed
its centre convention of even-sized frames in October 2021 (commit 69d72691).

    python bench/bench_andromeda_idl.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: vip-hci's tolerances for this comparison (its tests/test_andromeda.py of 2018), rtol 1e-5 for all
TOLERANCES = {
    "contrast": 1e-2,
    "snr": 1e-4,
    "snr_norm": 1e-4,
    "stdcontrast": 1e-6,
    "stdcontrast_norm": 1e-6,
    "likelihood": 1e-4,
}
INNER_PX = 8.0


def _maps(cube, angles, psf, params) -> dict[str, np.ndarray]:
    from reduction.postproc.statistical import andromeda_maps

    maps = andromeda_maps(cube, -angles, psf, 2.0, params)  # fwhm 2: the mask is 1 lambda/D at oversampling 1
    return {
        "contrast": maps.flux,
        "snr": maps.other_maps["snr"],
        "snr_norm": maps.snr,
        "stdcontrast": maps.other_maps["stdcontrast"],
        "stdcontrast_norm": maps.flux_std,
        "likelihood": maps.other_maps["likelihood"],
    }


def compare(ours: dict[str, np.ndarray], reference) -> dict:
    out = {}
    shape = reference["andromeda_snr_1"].shape
    yy, xx = np.indices(shape)
    outer = np.hypot(yy - shape[0] // 2, xx - shape[1] // 2) >= INNER_PX
    for name, atol in TOLERANCES.items():
        theirs = np.asarray(reference[f"andromeda_{name}_1"], dtype=float)
        mine = np.asarray(ours[name], dtype=float)
        used = outer & np.isfinite(mine) & (theirs != 0)
        diff = np.abs(mine[used] - theirs[used])
        within = diff <= atol + 1e-5 * np.abs(theirs[used])
        out[name] = {
            "pixels": int(used.sum()),
            "max_abs_diff": float(diff.max()),
            "median_abs_diff": float(np.median(diff)),
            "reference_rms": float(theirs[used].std()),
            "correlation": float(np.corrcoef(mine[used], theirs[used])[0, 1]),
            "median_ratio": float(np.median(mine[used] / theirs[used])),
            "fraction_within_tolerance": float(within.mean()),
        }
    return out


def main() -> int:
    from astropy.io import fits
    from vip_hci.fm import normalize_psf
    from vip_hci.preproc import frame_shift

    from reduction.postproc.statistical import StatisticalParameters

    base = Path(os.environ.get("HCDC_REFERENCE_DATA", REPO.parent / "shared" / "data")) / "naco_betapic"
    reference_file = base / "andromeda_idl_reference.npz"
    if not reference_file.is_file():
        print(f"{reference_file} not found: nothing to compare", file=sys.stderr)
        return 1
    reference = np.load(reference_file)
    cube = fits.getdata(base / "naco_betapic_cube.fits").astype(float)
    angles = fits.getdata(base / "naco_betapic_pa.fits").astype(float).ravel()
    psf = fits.getdata(base / "naco_betapic_psf.fits").astype(float)
    psf38 = normalize_psf(psf, fwhm="fit", size=38, force_odd=False, verbose=False)
    params = StatisticalParameters(
        andromeda_oversampling=1.0,
        andromeda_filtering_fraction=1.0,
        andromeda_min_sep=0.3,
        andromeda_opt_method="no",
        andromeda_nsmooth_snr=0,
        andromeda_iwa=1.0,
    )
    variants = {
        "as documented (frame[0:100], vip PSF)": (cube[:, :100, :100], psf38),
        "frame[1:101]": (cube[:, 1:, 1:], psf38),
        "PSF shifted back by half a pixel": (cube[:, :100, :100], frame_shift(psf38, 0.5, 0.5, imlib="vip-fft")),
    }
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "load_average_start": os.getloadavg(),
        "inner_px_excluded": INNER_PX,
        "variants": {},
    }
    for name, (frames, kernel) in variants.items():
        started = time.perf_counter()
        comparison = compare(_maps(frames, angles, kernel, params), reference)
        results["variants"][name] = {"seconds": time.perf_counter() - started, "maps": comparison}
        print(f"\n== {name} ({results['variants'][name]['seconds']:.1f} s)")
        print(
            f"{'map':18s} {'max|d|':>10s} {'median|d|':>10s} {'ref rms':>10s} {'corr':>6s} {'ratio':>6s} {'within':>7s}"
        )
        for map_name, c in comparison.items():
            print(
                f"{map_name:18s} {c['max_abs_diff']:10.3g} {c['median_abs_diff']:10.3g} {c['reference_rms']:10.3g} "
                f"{c['correlation']:6.3f} {c['median_ratio']:6.3f} {100 * c['fraction_within_tolerance']:6.1f}%"
            )
    results["load_average_end"] = os.getloadavg()
    target = REPO / "bench" / "results" / "bench_andromeda_idl.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1))
    print(f"\nwritten {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
