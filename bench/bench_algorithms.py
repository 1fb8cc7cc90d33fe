#!/usr/bin/env python
"""What each post-processing algorithm costs, and the campaign's throughput with its default list.

1. Per algorithm, the whole post-processing step (``reduction.postproc.pipeline.postprocess``: PSF
   subtraction or statistical map, candidates, NEGFC of each with the campaign's 4 injections, the
   detection limit) and the algorithm's own part alone (its residual image or maps), on

   * the real NACO beta Pic cube (61 x 101 x 101, re-centred as in the VIP tutorial);
   * a simulated SPHERE-IRDIS observation pre-processed by HC-DC on the whole field of a band (1023 px),
     and the same cropped to the campaign's 201-px field.

   ``--skip-paco-full``: PACO on the full IRDIS frame is left out (vip-hci's own FastPACO,
   ``paco_engine='vip'``, costs more per pixel the larger the field: hours; HC-DC's default engine: minutes).
2. Throughput: the systematic campaign over a simulated archive (3 nights, 256-px windows, 2 local
   dask workers) with the default algorithm list (PCA + ANDROMEDA) and with PCA alone.

One BLAS thread. Writes ``bench/results/bench_algorithms.json``; the load average is recorded.

    python bench/bench_algorithms.py [--skip-paco-full] [--skip-throughput] [--algorithms pca,andromeda]
        [--datasets full --full-algorithms andromeda,paco --full-algorithm-only --merge]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"
ALGORITHMS = ("pca", "annular-pca", "cadi", "andromeda", "paco")
#: the largest centred field of an IRDIS band (1024 x 1024 detector half; odd, star on a pixel)
FULL_CROP = 1023
#: the campaign's field (PreprocessParameters.crop_px)
CAMPAIGN_CROP = 201


def naco() -> dict | None:
    from astropy.io import fits

    from reduction.postproc import normalize_psf, recenter_cube

    base = Path(os.environ.get("HCDC_REFERENCE_DATA", REPO.parent / "shared" / "data")) / "naco_betapic"
    if not (base / "naco_betapic_cube.fits").is_file():
        return None
    cube = fits.getdata(base / "naco_betapic_cube.fits").astype(float)
    angles = fits.getdata(base / "naco_betapic_pa.fits").astype(float).ravel()
    psf = fits.getdata(base / "naco_betapic_psf.fits").astype(float)
    cube = recenter_cube(cube, normalize_psf(psf).fwhm, xy=(51, 51)).cube
    return {"cube": cube, "angles": angles, "psf": psf, "pixel_scale": 0.02719, "star_flux": 764939.6, "ncomp": 20}


def irdis_full(work: Path) -> dict:
    from reduction.preprocess import PreprocessParameters, preprocess_observation
    from reduction.simulator import simulate_archive

    sys.path.insert(0, str(REPO / "tests"))
    from simulated import observation_files  # noqa: E402

    root = work / "irdis-full"
    simulate_archive(root, nights=1, seed=8, window=None, ifs=False, obs_per_night=1)
    truth = json.loads((root / "truth.json").read_text())
    entry = next(e for e in truth["observations"] if e["instrument"] == "SPHERE-IRDIS")
    result = preprocess_observation(observation_files(root, truth, entry), PreprocessParameters(crop_px=FULL_CROP))
    return {
        "cube": np.asarray(result.cube[0], dtype=float),
        "angles": np.asarray(result.derotation_deg, dtype=float),
        "psf": np.asarray(result.psf[0], dtype=float),
        "pixel_scale": float(result.pixel_scale_arcsec),
        "star_flux": float(result.star_flux[0]) if result.star_flux is not None else None,
        "ncomp": 5,
    }


def crop(data: dict, size: int) -> dict:
    n = data["cube"].shape[-1]
    lo = n // 2 - size // 2
    return dict(data, cube=data["cube"][:, lo : lo + size, lo : lo + size])


def time_algorithm(data: dict, algorithm: str, whole_step: bool = True) -> dict:
    from reduction.postproc.pipeline import (
        CharacterisationParameters,
        PostprocessParameters,
        PsfSubtractionParameters,
        postprocess,
        subtract_psf,
    )
    from reduction.postproc.psf import normalize_psf
    from reduction.postproc.statistical import STATISTICAL_ALGORITHMS, StatisticalParameters, statistical_maps

    npsf = normalize_psf(data["psf"], size=min(19, min(data["psf"].shape)))
    sub = PsfSubtractionParameters(algorithm=algorithm, ncomp=data["ncomp"])
    started = time.perf_counter()
    if algorithm in STATISTICAL_ALGORITHMS:
        statistical_maps(
            algorithm, data["cube"], data["angles"], npsf.psf, npsf.fwhm, data["pixel_scale"], StatisticalParameters()
        )
    else:
        subtract_psf(data["cube"], data["angles"], sub, fwhm=npsf.fwhm)
    algorithm_s = time.perf_counter() - started
    row = {"algorithm_s": algorithm_s, "frames": int(data["cube"].shape[0]), "size_px": int(data["cube"].shape[-1])}
    if not whole_step:
        return dict(row, step_s=None, candidates=None, load_average=os.getloadavg())
    params = PostprocessParameters(
        subtraction=sub, characterisation=CharacterisationParameters(ncomp=data["ncomp"], n_injections=4)
    )
    started = time.perf_counter()
    result = postprocess(
        data["cube"], data["angles"], data["psf"], data["pixel_scale"], star_flux=data["star_flux"], params=params
    )
    step_s = time.perf_counter() - started
    return dict(row, step_s=step_s, candidates=len(result.characterised), load_average=os.getloadavg())


def throughput(work: Path, confirm_with: str) -> dict:
    from hcdc.catalog import Catalog
    from hcdc.ingest import ingest
    from hcdc.pipeline.campaign import load_parameters, reprocess
    from hcdc.settings import Settings
    from reduction.simulator import simulate_archive

    archive = work / "demo" / "archive"
    if not (archive / "truth.json").exists():
        simulate_archive(archive, nights=3, seed=1, window=256)
    tag = confirm_with or "pca-only"
    url = f"sqlite:///{work / f'throughput-{tag}.sqlite'}"
    catalog = Catalog(url)
    ingest(archive / "raw", catalog)
    settings = Settings(data_dir=work / f"throughput-{tag}", catalog_url=url, local_workers=2)
    parameters = load_parameters()
    parameters["postprocess"]["confirm_with"] = confirm_with
    report = reprocess(
        catalog, settings, campaign="bench", executor="local", query="instrument=SPHERE-IRDIS", parameters=parameters
    )
    processed = sum(1 for r in report.results if any(s.status == "done" for s in r.steps))
    catalog.dispose()
    return {
        "confirm_with": confirm_with,
        "observations": processed,
        "seconds": report.seconds,
        "observations_per_hour": processed / report.seconds * 3600,
        "failures": len(report.failures),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS))
    parser.add_argument("--skip-paco-full", action="store_true")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-full", action="store_true", help="leave out the full-frame IRDIS observation")
    parser.add_argument("--datasets", default="naco,campaign,full", help="which of naco, campaign, full")
    parser.add_argument("--full-algorithms", default=None, help="algorithms on the full frame (default: --algorithms)")
    parser.add_argument("--merge", action="store_true", help="add to bench/results/bench_algorithms.json")
    parser.add_argument(
        "--full-algorithm-only",
        action="store_true",
        help="on the full frame, time the algorithm alone (its maps or residual image), not the whole step",
    )
    args = parser.parse_args()
    wanted = {d.strip() for d in args.datasets.split(",")}
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    work = Path(tempfile.mkdtemp(prefix="hcdc-bench-algorithms-"))
    results = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "load_average_start": os.getloadavg(),
        "datasets": {},
    }
    previous = RESULTS / "bench_algorithms.json"
    if args.merge and previous.is_file():  # earlier runs' rows stay (each row is one run's measurement)
        earlier = json.loads(previous.read_text())
        results["datasets"] = earlier.get("datasets", {})
        results["merged_runs"] = earlier.get("merged_runs", []) + [earlier.get("date")]
        if "throughput" in earlier:  # replaced only by a run that measures it
            results["throughput"] = earlier["throughput"]
    datasets = {}
    data = naco() if "naco" in wanted else None
    if data is not None:
        datasets["NACO beta Pic (61 x 101 x 101)"] = data
    if not args.skip_full and wanted & {"campaign", "full"}:
        full = irdis_full(work)
        n = full["cube"].shape
        if "campaign" in wanted:
            datasets[f"IRDIS campaign field ({n[0]} x {CAMPAIGN_CROP} x {CAMPAIGN_CROP})"] = crop(full, CAMPAIGN_CROP)
        if "full" in wanted:
            datasets[f"IRDIS full frame ({n[0]} x {n[1]} x {n[2]})"] = full
    full_algorithms = (
        [a.strip() for a in args.full_algorithms.split(",") if a.strip()] if args.full_algorithms else algorithms
    )

    def save() -> None:
        results["load_average_end"] = os.getloadavg()
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "bench_algorithms.json").write_text(json.dumps(results, indent=1))

    for name, data in datasets.items():
        results["datasets"].setdefault(name, {})
        for algorithm in full_algorithms if "full frame" in name else algorithms:
            if algorithm == "paco" and "full frame" in name and args.skip_paco_full:
                continue
            print(f"{name}: {algorithm} ...", flush=True)
            row = time_algorithm(data, algorithm, whole_step=not ("full frame" in name and args.full_algorithm_only))
            results["datasets"][name][algorithm] = row
            step = "not run" if row["step_s"] is None else f"{row['step_s']:8.1f} s"
            print(
                f"   algorithm {row['algorithm_s']:8.1f} s   whole step {step}   "
                f"({row['candidates']} candidates characterised)",
                flush=True,
            )
            save()
    if not args.skip_throughput:
        results["throughput"] = [throughput(work, "andromeda"), throughput(work, "")]
        for t in results["throughput"]:
            print(
                f"campaign, confirm_with={t['confirm_with'] or '(none)'}: {t['observations']} observations in "
                f"{t['seconds']:.0f} s = {t['observations_per_hour']:.0f}/hour ({t['failures']} failures)"
            )
    save()
    print(f"written {RESULTS / 'bench_algorithms.json'}; load average {results['load_average_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
