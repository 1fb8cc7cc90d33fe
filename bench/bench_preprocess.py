"""Pre-processing throughput on a full-frame IRDIS DBI sequence.

Simulates one full-detector (1024 x 2048) IRDIS DBI observing block with 64 science
frames per band (4 OBJECT files x NDIT 16), then measures, in one process:

* the I/O floor: reading every raw file of the observation (science, CENTER, FLUX,
  SKY, calibrations) into float32 arrays *with its sha256* (what a traceable
  pipeline cannot skip), with the pre-processing's own reader, from the page
  cache and from disk (pages evicted with ``posix_fadvise(DONTNEED)``);
  astropy's plain read is shown for comparison;
* the full pre-processing (`reduction.preprocess.preprocess_observation`):
  master calibrations, calibration, waffle centring, angles, crops, bad-frame
  rejection, PSF; for the first observation of a night (masters computed) and
  for the next ones (masters reused), from the page cache and from disk;
* frames per second (science frames x bands) and peak resident memory.

    .venv/bin/python bench/bench_preprocess.py [--keep DIR] [--frames 16]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from reduction.preprocess import calibrate, preprocess_observation, reading
from reduction.simulator import simulate_archive

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.test_preprocessing import _files  # noqa: E402  (truth -> ObservationFiles)

RESULTS = Path(__file__).resolve().parent / "results"


def evict(paths) -> None:
    """Drop the files' pages from the page cache (no root needed)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def timed(function, *args, repeat: int = 3, before=None) -> float:
    best = float("inf")
    for _ in range(repeat):
        if before:
            before()
        t0 = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, default=None)
    parser.add_argument("--frames", type=int, default=16, help="NDIT of each of the 4 OBJECT files")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs per figure")
    args = parser.parse_args()
    root = (args.keep or Path(tempfile.mkdtemp(prefix="hcdc-bench-pre-"))) / "archive"
    if not (root / "truth.json").exists():
        t0 = time.perf_counter()
        simulate_archive(
            root,
            nights=1,
            seed=8,
            window=None,
            ifs=False,
            obs_per_night=1,
            frames_per_cube=args.frames,
            science_files_per_ob=4,
            degraded_frames=False,
        )
        print(f"simulated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    truth = json.loads((root / "truth.json").read_text())
    entry = next(e for e in truth["observations"] if e["instrument"] == "SPHERE-IRDIS")
    files = _files(root, truth, entry)
    paths = sorted(set(files.all_paths()))
    size = sum(p.stat().st_size for p in paths)

    def astropy_read():
        for path in paths:
            with fits.open(path, memmap=False) as hdul:
                np.asarray(hdul[0].data, dtype=np.float32)

    def floor():
        reading.read_all(paths, [])

    def new_night():
        calibrate.clear_master_cache()
        preprocess_observation(files)

    t0 = time.perf_counter()
    result = preprocess_observation(files)  # first call: also loads the IERS table
    first = time.perf_counter() - t0
    n = args.repeat
    figures = {
        "io_astropy_s": timed(astropy_read, repeat=n),
        "io_floor_cached_s": timed(floor, repeat=n),
        "io_floor_disk_s": timed(floor, repeat=n, before=lambda: evict(paths)),
        "first_call_s": first,
        "new_night_cached_s": timed(new_night, repeat=n),
        "new_night_disk_s": timed(new_night, repeat=n, before=lambda: evict(paths)),
        "same_night_cached_s": timed(preprocess_observation, files, repeat=n),
        "same_night_disk_s": timed(preprocess_observation, files, repeat=n, before=lambda: evict(paths)),
    }
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_frames = len(result.frames)
    out = {
        "raw_files": len(paths),
        "raw_mb": size / 1e6,
        "science_frames": n_frames,
        "frame_shape_per_band": [1024, 1024],
        "bands": 2,
        **figures,
        "peak_rss_mb": peak_mb,
        "cube_shape": list(result.cube.shape),
    }
    for case in ("new_night", "same_night"):
        for where in ("cached", "disk"):
            seconds = figures[f"{case}_{where}_s"]
            out[f"{case}_{where}_band_frames_per_second"] = 2 * n_frames / seconds
            out[f"{case}_{where}_io_fraction"] = figures[f"io_floor_{where}_s"] / seconds
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "preprocess.json").write_text(json.dumps(out, indent=2))
    print(f"{len(paths)} raw files, {size / 1e6:.0f} MB; {n_frames} science frames x 2 bands of 1024x1024; best of {n}")
    print(
        f"I/O floor (read + sha256 + decode to float32): page cache {figures['io_floor_cached_s']:.2f} s, "
        f"disk {figures['io_floor_disk_s']:.2f} s   (astropy read alone {figures['io_astropy_s']:.2f} s)"
    )
    print(f"first call in a process (IERS table load): {first:.2f} s")
    for case, label in (
        ("new_night", "first observation of a night (masters computed)"),
        ("same_night", "next observations of the night (masters reused)"),
    ):
        for where in ("cached", "disk"):
            seconds = figures[f"{case}_{where}_s"]
            print(
                f"{label:50s} {where:6s}: {seconds:5.2f} s  {2 * n_frames / seconds:6.1f} band-frames/s  "
                f"I/O floor = {figures[f'io_floor_{where}_s'] / seconds:4.0%} of it"
            )
    print(f"peak RSS {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
