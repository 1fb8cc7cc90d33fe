#!/usr/bin/env python
"""The catalog service under load through a real hub (issue 17): 50 clients, 60 s, mixed reads.

Runs ``tests/test_service_load.py`` (a real JupyterHub with configurable-http-proxy and the
catalog service; needs root for the PIs' accounts) with a longer duration, and writes
``bench/results/bench_service_load.json``: requests, requests per second, errors, p50/p95/p99
latency per kind of request, the hub API's latency meanwhile, and the load average.

    python bench/bench_service_load.py [--clients 50] [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    out = REPO / "bench" / "results" / "bench_service_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # a skipped or failed run must not re-stamp an old report
    env = dict(
        os.environ,
        HCDC_LOAD_CLIENTS=str(args.clients),
        HCDC_LOAD_SECONDS=str(args.seconds),
        HCDC_LOAD_REPORT=str(out),
    )
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests/test_service_load.py"],
        cwd=REPO,
        env=env,
    )
    if not out.is_file():
        print("no report written (the test was skipped or failed before the load)", file=sys.stderr)
        return 1
    summary = json.loads(out.read_text())
    summary.update(
        time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        load_average=list(os.getloadavg()),
        wall_seconds=time.time() - started,
        passed=done.returncode == 0,
    )
    out.write_text(json.dumps(summary, indent=1))
    print(f"\n{'kind':12s} {'n':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'p99 ms':>8s}")
    for kind, q in {**summary["by_kind_ms"], "ALL": summary["all_ms"], "hub api": summary["hub_api_ms"]}.items():
        print(f"{kind:12s} {q['n']:6d} {q.get('p50', 0):8.1f} {q.get('p95', 0):8.1f} {q.get('p99', 0):8.1f}")
    print(
        f"{summary['requests']} requests in {summary['seconds']:.0f} s ({summary['requests_per_second']:.0f}/s), "
        f"{summary['errors']} error(s); load average {summary['load_average'][0]:.2f}; written {out}"
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
