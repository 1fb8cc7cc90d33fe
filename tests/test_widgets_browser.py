"""End to end in Debian's headless Chromium: a PI logs in to a real hub, opens the starter notebook,
runs the reduction panel and sees the bokeh contrast curve render.

Reuses the real hub of ``tests/test_hub_access.py`` (JupyterHub + configurable-http-proxy + the
catalog service, one OS account per PI; needs root) and adds a calibrated NACO β Pic cube
(cropped) for alice's proprietary observation. Playwright drives ``/usr/bin/chromium`` (never a
downloaded browser).
"""

from __future__ import annotations

import pwd
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from .hubtest import ServerNotReady, wait_for_server
from .test_dashboards_support import ARTIFACTS
from .test_hub_access import PASSWORDS, hub  # noqa: F401 - the module-scoped real-hub fixture
from .test_widgets import _add_calibrated, naco_small

#: the PI guide's screenshots are taken here, at every run (docs/guides/screenshots holds a copy)
GUIDE_SHOTS = ARTIFACTS.parent / "pi-guide"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _browser_skip_reason() -> str | None:
    if not Path(CHROMIUM).is_file():
        return f"{CHROMIUM} not installed (apt-get install chromium)"
    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy not on PATH"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright (python) not installed"
    return None


def _start_server(hub, username: str) -> None:  # noqa: F811
    response = hub.admin("POST", f"users/{username}/server")
    # the login's own redirect may have started it already (a warm start takes about a second)
    already = response.status_code == 400 and "is already running" in response.text
    assert response.status_code in (201, 202) or already, response.text
    try:
        wait_for_server(lambda: hub.admin("GET", f"users/{username}").json(), username, 90)
    except ServerNotReady as exc:
        pytest.fail(f"{exc}:\n{hub.tail()}")


def _goto_after_redirects(page, url: str, attempts: int = 4) -> None:
    """Go to ``url`` once the hub's own redirects have finished.

    After login the hub's spawn-pending page redirects itself to ``/user/<name>/tree`` as soon as
    the server is ready; a navigation of ours started at that moment is interrupted by it. Wait for
    the page to settle and try again rather than racing it.
    """
    from playwright.sync_api import Error as PlaywrightError

    for attempt in range(attempts):
        try:
            page.goto(url)
            return
        except PlaywrightError as error:
            if "interrupted by another navigation" not in str(error) or attempt == attempts - 1:
                raise
            page.wait_for_load_state()
            time.sleep(1.0)


def test_pi_runs_the_starter_notebook_in_chromium(hub):  # noqa: F811
    reason = _browser_skip_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    from hcdc.catalog import Catalog

    cube, angles, psf = naco_small()
    catalog = Catalog(f"sqlite:///{hub.data_dir / 'catalog.sqlite'}", migrate=False)
    _add_calibrated(catalog, hub.world.observation["A"], hub.data_dir / "products" / "calA", cube, angles, psf)
    catalog.dispose()

    shots = Path(tempfile.mkdtemp(prefix="hcdc-widgets-shot-"))
    GUIDE_SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            # a wrong password first: a clear message, no traceback
            page.goto(f"{hub.url}hub/login")
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", "wrong-" + PASSWORDS["alice"])
            page.click("#login_submit, input[type=submit], button[type=submit]")
            page.wait_for_load_state()
            assert "Invalid username or password" in page.content() and "Traceback" not in page.content()
            page.fill("input[name=username]", "alice")
            page.fill("input[name=password]", PASSWORDS["alice"])
            page.screenshot(path=str(GUIDE_SHOTS / "1-login.png"))
            page.click("#login_submit, input[type=submit], button[type=submit]")
            page.wait_for_load_state()
            assert "/hub/login" not in page.url, page.url

            _start_server(hub, "alice")  # first start: the OS account is created, the starters copied
            home = Path(pwd.getpwnam(hub.prefix + "alice").pw_dir)
            starter = home / "hcdc-tutorials" / "reduction_panel.ipynb"
            assert starter.is_file() and (home / "hcdc-tutorials" / "PI_GUIDE.md").is_file()
            assert starter.stat().st_uid == pwd.getpwnam(hub.prefix + "alice").pw_uid
            _goto_after_redirects(page, f"{hub.url}user/alice/lab/tree/hcdc-tutorials/reduction_panel.ipynb")
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            # the kernel must be connected and idle before cells run (else the key presses are lost)
            page.wait_for_function("document.body.innerText.includes('HC-DC (Python 3.11) | Idle')", timeout=90_000)
            cells = page.locator(".jp-Notebook .jp-Cell")
            panel = page.locator(".hcdc-reduction-panel")
            for _attempt in range(3):
                cells.first.click()
                page.keyboard.press("Escape")  # command mode, then run every cell in turn
                for _ in range(cells.count()):
                    page.keyboard.press("Shift+Enter")
                try:
                    panel.wait_for(timeout=60_000)
                    break
                except Exception:
                    continue
            panel.wait_for(timeout=1_000)
            page.wait_for_function(
                "document.querySelector('.hcdc-reduction-panel .hcdc-status') && "
                "document.querySelector('.hcdc-reduction-panel .hcdc-status').textContent"
                ".includes('observation(s) of yours')",
                timeout=60_000,
            )
            panel.locator("button", has_text="Load").click()
            page.wait_for_function(  # the cube comes through the catalog service: 60 s was exceeded once in CI
                "document.querySelector('.hcdc-reduction-panel .hcdc-status').textContent.includes('loaded')",
                timeout=120_000,
            )
            page.wait_for_selector(".hcdc-plot[data-plot='frame'][data-state='ready']", timeout=60_000)
            page.screenshot(path=str(GUIDE_SHOTS / "2-loaded.png"))
            # parameters typed as a PI would (lighter than the defaults, to keep the test short)
            for label, value in (("ncomp", "10"), ("max characterised", "0")):
                box = page.locator(
                    f".hcdc-reduction-panel .widget-inline-hbox:has(label:text-is('{label}')) input >> visible=true"
                ).first
                box.fill(value)
                box.press("Tab")
            t0 = time.perf_counter()
            panel.locator("button", has_text="Run").first.click()
            page.wait_for_selector(".hcdc-plot[data-plot='contrast'][data-state='ready']", timeout=180_000)
            seconds = time.perf_counter() - t0
            page.wait_for_selector(".hcdc-plot[data-plot='contrast'] canvas", timeout=30_000)
            status = panel.locator(".hcdc-status").inner_text()
            print(f"\nbrowser: Run clicked -> contrast curve rendered in {seconds:.1f} s ({status.strip()})")
            assert "run finished" in status
            assert (
                page.locator(
                    ".hcdc-plot[data-plot='contrast'] .bk-Canvas, .hcdc-plot[data-plot='contrast'] canvas"
                ).count()
                >= 1
            )
            for name in ("residuals", "snrmap"):
                assert page.locator(f".hcdc-plot[data-plot='{name}'][data-state='ready']").count() == 1
            page.locator(".hcdc-plot[data-plot='contrast']").scroll_into_view_if_needed()
            shot = shots / "reduction_panel.png"
            page.screenshot(path=str(shot), full_page=False)
            shutil.copy(shot, GUIDE_SHOTS / "3-results.png")
            print(f"screenshot: {shot}")
            assert "Traceback" not in panel.inner_text()
            # JupyterLab's news prompt (a toast a few seconds after start) is switched off for hub users
            assert "official Jupyter news" not in page.inner_text("body")
        except Exception:
            page.screenshot(path=str(shots / "failure.png"))
            print(f"failure screenshot: {shots / 'failure.png'}")
            raise
        finally:
            browser.close()
