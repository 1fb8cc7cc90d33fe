"""Ingest throughput: headers classified and recorded per second.

Simulates an archive of >= 2,000 raw SPHERE files (tiny pixel arrays, real
headers: `headers_only=True`), then measures, in the same run:

* the header-reading floor: read + validate + sha256 + classify every file, no database;
* a full `hcdc ingest` into a fresh SQLite catalog and into the local PostgreSQL,
  with 1 and 2 header-reading processes;
* a second (idempotent) ingest of the same archive.

The goal is for the full ingest to run close to the header-reading floor
(inserts are batched). Results are printed and written to bench/results/ingest.json.

    .venv/bin/python bench/bench_ingest.py [--nights 26] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from hcdc.catalog import Catalog
from hcdc.ingest import _examine, ingest, walk_archive
from reduction.simulator import simulate_archive

RESULTS = Path(__file__).resolve().parent / "results"
PG_ADMIN = os.environ.get("HCDC_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def postgres_url() -> tuple[str, callable] | tuple[None, None]:
    name = f"hcdc_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no PostgreSQL here
        print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
        return None, None

    def drop():
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nights", type=int, default=26)
    parser.add_argument("--keep", type=Path, default=None, help="Archive folder to reuse/keep.")
    args = parser.parse_args()
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hcdc-bench-ingest-"))
    archive = work / "archive"
    if not (archive / "truth.json").exists():
        t0 = time.perf_counter()
        simulate_archive(archive, nights=args.nights, seed=3, window=32, headers_only=True)
        print(f"simulated {args.nights} nights in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    files, _ = walk_archive(archive / "raw")
    n = len(files)
    results: dict[str, object] = {"files": n, "bytes": sum(f.stat().st_size for f in files)}

    t0 = time.perf_counter()
    for path in files:
        _examine(str(path))
    floor = time.perf_counter() - t0
    results["header_floor_files_per_s"] = n / floor

    runs = []
    for backend in ("sqlite", "postgresql"):
        for workers in (1, 2):
            drop = None
            if backend == "sqlite":
                url = f"sqlite:///{work / f'bench-{workers}.sqlite'}"
                Path(url[10:]).unlink(missing_ok=True)
            else:
                url, drop = postgres_url()
                if url is None:
                    continue
            catalog = Catalog(url)
            report = ingest(archive / "raw", catalog, programmes=archive / "programmes.ecsv", workers=workers)
            again = ingest(archive / "raw", catalog, workers=workers)
            catalog.dispose()
            if drop:
                drop()
            runs.append(
                {
                    "backend": backend,
                    "workers": workers,
                    "seconds": report.seconds,
                    "files_per_s": n / report.seconds,
                    "observations": report.observations_added,
                    "rejected": len(report.rejected),
                    "reingest_seconds": again.seconds,
                    "reingest_new": again.new,
                }
            )
    results["runs"] = runs
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ingest.json").write_text(json.dumps(results, indent=2))
    print(f"archive: {n} files, {results['bytes'] / 1e6:.0f} MB")
    print(f"header floor (read+sha256+classify, no DB, 1 process): {results['header_floor_files_per_s']:.0f} files/s")
    print(f"{'backend':11s} {'workers':>7s} {'files/s':>9s} {'vs floor':>9s} {'seconds':>8s} {'re-ingest s':>12s}")
    for run in runs:
        print(
            f"{run['backend']:11s} {run['workers']:7d} {run['files_per_s']:9.0f} "
            f"{run['files_per_s'] / results['header_floor_files_per_s']:9.2f} {run['seconds']:8.1f} "
            f"{run['reingest_seconds']:12.2f}"
        )


if __name__ == "__main__":
    main()
