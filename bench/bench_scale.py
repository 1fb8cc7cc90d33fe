"""A catalog ten times larger, in PostgreSQL: the dashboards, `hcdc reprocess --plan` and the observations export.

Issue 17 item 5. A synthetic catalog of ``--observations`` SPHERE-IRDIS observations with their
calibrations, pre- and post-processing reductions, detection limits, detections and failures
(:func:`tests.synthetic_catalog.generate_catalog`) is written to a database of its own on the
machine's PostgreSQL (``--admin-url``, trust auth for development), then measured:

* ``hcdc catalog observations`` (csv, ecsv, votable) to /dev/null: the whole command, as a user runs it;
* ``hcdc reprocess --plan``: the whole command (what a campaign over the whole catalog would do);
* the dashboards' data (monitoring, pipeline status, catalog browser) built in this process, per part:
  where a page's time goes;
* each dashboard's first render in Debian's headless Chromium, cold, with the pooled kernel, and with
  the pooled kernel in a browser that has Voilà's scripts cached (``bench_dashboards.measure``: from
  navigation to every plot drawn);
* the same for a page of one widget served by plain Voilà, pre-heated and fresh
  (``bench_dashboards.voila_floor``): what any Voilà page costs on this machine.

Targets (the issue): first render < 2 s per page, planning < 10 s, export < 5 s. Results are printed
and written to bench/results/bench_scale.json; the database is dropped unless ``--keep``.

    .venv/bin/python bench/bench_scale.py [--observations 10000] [--repeat 2] [--no-browser] [--keep]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
RESULTS = REPO / "bench" / "results"
#: the command line of this checkout (PYTHONPATH=REPO: a second checkout measured with this one's venv)
HCDC = [sys.executable, "-m", "hcdc.cli"]
TARGETS = {"first_render_s": 2.0, "plan_s": 10.0, "export_s": 5.0}


def timed_command(args: list[str], env: dict, repeat: int) -> dict:
    """Wall-clock seconds of a whole command (best and all), its output size, and that it succeeded."""
    times, size = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, cwd=REPO)
        times.append(round(time.perf_counter() - started, 2))
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr.decode()[-2000:]}")
        size = len(done.stdout)
    return {"seconds": times, "best_s": min(times), "stdout_bytes": size, "stderr_tail": done.stderr.decode()[-600:]}


def database(admin_url: str, name: str, drop_only: bool = False) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop_only:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + "/" + name


def dashboard_parts(url: str, profile_dir: Path | None = None) -> dict[str, float]:
    """Seconds to build each dashboard page in this process (queries, figures, widgets; staff: every row).

    What a page costs its kernel before the browser draws it. With ``profile_dir``, a cProfile of each
    page is written there (``<page>.prof``).
    """
    import cProfile

    from hcdc.catalog import Catalog
    from hcdc.dashboards.context import Viewer
    from hcdc_widgets.dashboards import PAGES, page

    catalog = Catalog(url, migrate=False)
    staff = Viewer(mode="standalone", username="bench", all_rows=True)
    out = {}
    errors: list[str] = []

    class Errors(logging.Handler):  # a failed part shows a sentence on the page and logs the traceback
        def emit(self, record):
            errors.append(record.getMessage())

    logging.getLogger("hcdc.dashboards").addHandler(Errors(level=logging.ERROR))
    try:
        for name in PAGES:
            profiler = cProfile.Profile() if profile_dir else None
            started = time.perf_counter()
            if profiler:
                profiler.enable()
            built = page(name, viewer=staff, catalog=catalog)
            built.widget()
            if profiler:
                profiler.disable()
                profiler.dump_stats(str(profile_dir / f"{name}.prof"))
            out[name] = round(time.perf_counter() - started, 2)
            if built.problem or errors:
                raise RuntimeError(f"the {name} page failed: {built.problem or errors[0]}")
    finally:
        catalog.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("HCDC_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--database", default="hcdc_bench_scale")
    parser.add_argument("--reuse", action="store_true", help="Measure the database left by --keep (no generation).")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    parser.add_argument("--no-browser", action="store_true", help="Skip the first renders in Chromium.")
    parser.add_argument("--no-plan", action="store_true", help="Skip hcdc reprocess --plan (a checkout without it).")
    parser.add_argument(
        "--first-paint-only",
        action="store_true",
        help="In the browser, measure only the default server (first paints); skip cold, pooled and Voilà's floor.",
    )
    parser.add_argument("--label", default="", help="A label stored with the results (e.g. 'before').")
    parser.add_argument("--profile", type=Path, default=None, help="Write a cProfile of each page build here.")
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_scale.json")
    args = parser.parse_args()

    from sqlalchemy import func, select

    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Detection, DetectionLimit, Observation, Reduction

    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "label": args.label,
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "code_version": subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, cwd=REPO
        ).stdout.strip(),
        "load_average_start": os.getloadavg(),
        "targets": TARGETS,
    }
    url = args.admin_url.rsplit("/", 1)[0] + "/" + args.database
    if not args.reuse:
        url = database(args.admin_url, args.database)
        catalog = Catalog(url)
        from tests.synthetic_catalog import generate_catalog

        generated = generate_catalog(catalog, args.observations)
        catalog.dispose()
        results["generate_s"] = round(generated.seconds, 1)
        print(f"generated {generated.n_observations} observations in {generated.seconds:.0f} s", flush=True)
    catalog = Catalog(url, migrate=False)
    with catalog.session() as session:
        results["rows"] = {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)))
            for model in (Observation, Reduction, Detection, DetectionLimit)
        }
    catalog.dispose()
    print(f"catalog: {results['rows']}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="hcdc-bench-scale-"))
    env = {**os.environ, "HCDC_CATALOG_URL": url, "HCDC_DATA_DIR": str(work), "PYTHONPATH": str(REPO)}
    try:
        results["export_s"] = {}
        for fmt in ("csv", "ecsv", "votable"):
            entry = timed_command([*HCDC, "catalog", "observations", "--format", fmt], env, args.repeat)
            results["export_s"][fmt] = entry
            print(f"  hcdc catalog observations --format {fmt:<8} {entry['best_s']:6.2f} s", flush=True)
        if not args.no_plan:
            entry = timed_command([*HCDC, "reprocess", "--plan"], env, args.repeat)
            results["plan_s"] = entry
            print(f"  hcdc reprocess --plan                     {entry['best_s']:6.2f} s", flush=True)
            print("    " + entry["stderr_tail"].strip().replace("\n", "\n    "), flush=True)
        parts = [dashboard_parts(url, args.profile if i == 0 else None) for i in range(args.repeat)]
        results["dashboard_data_s"] = {name: min(p[name] for p in parts) for name in parts[0]}
        print(f"  dashboard pages built in-process (best of {args.repeat}): {results['dashboard_data_s']}", flush=True)
        if not args.no_browser:
            from bench_dashboards import measure, measure_first_paint

            if not args.first_paint_only:
                renders = measure(url, work, args.repeat, "scale", floor=True)
                results["voila_floor_s"] = renders.pop("voila_floor")
                results["first_render_s"] = renders
                print(f"  first render of a one-widget page in plain Voilà: {results['voila_floor_s']}", flush=True)
                for name, modes in renders.items():
                    print(
                        f"  first render {name:<10} cold {statistics.median(modes['cold']):6.2f} s   "
                        f"pooled {statistics.median(modes['pooled']):6.2f} s   "
                        f"pooled, browser cache {statistics.median(modes['pooled_cached']):6.2f} s",
                        flush=True,
                    )
            painted = measure_first_paint(url, work, args.repeat, "scale")
            results["first_paint_s"] = painted
            for name, figures in painted.items():
                print(
                    f"  {name:<10} first visit: all drawn "
                    f"{statistics.median(figures['first_visit_all_plots']):5.2f} s; "
                    f"next visits (first paint sent {sum(figures['first_paint_first_paint_shown'])}/"
                    f"{len(figures['first_paint_first_paint_shown'])}): first screen "
                    f"{statistics.median(figures['first_paint_first_screen']):5.2f} s, every plot "
                    f"{statistics.median(figures['first_paint_all_plots']):5.2f} s, live "
                    f"{statistics.median(figures['first_paint_live']):5.2f} s",
                    flush=True,
                )
    finally:
        if not args.keep:
            database(args.admin_url, args.database, drop_only=True)
    results["load_average_end"] = os.getloadavg()
    history = []
    if args.out.exists():
        try:
            previous = json.loads(args.out.read_text())
            history = previous if isinstance(previous, list) else [previous]
        except ValueError:
            history = []
    history.append(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(history, indent=1, default=str) + "\n")
    print(f"written to {args.out} (run {len(history)} of the file); load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
