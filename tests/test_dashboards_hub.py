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
import sys
import tempfile
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from hcdc.catalog.models import Reduction
from hcdc.reports import reduction_file

from .access_world import build_world
from .hubtest import launch_hub, stop_hub, write_hub_config
from .test_dashboards_support import card, chromium, screenshot, skip_without_chromium, wait_ready

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
    config_file, ports = write_hub_config(
        root,
        catalog={"catalog_url": catalog_url, "data_dir": str(data_dir)},
        spawner={"kind": "simple"},  # no user server is spawned here
        dashboards=True,
    )
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
    url = f"http://127.0.0.1:{ports['port']}/"
    process, log = launch_hub(root, config_file, [url + "services/hcdc-dashboards/hcdc/health"], cwd=root / "state")
    try:
        yield {"url": url, "world": world, "log": log}
    finally:
        stop_hub(process)
        shutil.rmtree(root, ignore_errors=True)


def test_dashboards_need_the_hub_login(hub):
    response = requests.get(
        hub["url"] + "services/hcdc-dashboards/voila/render/browser.ipynb", timeout=30, allow_redirects=False
    )
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
