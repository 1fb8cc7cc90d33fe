#!/usr/bin/env python
"""Ten PIs at once on one hub while a campaign runs (issue 17 item 1): login to a usable panel.

Runs ``tests/test_pi_sessions.py`` (a real JupyterHub with configurable-http-proxy and the
system-users spawner; needs root) with ``--pis`` PIs, ``--runs`` times with the pre-warmed
interpreter (``warm_start: true``, the default) and, with ``--compare``, as many times with every
server and kernel a fresh interpreter (``warm_start: false``), alternating. Each run logs every PI in
at once while ``hcdc reprocess`` runs a campaign on a simulated night in the same catalog; each PI
loads their observation, runs the reduction panel's default reduction and saves it.

Writes ``bench/results/bench_pi_sessions.json``: per run, p50/p95/max of each phase (login, server,
kernel, panel, usable = login-to-usable-panel, load, run, save), memory per PI server (RSS and PSS
of the PI's processes), the machine's peak memory, the campaign, and the load average.

    python bench/bench_pi_sessions.py [--pis 10] [--runs 3] [--compare]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one_run(pis: int, warm: bool) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        report = Path(handle.name)
    report.unlink()
    env = dict(
        os.environ,
        HCDC_PI_COUNT=str(pis),
        HCDC_PI_REPORT=str(report),
        HCDC_PI_WARM_START="1" if warm else "0",
        HCDC_PI_CAMPAIGN_SIZE="3",  # the whole simulated night (the test itself runs two observations)
    )
    load_before = list(os.getloadavg())
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_pi_sessions.py"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if not report.is_file():
        print(done.stdout[-3000:], file=sys.stderr)
        return None
    summary = json.loads(report.read_text())
    report.unlink()
    summary.update(
        warm_start=warm,
        passed=done.returncode == 0,
        load_average_before=load_before,
        wall_seconds=time.time() - started,
        time_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if done.returncode != 0:
        summary["failure"] = done.stdout[-2000:]
    return summary


def line(summary: dict) -> str:
    s = summary["seconds"]
    return (
        f"{'warm' if summary['warm_start'] else 'cold'}  {summary['succeeded']}/{summary['pis']} ok  "
        f"usable p50 {s['usable']['p50']:5.1f} p95 {s['usable']['p95']:5.1f} s | "
        f"login {s['login']['p95']:4.1f} server {s['server']['p95']:5.1f} kernel {s['kernel']['p95']:4.1f} "
        f"panel {s['panel']['p95']:5.1f} | load {s['load']['p95']:5.1f} run {s['run']['p95']:6.1f} "
        f"save {s['save']['p95']:4.1f} (p95) | PSS/PI {summary['memory_per_pi_mb']['pss']['p50']:.0f} MiB, "
        f"machine +{summary['machine_used_mb']['peak_increase']:.0f} MiB | load avg before "
        f"{summary['load_average_before'][0]:.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pis", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--compare", action="store_true", help="also run without the pre-warmed interpreter")
    args = parser.parse_args()
    out = REPO / "bench" / "results" / "bench_pi_sessions.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = []
    for i in range(args.runs):
        for warm in (True, False) if args.compare else (True,):
            summary = one_run(args.pis, warm)
            if summary is None:
                print(f"run {i + 1} ({'warm' if warm else 'cold'}): no report (skipped or failed early)")
                continue
            runs.append(summary)
            print(line(summary), flush=True)
            out.write_text(json.dumps({"pis": args.pis, "cores": os.cpu_count(), "runs": runs}, indent=1))
    return 0 if runs and all(r["passed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
