#!/usr/bin/env python
"""The contrast gain of archive ARDI over ADI on simulated observations with little field rotation.

A simulated night (``reduction.simulator``: the night's quasi-static aberrations are shared by every
observation, as the instrument's are) with short sequences (``science_span_min`` 15 min instead of 60:
little field rotation); every SPHERE-IRDIS observation is pre-processed by HC-DC. For each observation
whose set-up (filter, coronagraph) another target shares that night, the 5-sigma detection limit of
full-frame PCA-ADI and of ARDI (annular PCA with the other targets' frames, the 100 best correlated,
``reduction.postproc.rdi.select_reference_frames``) are computed with the same injections
(``ContrastCurveStep``), band by band, and their ratio (ADI / ARDI: > 1 when ARDI goes deeper) is
reported at 0.15", 0.25" and 0.5".

Writes ``bench/results/bench_ardi.json``.

    python bench/bench_ardi.py [--seed 12] [--span-min 15] [--ncomp 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SEPARATIONS = (0.15, 0.25, 0.5)


def main() -> int:
    from reduction.postproc.pipeline import ContrastCurveParameters, ContrastCurveStep, PsfSubtractionParameters
    from reduction.postproc.psf import normalize_psf
    from reduction.postproc.rdi import select_reference_frames
    from reduction.preprocess import PreprocessParameters, preprocess_observation
    from reduction.simulator import simulate_archive

    sys.path.insert(0, str(REPO / "tests"))
    from simulated import observation_files  # noqa: E402

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--span-min", type=float, default=15.0)
    parser.add_argument("--ncomp", type=int, default=5)
    parser.add_argument("--frames", type=int, default=100, help="reference frames kept (best correlated)")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="hcdc-bench-ardi-")) / "archive"
    simulate_archive(
        root, nights=1, seed=args.seed, window=256, ifs=False, archival_date=None, science_span_min=args.span_min
    )
    truth = json.loads((root / "truth.json").read_text())
    reduced = {}
    for entry in truth["observations"]:
        if entry["instrument"] != "SPHERE-IRDIS":
            continue
        result = preprocess_observation(observation_files(root, truth, entry), PreprocessParameters())
        angles = np.asarray(result.derotation_deg, dtype=float)
        reduced[entry["obs_id"]] = {
            "entry": entry,
            "cube": np.asarray(result.cube, dtype=float),
            "psf": np.asarray(result.psf, dtype=float),
            "angles": angles,
            "rotation_deg": float(np.ptp(np.rad2deg(np.unwrap(np.deg2rad(angles))))),
            "star_flux": result.star_flux,
            "pixel_scale": float(result.pixel_scale_arcsec),
            "wavelengths": result.wavelengths_um,
        }
        rotation = reduced[entry["obs_id"]]["rotation_deg"]
        print(f"{entry['obs_id']} {entry['target']} {entry['filter']}: rotation {rotation:.1f} deg", flush=True)
    setups = defaultdict(list)
    for key, r in reduced.items():
        setups[(r["entry"]["filter"], r["entry"].get("coronagraph"))].append(key)
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "load_average_start": os.getloadavg(),
        "seed": args.seed,
        "science_span_min": args.span_min,
        "ncomp": args.ncomp,
        "reference_frames": args.frames,
        "observations": [],
    }
    for key, r in reduced.items():
        others = [k for k in setups[(r["entry"]["filter"], r["entry"].get("coronagraph"))] if k != key]
        others = [k for k in others if reduced[k]["entry"]["target"] != r["entry"]["target"]]
        if not others:
            continue
        row = {"observation": key, "target": r["entry"]["target"], "rotation_deg": r["rotation_deg"], "bands": []}
        for band in range(r["cube"].shape[0]):
            cube = r["cube"][band]
            library = np.concatenate([reduced[k]["cube"][band] for k in others])
            npsf = normalize_psf(r["psf"][band], size=19)
            fwhm = npsf.fwhm
            selected, _ = select_reference_frames(cube, library, args.frames, fwhm, 10 * fwhm)
            star_flux = float(r["star_flux"][band]) if r["star_flux"] is not None else None
            curves = {}
            for algorithm in ("pca", "ardi"):
                sub = PsfSubtractionParameters(algorithm=algorithm, ncomp=args.ncomp)
                curves[algorithm] = ContrastCurveStep()(
                    ContrastCurveParameters(),
                    cube=cube,
                    angles=r["angles"],
                    psf=npsf.psf,
                    fwhm=fwhm,
                    subtraction=sub,
                    star_flux=star_flux,
                    pixel_scale=r["pixel_scale"],
                    reference_cube=selected if algorithm == "ardi" else None,
                )
            gains = {}
            for sep in SEPARATIONS:
                values = {}
                for algorithm, curve in curves.items():
                    s = np.asarray(curve.separation_arcsec, dtype=float)
                    c = np.asarray(curve.flux_limit, dtype=float)
                    ok = np.isfinite(c) & (c > 0)
                    values[algorithm] = (
                        float(10 ** np.interp(sep, s[ok], np.log10(c[ok])))
                        if s[ok].min() <= sep <= s[ok].max()
                        else None
                    )
                gains[str(sep)] = values["pca"] / values["ardi"] if values["pca"] and values["ardi"] else None
            row["bands"].append(
                {"band": band + 1, "wavelength_um": r["wavelengths"][band], "gain_adi_over_ardi": gains}
            )
            print(
                f"  {key} band {band + 1}: ADI/ARDI limit at "
                + ", ".join(f'{s}": {g:.2f}' if g else f'{s}": n/a' for s, g in gains.items()),
                flush=True,
            )
        results["observations"].append(row)
    results["load_average_end"] = os.getloadavg()
    target = REPO / "bench" / "results" / "bench_ardi.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=1))
    print(f"written {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
