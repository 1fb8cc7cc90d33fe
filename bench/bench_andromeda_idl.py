#!/usr/bin/env python
"""HC-DC's ANDROMEDA step (vip-hci, one line mended) against the IDL ANDROMEDA maps of the NACO beta Pic cube.

``shared/data/naco_betapic/andromeda_idl_reference.npz`` holds the output of the IDL implementation
(Cantalloube) for this cube, made in 2018 for vip-hci's own test; ``tests/andromeda_idl.py`` rebuilds
its inputs (the 2018 crop, the 2018 PSF normalisation with OpenCV's Lanczos-4 shifts, float32 angles,
ANDROMEDA's own inner working angle) and compares maps. Three runs:

* ``mended, IDL's inputs``: the step as HC-DC runs it, with vip-hci's half-pixel shift of even frames
  skipped so that the algorithm gets exactly IDL's inputs;
* ``vip-hci as released, IDL's inputs``: the same with vip-hci's own ``andromeda_core`` (its sub-pixel
  rounding: ``reduction.postproc.statistical.VIP_SUBPIXEL_ROUNDING``);
* ``mended, through vip-hci's centre convention``: cube and PSF moved by half a pixel to vip-hci >= 1.0's
  centre of an even frame (``n / 2``) and back by vip-hci itself (FFT shifts, which drop the Nyquist
  frequency): what the step does to every even-sized frame.

Each map is compared outside 2 lambda/D (4 px): largest and median absolute differences, correlation,
median ratio, and the fraction of pixels within vip-hci's 2018 tolerances (contrast atol 1e-2, S/N atol
1e-4, rtol 1e-5). Writes ``bench/results/bench_andromeda_idl.json``.

    python bench/bench_andromeda_idl.py
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

INNER_PX = 4.0


def compare(ours: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> dict:
    from tests.andromeda_idl import TOLERANCES, compared_pixels, within_tolerance

    out = {}
    for name in TOLERANCES:
        theirs, mine = reference[name], np.asarray(ours[name], dtype=float)
        used = compared_pixels(theirs, INNER_PX) & np.isfinite(mine)
        diff = np.abs(mine[used] - theirs[used])
        out[name] = {
            "pixels": int(used.sum()),
            "max_abs_diff": float(diff.max()),
            "median_abs_diff": float(np.median(diff)),
            "reference_rms": float(theirs[used].std()),
            "correlation": float(np.corrcoef(mine[used], theirs[used])[0, 1]),
            "median_ratio": float(np.median(mine[used] / theirs[used])),
            "fraction_within_tolerance": float(within_tolerance(name, mine, theirs)[used].mean()),
        }
    return out


def main() -> int:
    import importlib

    import pytest

    from reduction.postproc.statistical import andromeda_core
    from tests.andromeda_idl import andromeda_idl_maps, idl_inputs, vip_centre_shift_skipped

    try:
        inputs = idl_inputs()
    except pytest.skip.Exception as reason:
        print(reason, file=sys.stderr)
        return 1
    subpixel_shift = importlib.import_module("vip_hci.invprob.utils_andro").subpixel_shift

    def mended():
        with vip_centre_shift_skipped():
            return andromeda_idl_maps(inputs)

    def released():
        own = getattr(andromeda_core(), "vip_released", andromeda_core())
        statistical = importlib.import_module("reduction.postproc.statistical")
        with vip_centre_shift_skipped(), pytest.MonkeyPatch.context() as patch:
            patch.setattr(statistical, "andromeda_core", lambda: own)
            return andromeda_idl_maps(inputs)

    def through_convention():
        moved = replace(
            inputs,
            cube=np.stack([subpixel_shift(frame, 0.5, 0.5) for frame in inputs.cube]),
            psf=subpixel_shift(inputs.psf, 0.5, 0.5),
        )
        return andromeda_idl_maps(moved)

    variants = {
        "mended, IDL's inputs": mended,
        "vip-hci as released, IDL's inputs": released,
        "mended, through vip-hci's centre convention": through_convention,
    }
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "load_average_start": os.getloadavg(),
        "inner_px_excluded": INNER_PX,
        "variants": {},
    }
    for name, run in variants.items():
        started = time.perf_counter()
        comparison = compare(run(), inputs.reference)
        results["variants"][name] = {"seconds": time.perf_counter() - started, "maps": comparison}
        print(f"\n== {name} ({results['variants'][name]['seconds']:.1f} s)")
        print(
            f"{'map':18s} {'max|d|':>10s} {'median|d|':>10s} {'ref rms':>10s} {'corr':>9s} {'ratio':>8s} {'within':>7s}"
        )
        for map_name, c in comparison.items():
            print(
                f"{map_name:18s} {c['max_abs_diff']:10.3g} {c['median_abs_diff']:10.3g} {c['reference_rms']:10.3g} "
                f"{c['correlation']:9.6f} {c['median_ratio']:8.5f} {100 * c['fraction_within_tolerance']:6.2f}%"
            )
    results["load_average_end"] = os.getloadavg()
    target = REPO / "bench" / "results" / "bench_andromeda_idl.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1))
    print(f"\nwritten {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
