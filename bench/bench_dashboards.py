"""Dashboards: time to first render in Debian's headless Chromium, on the demo catalog and on 10,000+ observations.

"First render" is from navigation to the dashboard's page being shown with
every plot drawn (Voilà executes the notebook, the browser draws the widgets
and the bokeh plots). Each dashboard is measured

* ``cold``: the server keeps no kernel in advance (``--kernel-pool 0``): the
  page pays the kernel start and the imports;
* ``pooled``: the default server (``--kernel-pool 1``), its pooled kernel ready;
* ``pooled_cached``: the same, in a browser that has seen one dashboard before (Voilà's scripts in
  its cache), as for a user going from one dashboard to the next.

Catalogs:

* the demo catalog of ``make demo`` (``var/demo/catalog.sqlite``, or
  ``--demo-dir``; ``--build-demo`` runs ``python -m hcdc.demo`` there first, ~10 min);
* a generated catalog of ``--observations`` SPHERE-IRDIS observations with
  calibrations, pre-processing summaries, limits, detections and failures
  (:func:`tests.synthetic_catalog.generate_catalog`), whose degraded nights
  the monitoring must flag (checked and reported).

The demo catalog is copied first: the benchmark never writes to it. Results are
printed and written to bench/results/dashboards.json.

    .venv/bin/python bench/bench_dashboards.py [--demo-dir var/demo] [--observations 10000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
CHROMIUM = os.environ.get("HCDC_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DASHBOARDS = ("monitoring", "pipeline", "browser")
READY = (
    "() => document.querySelector('.hcdc-page') !== null && "
    "document.querySelectorAll('div.hcdc-plot').length > 0 && "
    "Array.from(document.querySelectorAll('div.hcdc-plot')).every(e => e.getAttribute('data-state') == 'ready')"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server in a process group of its own: started, waited for until ``health`` answers, stopped."""

    def __init__(self, argv: list[str], health: str, *, env: dict | None = None, cwd: Path = REPO, what: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tempfile.NamedTemporaryFile(prefix="hcdc-bench-dashboards-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [arg.replace("{port}", str(self.port)) for arg in argv],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=cwd,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + health, timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                text = Path(self.log.name).read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"{what} did not start:\n{text}")
            time.sleep(0.2)

    @classmethod
    def dashboards(cls, catalog_url: str, data_dir: Path, pool: int, first_paint: bool = False) -> Server:
        """``python -m hcdc.dashboards serve`` on ``catalog_url`` with a kernel pool of ``pool`` (first paints
        off unless ``first_paint``)."""
        env = {**os.environ, "HCDC_CATALOG_URL": catalog_url, "HCDC_DATA_DIR": str(data_dir)}
        argv = [sys.executable, "-m", "hcdc.dashboards", "serve", "--port", "{port}", "--kernel-pool", str(pool)]
        argv.append("--first-paint" if first_paint else "--no-first-paint")
        return cls(argv, "hcdc/health", env=env, what="dashboards server")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        Path(self.log.name).unlink(missing_ok=True)


def voila_floor(browser, repeat: int, work: Path) -> dict[str, list[float]]:
    """First render of a one-widget page served by plain Voilà: what any Voilà page costs on this machine.

    The notebook displays one ``ipywidgets.HTML`` that satisfies :data:`READY`. ``preheated``: Voilà's
    own pre-heated kernel (``--preheat_kernel``: the notebook already executed when the browser asks,
    the best case Voilà offers); ``fresh``: a kernel started for the page.
    """
    import nbformat

    notebook = work / "floor.ipynb"
    cell = (
        "import ipywidgets as w\n"
        'w.HTML(\'<div class="hcdc-page"><div class="hcdc-plot" data-state="ready">one widget</div></div>\')'
    )
    book = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(book, notebook)
    out: dict[str, list[float]] = {}
    for mode, options in (("preheated", ["--preheat_kernel=True", "--pool_size=1"]), ("fresh", [])):
        argv = [sys.executable, "-m", "voila", str(notebook), "--no-browser", "--port={port}", *options]
        server = Server(argv, "voila/static/voila.js", cwd=work, what=f"plain Voilà ({mode})")
        try:
            for _ in range(repeat):
                time.sleep(8)  # the pre-heated kernel executes the notebook in advance
                seconds = first_render(browser, server.url)
                out.setdefault(mode, []).append(round(seconds, 2))
                print(f"  voila floor (one widget) {mode:<9} {seconds:6.2f} s", flush=True)
        finally:
            server.stop()
    return out


def _navigate(opener, url: str, **page_options):
    """A new page of ``opener`` (browser or context) sent to ``url``: (page, its JavaScript errors, start)."""
    page = opener.new_page(**page_options)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    started = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=300_000)
    return page, errors, started


def _close(page, errors: list[str], url: str) -> None:
    page.close()
    if errors:
        raise RuntimeError(f"JavaScript errors on {url}: {errors}")


def first_render(browser, url: str, context=None) -> float:
    """Seconds from navigation to every plot drawn; ``context``: a browser context to reuse (its cache)."""
    options = {} if context else {"viewport": {"width": 1280, "height": 900}}
    page, errors, started = _navigate(context or browser, url, **options)
    page.wait_for_function(READY, timeout=300_000, polling=50)
    seconds = time.perf_counter() - started
    _close(page, errors, url)
    return seconds


#: the first screen drawn: the page (first paint or live) shown, every plot within the window drawn
FIRST_SCREEN = (
    "() => { const cells = document.getElementById('rendered_cells');"
    " const page = document.querySelector('#hcdc-first-paint .hcdc-page') ||"
    " (cells && cells.style.display !== 'none' ? cells.querySelector('.hcdc-page') : null);"
    " if (!page) return false;"
    " return Array.from(page.querySelectorAll('div.hcdc-plot'))"
    ".filter(e => e.getBoundingClientRect().top < window.innerHeight)"
    ".every(e => e.getAttribute('data-state') == 'ready') }"
)
#: the page shown (first paint or live) with every plot of it drawn
ALL_PLOTS = FIRST_SCREEN.replace(".filter(e => e.getBoundingClientRect().top < window.innerHeight)", "")
#: the live page drawn and in place (a first paint, if sent, has handed over): the filters answer
LIVE = (
    "() => { const cells = document.getElementById('rendered_cells');"
    " const page = cells && cells.querySelector('.hcdc-page');"
    " return !!page && cells.style.display !== 'none' && document.getElementById('hcdc-first-paint') === null &&"
    " Array.from(page.querySelectorAll('div.hcdc-plot')).every(e => e.getAttribute('data-state') == 'ready') }"
)


def first_paint_render(browser, url: str) -> dict:
    """Seconds from navigation to the first screen drawn, to every plot drawn, and to the live page in place;
    ``shown``: whether a first paint was sent."""
    page, errors, started = _navigate(browser, url, viewport={"width": 1280, "height": 900})
    page.wait_for_function(FIRST_SCREEN, timeout=300_000, polling=20)
    first_screen = time.perf_counter() - started
    page.wait_for_function(ALL_PLOTS, timeout=300_000, polling=50)
    all_plots = time.perf_counter() - started
    page.wait_for_function(LIVE, timeout=300_000, polling=50)
    live = time.perf_counter() - started
    shown = page.evaluate("() => window.hcdcFirstPaintSeen === true")
    _close(page, errors, url)
    return {
        "first_screen": round(first_screen, 2),
        "all_plots": round(all_plots, 2),
        "live": round(live, 2),
        "first_paint_shown": shown,
    }


def measure_first_paint(catalog_url: str, data_dir: Path, repeat: int, label: str) -> dict:
    """Each dashboard opened once (the live page; its first paint is stored), then ``repeat`` times more on
    the unchanged catalog (its first paint sent first): the default server (pooled kernel, first paints)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, list]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        server = Server.dashboards(catalog_url, data_dir, 1, first_paint=True)
        try:
            for name in DASHBOARDS:
                for visit in range(repeat + 1):
                    time.sleep(8)  # let the pool start its replacement kernel
                    figures = first_paint_render(browser, server.url + f"voila/render/{name}.ipynb")
                    kind = "first_visit" if visit == 0 else "first_paint"
                    for key, value in figures.items():
                        out.setdefault(name, {}).setdefault(f"{kind}_{key}", []).append(value)
                    print(f"  {label:<8} {name:<10} {kind:<11} {figures}", flush=True)
        finally:
            server.stop()
            browser.close()
    return out


def measure(catalog_url: str, data_dir: Path, repeat: int, label: str, floor: bool = False) -> dict:
    """First renders of every dashboard (cold, pooled, pooled with the browser's cache); with ``floor``,
    also :func:`voila_floor` (under the key ``voila_floor``)."""
    from playwright.sync_api import sync_playwright

    out: dict[str, dict[str, list[float]]] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            if floor:
                out["voila_floor"] = voila_floor(browser, repeat, data_dir)
            for pool, mode in ((0, "cold"), (1, "pooled")):
                server = Server.dashboards(catalog_url, data_dir, pool)
                try:
                    for name in DASHBOARDS:
                        for _ in range(repeat):
                            if pool:
                                time.sleep(8)  # let the pool start its replacement kernel
                            seconds = first_render(browser, server.url + f"voila/render/{name}.ipynb")
                            out.setdefault(name, {}).setdefault(mode, []).append(round(seconds, 2))
                            print(f"  {label:<8} {name:<10} {mode:<6} {seconds:6.2f} s", flush=True)
                    if pool:
                        # a returning visitor: the browser has Voilà's scripts in its cache (one page seen before)
                        context = browser.new_context(viewport={"width": 1280, "height": 900})
                        try:
                            time.sleep(8)
                            first_render(browser, server.url + "voila/render/browser.ipynb", context)
                            for name in DASHBOARDS:
                                for _ in range(repeat):
                                    time.sleep(8)
                                    seconds = first_render(browser, server.url + f"voila/render/{name}.ipynb", context)
                                    out[name].setdefault("pooled_cached", []).append(round(seconds, 2))
                                    print(f"  {label:<8} {name:<10} cached {seconds:6.2f} s", flush=True)
                        finally:
                            context.close()
                finally:
                    server.stop()
        finally:
            browser.close()
    return out


def demo_catalog(args, work: Path) -> tuple[str, Path] | None:
    demo = args.demo_dir
    if args.build_demo and not (demo / "catalog.sqlite").exists():
        print(f"building the demo in {demo} (python -m hcdc.demo; minutes) ...", flush=True)
        demo.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "hcdc.demo"], env={**os.environ, "HCDC_DATA_DIR": str(demo)}, check=True, cwd=REPO
        )
    source = demo / "catalog.sqlite"
    if not source.exists():
        print(f"demo catalog {source} not found: run 'make demo' (or pass --build-demo); skipped", flush=True)
        return None
    copy = work / "demo.sqlite"
    shutil.copy(source, copy)
    for suffix in ("-wal", "-shm"):
        if Path(str(source) + suffix).exists():
            shutil.copy(Path(str(source) + suffix), Path(str(copy) + suffix))
    return f"sqlite:///{copy}", demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", type=Path, default=REPO / "var" / "demo")
    parser.add_argument("--build-demo", action="store_true", help="Run the demo first when its catalog is missing.")
    parser.add_argument("--observations", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "dashboards.json")
    args = parser.parse_args()
    if not Path(CHROMIUM).is_file():
        raise SystemExit(f"{CHROMIUM} missing: apt-get install -y chromium")

    from sqlalchemy import func, select

    from hcdc.access import Principal
    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Observation
    from hcdc.dashboards.monitoring import build_monitoring
    from tests.synthetic_catalog import generate_catalog

    work = Path(tempfile.mkdtemp(prefix="hcdc-bench-dashboards-"))
    results: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "repeat": args.repeat,
        "catalogs": {},
    }
    try:
        demo = demo_catalog(args, work)
        if demo is not None:
            url, data_dir = demo
            catalog = Catalog(url, migrate=False)
            with catalog.session() as session:
                n = session.scalar(select(func.count(Observation.id)))
            catalog.dispose()
            print(f"demo catalog: {n} observations", flush=True)
            results["catalogs"]["demo"] = {
                "observations": n,
                "first_render_s": measure(url, data_dir, args.repeat, "demo"),
            }
        url = f"sqlite:///{work / 'large.sqlite'}"
        catalog = Catalog(url)
        generated = generate_catalog(catalog, args.observations)
        started = time.perf_counter()
        with catalog.session() as session:
            data = build_monitoring(session, Principal("bench", is_staff=True))
        monitoring_s = time.perf_counter() - started
        catalog.dispose()
        expected = set(generated.bad_seeing_nights) | {generated.hot_pixel_night}
        flags_ok = set(data.flagged_nights) == expected
        print(
            f"large catalog: {generated.n_observations} observations over {generated.n_nights} nights, generated in "
            f"{generated.seconds:.1f} s; monitoring queries+flags {monitoring_s:.1f} s; flagged nights "
            f"{'= the degraded ones' if flags_ok else '!= the degraded ones'} ({len(data.flagged_nights)})",
            flush=True,
        )
        results["catalogs"]["large"] = {
            "observations": generated.n_observations,
            "nights": generated.n_nights,
            "generate_s": round(generated.seconds, 1),
            "monitoring_data_s": round(monitoring_s, 2),
            "flags_match_degraded_nights": flags_ok,
            "first_render_s": measure(url, work, args.repeat, "large"),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["load_average_end"] = os.getloadavg()
    print("\nfirst render (median s)     cold   pooled   pooled, browser cache")
    for label, entry in results["catalogs"].items():
        for name, modes in entry["first_render_s"].items():
            print(
                f"  {label:<8} {name:<12} {statistics.median(modes['cold']):6.2f} "
                f"{statistics.median(modes['pooled']):8.2f} {statistics.median(modes['pooled_cached']):8.2f}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
