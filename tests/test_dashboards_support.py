"""Helpers of the dashboards' tests (no tests here): a simulated catalog, a real dashboards server,
Chromium through Playwright.

Chromium is Debian's (``apt-get install chromium``), driven by Playwright from
PyPI with ``executable_path`` (never ``playwright install``). Screenshots go to
``$HCDC_TEST_ARTIFACTS`` (default ``var/test-artifacts/dashboards``, ignored by
git) and their paths are printed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from .hubtest import free_ports

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HCDC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("HCDC_TEST_ARTIFACTS") or REPO / "var" / "test-artifacts" / "dashboards")
#: the live page drawn (a first paint, if one was sent, has handed over: tests interact with live widgets)
READY = (
    "() => document.getElementById('hcdc-first-paint') === null && "
    "document.querySelector('#rendered_cells .hcdc-page') !== null && "
    "Array.from(document.querySelectorAll('div.hcdc-plot')).every("
    "e => ['ready', 'error'].includes(e.getAttribute('data-state')))"
)
#: a first paint shown, every plot of it drawn
FIRST_PAINT_READY = (
    "() => document.getElementById('hcdc-first-paint') !== null && "
    "Array.from(document.querySelectorAll('#hcdc-first-paint div.hcdc-plot')).every("
    "e => ['ready', 'error'].includes(e.getAttribute('data-state')))"
)


def simulated_catalog(tmp_path_factory) -> dict:
    """4 nights (1 archival) with pixels, ingest, real pre-processing, a synthetic post-processing campaign.

    Built once per test session (the dashboards' test files share it) and never modified.
    """
    from .synthetic_catalog import build_simulated_catalog

    root = tmp_path_factory.getbasetemp() / "dashboards-simulated"
    done = root / "built.json"
    if not done.exists():
        root.mkdir(parents=True, exist_ok=True)
        info = build_simulated_catalog(root, f"sqlite:///{root / 'catalog.sqlite'}", nights=4, seed=5)
        done.write_text(
            json.dumps(
                {
                    "catalog_url": info["catalog_url"],
                    "data_dir": str(info["data_dir"]),
                    "archive": str(info["archive"]),
                    "campaign_id": info["campaign"].campaign_id,
                    "failed": info["campaign"].failed,
                    "pending": info["campaign"].pending,
                }
            )
        )
    info = json.loads(done.read_text())
    info["data_dir"] = Path(info["data_dir"])
    info["truth"] = json.loads((Path(info["archive"]) / "truth.json").read_text())
    return info


def free_port() -> int:
    return free_ports(1)[0]


def skip_without_chromium() -> None:
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} missing: apt-get install -y chromium (Debian's; never 'playwright install')")
    pytest.importorskip("playwright.sync_api")


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@contextmanager
def dashboards_server(catalog_url: str, data_dir: Path, viewer: str | None = None, options: tuple[str, ...] = ()):
    """``python -m hcdc.dashboards serve [options]`` on a free port; stopped (its process group) at the end."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="hcdc-dashboards-", suffix=".log")[1])
    env = {**os.environ, "HCDC_CATALOG_URL": catalog_url, "HCDC_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "hcdc.dashboards", "serve", "--port", str(port)]
    if viewer:
        command += ["--viewer", viewer]
    command += list(options)
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
        )
    server = Server(f"http://127.0.0.1:{port}/", process, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"the dashboards server exited ({process.returncode}):\n{server.tail()}")
            try:
                if requests.get(server.url + "hcdc/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"dashboards server not up after 60 s:\n{server.tail()}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # Voilà and the kernels it started
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        log.unlink(missing_ok=True)


@contextmanager
def chromium():
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="hcdc-chromium-")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS[1:],
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        try:
            yield context
        finally:
            context.close()
            shutil.rmtree(profile, ignore_errors=True)


@dataclass
class Watched:
    """A page with the JavaScript errors and failed requests it met."""

    page: object
    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def assert_clean(self) -> None:
        assert not self.errors, "JavaScript errors:\n" + "\n".join(self.errors)
        assert not self.failed, "failed requests:\n" + "\n".join(self.failed)


def watch(page) -> Watched:
    watched = Watched(page)
    page.on("pageerror", lambda error: watched.errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and watched.errors.append(message.text))
    page.on(
        "requestfailed",
        lambda request: request.url.startswith("http") and watched.failed.append(f"{request.url}: {request.failure}"),
    )
    page.on(
        "response",
        lambda response: response.status >= 400 and watched.failed.append(f"{response.status} {response.url}"),
    )
    return watched


def open_dashboard(context, url: str, timeout_s: float = 120) -> Watched:
    """Open a dashboard and wait until its page and every plot are rendered (time to first render)."""
    page = context.new_page()
    watched = watch(page)
    started = time.perf_counter()
    page.goto(url, wait_until="commit", timeout=timeout_s * 1000)
    page.wait_for_function(READY, timeout=timeout_s * 1000, polling=100)
    watched.seconds = time.perf_counter() - started
    return watched


def wait_ready(page, timeout_s: float = 60) -> None:
    page.wait_for_function(READY, timeout=timeout_s * 1000, polling=100)


def screenshot(page, name: str) -> Path:
    """A full-length PNG of the dashboard (Voilà scrolls inside #rendered_cells)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = page.evaluate("(document.querySelector('#rendered_cells') || document.body).scrollHeight")
    page.set_viewport_size({"width": 1280, "height": min(int(height) + 80, 16000)})
    page.wait_for_timeout(400)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    print(f"screenshot: {path}")
    return path


def card(page, key: str) -> str:
    return page.locator(f'[data-hcdc="{key}"]').first.inner_text().strip()


def plot_source(page, plot: str, name: str) -> dict | None:
    return page.evaluate("([plot, name]) => window.hcdcDash.source(plot, name)", [plot, name])


HOVER_JS = """
([plot, figure, index]) => {
  for (const [element, doc] of window.hcdcDash.views) {
    if (!element.isConnected || element.getAttribute('data-plot') !== plot) continue;
    const fig = doc.get_model_by_name(figure);
    const view = Bokeh.index.find_one(fig);
    const renderer = fig.renderers.find(r => r.glyph && r.glyph.type !== 'Line' && r.data_source.data.key);
    const rv = view.views.find_one(renderer);
    const box = view.canvas_view.el.getBoundingClientRect();
    return {x: box.left + rv.glyph.sx[index], y: box.top + rv.glyph.sy[index],
            key: renderer.data_source.data.key[index]};
  }
  return null;
}
"""


def hover_point(page, plot: str, figure: str, index: int = 0) -> tuple[str, str]:
    """Move the mouse onto a point of a figure; returns (the point's observation key, the tooltip's text)."""
    point = page.evaluate(HOVER_JS, [plot, figure, index])
    assert point is not None, f"no figure {figure} in plot {plot}"
    page.evaluate("(y) => document.querySelector('#rendered_cells').scrollBy(0, y)", point["y"] - 400)
    point = page.evaluate(HOVER_JS, [plot, figure, index])
    page.mouse.move(point["x"] - 30, point["y"] - 30)
    page.mouse.move(point["x"], point["y"], steps=5)
    tooltip = page.locator(".bk-Tooltip").first
    tooltip.wait_for(state="visible", timeout=10_000)
    # the tooltip's rows live in its own shadow root
    text = tooltip.evaluate("e => (e.shadowRoot ? e.shadowRoot.textContent : '') + e.textContent")
    return point["key"], text
