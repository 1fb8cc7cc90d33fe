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
        yield {"url": url, "world": world, "log": log, "data_dir": data_dir}
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


def _login_and_open(context, hub, user: str):
    page = context.new_page()
    page.goto(hub["url"] + "services/hcdc-dashboards/voila/render/browser.ipynb")
    page.wait_for_selector("input[name=username]", timeout=60_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.locator("form input[type=submit], form button[type=submit]").first.click()
    page.wait_for_url("**/services/hcdc-dashboards/voila/render/browser.ipynb*", timeout=60_000)
    wait_ready(page, 120)
    return page


def test_first_paints_are_each_users_own(hub):
    """Tried as bob after alice: a stored first paint is sent only to the user it was built for.

    alice opens the catalog browser (her first paint is stored), then again (it is sent: her targets A
    and C). bob, logged in next, must not receive it: his first visit carries no first paint and nothing
    of A in the HTML; his second carries his own (B and C). The store is the service account's, 0700/0600.
    """
    from hcdc.dashboards.snapshots import FirstPaintStore

    world = hub["world"]
    url = hub["url"] + "services/hcdc-dashboards/voila/render/browser.ipynb"
    with chromium() as alice:
        _login_and_open(alice, hub, "alice").close()
        page = alice.new_page()
        response = page.goto(url)
        wait_ready(page, 120)
        assert page.evaluate("() => window.hcdcFirstPaintSeen === true"), "alice's second visit had no first paint"
        body = response.body().decode()
        assert 'id="hcdc-first-paint"' in body and world.target["A"] in body and world.key["B"] not in body
    with chromium() as bob:
        page = _login_and_open(bob, hub, "bob")
        assert page.evaluate("() => window.hcdcFirstPaintSeen === true") is False
        assert world.key["A"] not in page.content() and world.target["A"] not in page.content()
        page.close()
        page = bob.new_page()
        response = page.goto(url)
        wait_ready(page, 120)
        body = response.body().decode()
        assert page.evaluate("() => window.hcdcFirstPaintSeen === true"), "bob's second visit had no first paint"
        assert world.target["B"] in body and world.target["A"] not in body and world.key["A"] not in body
        listed = set(page.locator('[data-hcdc="targets"] td[data-col="name"]').all_inner_texts())
        assert listed == {world.target["B"], world.target["C"]}
    store = FirstPaintStore.for_data_dir(hub["data_dir"])
    files = [path for path in store.directory.iterdir() if not path.name.startswith(".")]
    assert len(files) == 2, files  # one page for each user, file names that say nothing of either
    assert oct(store.directory.stat().st_mode & 0o777) == "0o700"
    for path in files:
        assert oct(path.stat().st_mode & 0o777) == "0o600" and "alice" not in path.name and "bob" not in path.name
        assert path.stat().st_uid == store.directory.stat().st_uid != 0
