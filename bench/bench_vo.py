"""The public VO service at scale: ``hcdc vo publish`` and TAP/cone-search latency on 10,000+ observations.

A generated catalog (:func:`tests.synthetic_catalog.generate_catalog`: SPHERE-IRDIS observations over
nights from 2021 on, each with its 12-month proprietary period, a finished campaign with detection limits
and detections) is published to a fresh VO instance (its own PostgreSQL, DaCHS); measured:

* the first ``hcdc vo publish`` (setup included and separately), and a second one (nothing changed:
  every table must say ``0 added, 0 updated, 0 withdrawn``);
* ``hcdc vo publish`` after 1 % of the observations' proprietary periods end early (as when PIs waive
  them): the rows it adds must be those observations' and nothing else;
* TAP sync queries (count, a join with a condition, a cone search), median and worst of ``--repeat``;
* ``stilts taplint`` on the large instance (errors and warnings).

Run as root (the commands switch to the service account, as in production)::

    .venv/bin/python bench/bench_vo.py [--observations 10000] [--repeat 5]

Results are printed and written to bench/results/bench_vo.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hcdc(env: dict, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "hcdc.cli", *args], env=env, capture_output=True, text=True, timeout=3600
    )
    if done.returncode != 0:
        raise SystemExit(f"hcdc {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done, time.perf_counter() - started


def counts(stderr: str) -> dict[str, list[int]]:
    """Per table: [added, updated, withdrawn, unchanged] from hcdc vo publish's report."""
    found = {}
    for line in stderr.splitlines():
        match = re.match(r"\s*hcdc\.(\w+)\s+(\d+) added, (\d+) updated, (\d+) withdrawn, (\d+) unchanged", line)
        if match:
            found[match.group(1)] = [int(match.group(i)) for i in range(2, 6)]
    return found


