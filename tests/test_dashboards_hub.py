"""The dashboards as a JupyterHub service, behind the hub login, in a real browser.

A real hub (configurable-http-proxy, NativeAuthenticator) starts the
dashboards service from the validated hub YAML. Chromium opens the catalog
browser: the hub asks for a login, OAuth brings the user back, and the page
shows what that user may see — alice her proprietary programme A and the
public C, never bob's B — and refuses B's executed notebook.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from sqlalchemy import select

from hcdc.catalog.models import Reduction
from hcdc.reports import reduction_file

from .access_world import build_world
from .test_dashboards_support import card, chromium, free_ports, screenshot, skip_without_chromium, wait_ready

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORDS = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12)}


@pytest.fixture(scope="module")
def hub():
    from hcdc.catalog import Catalog
    from hcdc.hub import load_hub_config, preflight, write_seed_accounts

    skip_without_chromium()
    if shutil.which("configurable-http-proxy") is None:
        pytest.skip("configurable-http-proxy not on PATH (npm install -g configurable-http-proxy)")
    root = Path(tempfile.mkdtemp(prefix="hcdc-dashhub-"))
    os.chmod(root, 0o755)  # the service account reaches the data dir; the hub makes the data dir private
    data_dir = root / "data"
    data_dir.mkdir()
    catalog_url = f"sqlite:///{data_dir / 'catalog.sqlite'}"
    port, api_port, hub_port, service_port, dashboards_port = free_ports(5)
    config_file = root / "hcdc_hub.yaml"
    config_file.write_text(yaml.safe_dump({
        "profile": "local",
        "hub": {"ip": "127.0.0.1", "port": port, "proxy_api_port": api_port, "hub_port": hub_port,
                "state_dir": str(root / "state"), "admin_users": ["hcdc-admin"], "log_level": "INFO"},
        "catalog": {"service_port": service_port, "catalog_url": catalog_url, "data_dir": str(data_dir)},
        "dashboards": {"service_port": dashboards_port},
        "local": {"spawner": {"kind": "simple"}},  # no user server is spawned here
    }))
    config = load_hub_config(config_file)
    problems = preflight(config)
    if problems:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip("; ".join(problems))
    catalog = Catalog(catalog_url)
    world = build_world(catalog, root, data_dir)
    with catalog.session() as session:  # B's reduction has an executed notebook alice must not open
        reduction = session.scalar(select(Reduction).where(Reduction.observation_id == world.observation["B"]))
        notebook = reduction_file(data_dir, reduction, "notebook")
        notebook.parent.mkdir(parents=True)
        notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
        reduction.notebook_path = str(notebook)
        world.b_reduction = reduction.id
    catalog.dispose()
    write_seed_accounts(config, PASSWORDS)
    log = root / "hub.log"
    env = {**os.environ, "HCDC_HUB_CONFIG": str(config_file), "HCDC_HUB_PROFILE": "local"}
    env.pop("HCDC_CATALOG_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen([str(BIN / "jupyterhub"), "-f", str(REPO / "hub_config" / "jupyterhub_config.py")],
                                   cwd=root / "state", env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail(f"the hub exited:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(url + "services/hcdc-dashboards/hcdc/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"hub or dashboards service not up after 90 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        yield {"url": url, "world": world, "log": log}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # the hub stops the proxy and its services
            try:
                process.wait(45)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


def test_dashboards_need_the_hub_login(hub):
    response = requests.get(hub["url"] + "services/hcdc-dashboards/voila/render/browser.ipynb", timeout=30,
                            allow_redirects=False)
    assert response.status_code == 302 and "/hub/api/oauth2/authorize" in response.headers["Location"]
    health = requests.get(hub["url"] + "services/hcdc-dashboards/hcdc/health", timeout=30).json()
    assert health["mode"] == "hub"


def test_browser_behind_the_hub_shows_what_alice_may_see(hub):
    world = hub["world"]
    with chromium() as context:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(hub["url"] + "services/hcdc-dashboards/voila/render/browser.ipynb")
        page.wait_for_selector("input[name=username]", timeout=60_000)  # the hub's login page
        page.fill("input[name=username]", "alice")
        page.fill("input[name=password]", PASSWORDS["alice"])
        page.locator("form input[type=submit], form button[type=submit]").first.click()
        page.wait_for_url("**/services/hcdc-dashboards/voila/render/browser.ipynb*", timeout=60_000)
        wait_ready(page, 120)
        assert card(page, "viewer").startswith("Logged in as alice")
        listed = set(page.locator('[data-hcdc="targets"] td[data-col="name"]').all_inner_texts())
        assert listed == {world.target["A"], world.target["C"]}, hub["log"].read_text()[-3000:]
        assert world.key["B"] not in page.inner_text("body")
        screenshot(page, "hub-browser-alice")
        # bob's executed notebook stays closed to alice, even by its URL
        response = page.goto(hub["url"] + f"services/hcdc-dashboards/hcdc/reductions/{world.b_reduction}/notebook")
        assert response.status == 403 and "proprietary" in page.inner_text("body")
        landing = page.goto(hub["url"] + "services/hcdc-dashboards/")
        assert landing.ok and "Logged in as" in page.inner_text("body")
        assert not errors, errors
