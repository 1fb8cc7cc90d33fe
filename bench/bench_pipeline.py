"""Campaign throughput and the pipeline's overhead per step.

1. Overhead: one realistic observation (full-detector IRDIS DBI, 64 frames of
   1024 x 1024 per band; the archive of bench_preprocess.py) goes through the
   campaign (papermill notebooks in the ``hcdc`` kernel, provenance, database,
   HTML report). The same science is then timed in-process with warm imports
   (``preprocess_observation`` + ``postprocess`` of each band). Overhead =
   (step wall time - science time) / science time.
2. Throughput: a campaign over a simulated archive (3 nights, 256-px windows)
   on the local dask cluster (2 workers on this 2-core machine): observations per hour.

    .venv/bin/python bench/bench_pipeline.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcdc.catalog import Catalog  # noqa: E402
from hcdc.ingest import ingest  # noqa: E402
from hcdc.pipeline.campaign import load_parameters, reprocess  # noqa: E402
from hcdc.settings import Settings  # noqa: E402
from reduction.postproc.pipeline import PostprocessParameters, postprocess  # noqa: E402
from reduction.preprocessing import preprocess_observation  # noqa: E402
from reduction.simulator import simulate_archive  # noqa: E402
from tests.test_preprocessing import _files  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def overhead(work: Path) -> dict:
    archive = work / "realistic" / "archive"
    if not (archive / "truth.json").exists():
        simulate_archive(archive, nights=1, seed=8, window=None, ifs=False, obs_per_night=1, frames_per_cube=16,
                         science_files_per_ob=4, degraded_frames=False)
    url = f"sqlite:///{work / 'realistic.sqlite'}"
    Path(url[10:]).unlink(missing_ok=True)
    catalog = Catalog(url)
    ingest(archive / "raw", catalog)
    settings = Settings(data_dir=work / "realistic-data", catalog_url=url)
    parameters = load_parameters()
    report = reprocess(catalog, settings, campaign="bench", executor="serial", parameters=parameters)
    steps = {s.step: s for r in report.results for s in r.steps}
    assert all(s.status == "done" for s in steps.values()), steps

    truth = json.loads((archive / "truth.json").read_text())
    entry = next(e for e in truth["observations"] if e["instrument"] == "SPHERE-IRDIS")
    files = _files(archive, truth, entry)
    preprocess_observation(files)  # warm imports and the IERS table
    t0 = time.perf_counter()
    result = preprocess_observation(files)
    science_pre = time.perf_counter() - t0
    params = PostprocessParameters.from_dict(parameters["postprocess"])
    t0 = time.perf_counter()
    for band in range(result.cube.shape[0]):
        postprocess(result.cube[band], result.derotation_deg, result.psf[band], result.pixel_scale_arcsec,
                    star_flux=result.star_flux[band], params=params)
    science_post = time.perf_counter() - t0
    out = {}
    for name, science in (("preprocess", science_pre), ("postprocess", science_post)):
        wall = steps[name].seconds
        out[name] = {"step_wall_s": wall, "science_s": science, "overhead_s": wall - science,
                     "overhead_fraction": (wall - science) / science}
    total_wall = sum(v["step_wall_s"] for v in out.values())
    total_science = science_pre + science_post
    out["observation"] = {"wall_s": total_wall, "science_s": total_science,
                          "overhead_fraction": (total_wall - total_science) / total_science}
    return out


def throughput(work: Path) -> dict:
    archive = work / "demo" / "archive"
    if not (archive / "truth.json").exists():
        simulate_archive(archive, nights=3, seed=1, window=256)
    url = f"sqlite:///{work / 'throughput.sqlite'}"
    Path(url[10:]).unlink(missing_ok=True)
    catalog = Catalog(url)
    ingest(archive / "raw", catalog)
    settings = Settings(data_dir=work / "throughput-data", catalog_url=url, local_workers=2)
    report = reprocess(catalog, settings, campaign="bench", executor="local",
                       query="instrument=SPHERE-IRDIS")
    processed = sum(1 for r in report.results if any(s.status == "done" for s in r.steps))
    return {"observations": processed, "seconds": report.seconds,
            "observations_per_hour": processed / report.seconds * 3600, "failures": len(report.failures)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="hcdc-bench-pipeline-"))
    work.mkdir(parents=True, exist_ok=True)
    results = {"overhead": overhead(work)}
    if not args.skip_throughput:
        results["throughput"] = throughput(work)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pipeline.json").write_text(json.dumps(results, indent=2))
    for step in ("preprocess", "postprocess", "observation"):
        r = results["overhead"][step]
        wall = r.get("step_wall_s", r.get("wall_s"))
        print(f"{step:12s} wall {wall:7.1f} s  science {r['science_s']:7.1f} s  overhead {r['overhead_fraction']:6.1%}")
    if "throughput" in results:
        t = results["throughput"]
        print(f"campaign on the local cluster: {t['observations']} observations in {t['seconds']:.0f} s = "
              f"{t['observations_per_hour']:.0f} observations/hour ({t['failures']} failures)")


if __name__ == "__main__":
    main()