def timed(function, repeat: int) -> dict:
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        rows = function()
        seconds.append(time.perf_counter() - started)
    return {"rows": rows, "median_s": round(statistics.median(seconds), 3), "max_s": round(max(seconds), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_vo.json")
    args = parser.parse_args()

    import pyvo
    from sqlalchemy import func, select, update

    from hcdc.accounts import ensure_service_account, make_private_tree
    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Detection, DetectionLimit, Observation, Product, RawFile, Reduction
    from tests.synthetic_catalog import generate_catalog

    work = Path(tempfile.mkdtemp(prefix="hcdc-bench-vo-"))
    os.chmod(work, 0o755)
    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
    }
    server = None
    env = {}
    try:
        world = work / "world"
        world.mkdir()
        url = f"sqlite:///{world / 'catalog.sqlite'}"
        catalog = Catalog(url)
        generated = generate_catalog(catalog, args.observations)
        today = date.today()
        with catalog.session() as session:
            n_released = session.scalar(select(func.count(Observation.id)).where(Observation.release_date <= today))
            waived = list(
                session.scalars(select(Observation.id).where(Observation.release_date > today).order_by(Observation.id))
            )[: max(1, args.observations // 100)]
        catalog.dispose()
        print(
            f"catalog: {generated.n_observations} observations ({n_released} released today), generated in "
            f"{generated.seconds:.1f} s",
            flush=True,
        )
        if os.geteuid() == 0:
            make_private_tree(world, ensure_service_account()[0])
        http_port, pg_port = free_port(), free_port()
        env = dict(
            os.environ,
            HCDC_DATA_DIR=str(work / "vo-data"),
            HCDC_CATALOG_URL=url,
            HCDC_VO_PORT=str(http_port),
            HCDC_VO_PG_PORT=str(pg_port),
        )
        _, setup_s = hcdc(env, "vo", "setup")
        first, first_s = hcdc(env, "vo", "publish")
        again, again_s = hcdc(env, "vo", "publish")
        idempotent = all(c[:3] == [0, 0, 0] for c in counts(again.stderr).values())
        print(f"setup {setup_s:.1f} s; first publish {first_s:.1f} s; again {again_s:.1f} s", flush=True)
        print(first.stderr.strip().splitlines()[-8:], flush=True)

        catalog = Catalog(url, migrate=False)
        with catalog.session() as session:  # proprietary periods end early for 1 % of the observations
            yesterday = today - timedelta(days=1)
            session.execute(update(Observation).where(Observation.id.in_(waived)).values(release_date=yesterday))
            for model in (RawFile, Reduction, Product, Detection, DetectionLimit):
                session.execute(update(model).where(model.observation_id.in_(waived)).values(release_date=yesterday))
        catalog.dispose()
        waived_publish, waived_s = hcdc(env, "vo", "publish")
        waived_counts = counts(waived_publish.stderr)
        print(f"after {len(waived)} waived periods: publish {waived_s:.1f} s, {waived_counts}", flush=True)

        server = subprocess.Popen(
            [sys.executable, "-m", "hcdc.cli", "vo", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{http_port}"
        for _ in range(120):
            try:
                if b"true" in urllib.request.urlopen(f"{base}/tap/availability", timeout=5).read():
                    break
            except OSError:
                time.sleep(0.5)
        tap = pyvo.dal.TAPService(f"{base}/tap")
        served = int(tap.run_sync("SELECT COUNT(*) AS n FROM hcdc.observations").to_table()["n"][0])
        queries = {
            "count_observations": lambda: int(
                tap.run_sync("SELECT COUNT(*) AS n FROM hcdc.observations").to_table()["n"][0]
            ),
            "join_detections_good_seeing": lambda: len(
                tap.run_sync(
                    "SELECT o.observation, d.sep_arcsec, d.contrast FROM hcdc.detections AS d "
                    "JOIN hcdc.observations AS o ON o.id = d.observation WHERE o.seeing_arcsec < 0.6",
                    maxrec=100_000,
                )
            ),
            "limits_at_half_arcsec": lambda: len(
                tap.run_sync(
                    "SELECT target, MIN(contrast) FROM hcdc.detection_limits "
                    "WHERE sep_arcsec BETWEEN 0.45 AND 0.55 GROUP BY target"
                )
            ),
            "cone_search": lambda: len(
                pyvo.dal.SCSService(f"{base}/hcdc/q/cone/scs.xml").search(pos=(83.8, -5.4), radius=10)
            ),
        }
        latency = {name: timed(query, args.repeat) for name, query in queries.items()}
        for name, figures in latency.items():
            print(f"  {name}: {figures}", flush=True)
        taplint = {}
        if shutil.which("stilts"):
            started = time.perf_counter()
            done = subprocess.run(
                ["stilts", "taplint", f"tapurl={base}/tap", "report=EWS"], capture_output=True, text=True, timeout=1800
            )
            totals = [line for line in done.stdout.splitlines() if line.startswith("Totals:")]
            taplint = {
                "totals": totals[-1] if totals else done.stderr[-300:],
                "errors": [line for line in done.stdout.splitlines() if line.startswith("E-")][:20],
                "seconds": round(time.perf_counter() - started, 1),
            }
            print(f"taplint: {taplint['totals']} ({taplint['seconds']} s)", flush=True)
        results.update(
            {
                "observations": generated.n_observations,
                "released_observations": n_released,
                "served_observations_after_waivers": served,
                "setup_s": round(setup_s, 1),
                "first_publish_s": round(first_s, 1),
                "first_publish_counts": counts(first.stderr),
                "second_publish_s": round(again_s, 1),
                "second_publish_changes_nothing": idempotent,
                "waived_observations": len(waived),
                "waived_publish_s": round(waived_s, 1),
                "waived_publish_counts": waived_counts,
                "waived_adds_exactly_them": waived_counts.get("observations", [0])[:3] == [len(waived), 0, 0],
                "tap_latency": latency,
                "taplint": taplint,
                "load_average_end": os.getloadavg(),
            }
        )
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if env:
            subprocess.run([sys.executable, "-m", "hcdc.cli", "vo", "stop"], env=env, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
