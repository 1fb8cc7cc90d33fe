"""Pre-processing throughput on a full-frame IRDIS DBI sequence.

Simulates one full-detector (1024 x 2048) IRDIS DBI observing block with 64 science
frames per band (4 OBJECT files x NDIT 16), then measures, in one process:

* the I/O floor: reading every raw file of the observation (science, CENTER, FLUX,
  SKY, calibrations) from disk into float32 arrays;
* the full pre-processing (`reduction.preprocessing.preprocess_observation`):
  master calibrations, calibration of every frame, waffle centring, angles, crops,
  bad-frame rejection, PSF;
* frames per second (science frames x bands) and peak resident memory.

    .venv/bin/python bench/bench_preprocess.py [--keep DIR] [--frames 16]
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from reduction.preprocessing import preprocess_observation
from reduction.simulator import simulate_archive

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_preprocessing import _files  # noqa: E402  (truth -> ObservationFiles)

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=16, help="NDIT of each of the 4 OBJECT files")
    args = parser.parse_args()
    root = (args.keep or Path(tempfile.mkdtemp(prefix="hcdc-bench-pre-"))) / "archive"
    if not (root / "truth.json").exists():
        t0 = time.perf_counter()
        simulate_archive(root, nights=1, seed=8, window=None, ifs=False, obs_per_night=1,
                         frames_per_cube=args.frames, science_files_per_ob=4, degraded_frames=False)
        print(f"simulated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    truth = json.loads((root / "truth.json").read_text())
    entry = next(e for e in truth["observations"] if e["instrument"] == "SPHERE-IRDIS")
    files = _files(root, truth, entry)
    paths = sorted(set(files.all_paths()))
    size = sum(p.stat().st_size for p in paths)

    t0 = time.perf_counter()
    for path in paths:
        with fits.open(path, memmap=False) as hdul:
            np.asarray(hdul[0].data, dtype=np.float32)
    io_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    result = preprocess_observation(files)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    preprocess_observation(files)  # warm: imports, IERS table and the night's master calibrations reused
    warm = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_frames = len(result.frames)
    out = {"raw_files": len(paths), "raw_mb": size / 1e6, "science_frames": n_frames,
           "frame_shape_per_band": [1024, 1024], "bands": 2, "io_seconds": io_seconds,
           "preprocess_seconds": seconds, "frames_per_second": n_frames / seconds,
           "band_frames_per_second": 2 * n_frames / seconds, "io_fraction": io_seconds / seconds,
           "warm_seconds": warm, "warm_frames_per_second": n_frames / warm, "warm_io_fraction": io_seconds / warm,
           "peak_rss_mb": peak_mb, "cube_shape": list(result.cube.shape)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "preprocess.json").write_text(json.dumps(out, indent=2))
    print(f"{len(paths)} raw files, {size / 1e6:.0f} MB; {n_frames} science frames x 2 bands of 1024x1024")
    print(f"reading all inputs: {io_seconds:.1f} s   pre-processing: {seconds:.1f} s "
          f"({n_frames / seconds:.1f} frames/s, {2 * n_frames / seconds:.1f} band-frames/s)")
    print(f"warm (second observation of the night in the same worker): {warm:.1f} s "
          f"({n_frames / warm:.1f} frames/s)")
    print(f"I/O share of the pre-processing time: cold {io_seconds / seconds:.0%}, warm {io_seconds / warm:.0%}"
          f"   peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
