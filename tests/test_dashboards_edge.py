"""Edge catalogs in the real browser: empty, one observation, only failed reductions.

Each dashboard must render — no JavaScript error, no failed request — with a
clear message saying what is missing, never an error box or a traceback.
"""

from __future__ import annotations

from contextlib import ExitStack
from datetime import date, datetime, timezone

import pytest

from hcdc.catalog import Catalog
from hcdc.catalog.models import Observation, Reduction, Target, TargetAlias
from hcdc.ingest import ensure_instruments

from .test_dashboards_support import (
    card,
    chromium,
    dashboards_server,
    open_dashboard,
    screenshot,
    skip_without_chromium,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

DASHBOARDS = ("monitoring", "pipeline", "browser")


def _observations(catalog, n: int) -> list[int]:
    with catalog.session() as session:
        ensure_instruments(session)
        target = Target(name="HD 95086", ra_deg=164.6, dec_deg=-68.67, parallax_mas=11.5, spectral_type="A8")
        target.aliases.append(TargetAlias(alias="HD 95086", normalized="HD95086"))
        session.add(target)
        session.flush()
        ids = []
        for k in range(n):
            night = date(2025, 3, 1 + k)
            observation = Observation(
                key=f"SPHERE-IRDIS/{night}/OB{k}/HD 95086/DBI/DB_H23",
                instrument="SPHERE-IRDIS",
                target_id=target.id,
                night=night,
                mode="DBI",
                filter="DB_H23",
                dit_s=16.0,
                date_start=datetime(2025, 3, 2 + k, 3, 0, tzinfo=timezone.utc),
                seeing_arcsec=0.7 + 0.05 * k,
                tau0_ms=5.0,
                airmass=1.1,
                wind_speed_ms=6.0,
                release_date=date(2026, 3, 1),
                status="complete",
            )
            session.add(observation)
            session.flush()
            ids.append(observation.id)
        return ids


def _failed(catalog, data_dir) -> None:
    from .synthetic_catalog import add_campaign_results

    ids = _observations(catalog, 3)
    with catalog.session() as session:  # pre-processing failed too, with its reason
        for observation_id in ids:
            session.add(
                Reduction(
                    observation_id=observation_id,
                    step="preprocess",
                    step_version="1",
                    status="failed",
                    attempts=2,
                    error="PreprocessingError: no science frame readable (3 files truncated)",
                    release_date=date(2026, 3, 1),
                    started_at=datetime.now(timezone.utc),
                    finished_at=datetime.now(timezone.utc),
                )
            )
    add_campaign_results(catalog, data_dir, fail=set(ids))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    skip_without_chromium()
    root = tmp_path_factory.mktemp("edge")
    urls = {}
    for name in ("empty", "one", "failed"):
        url = f"sqlite:///{root / name}.sqlite"
        catalog = Catalog(url)
        if name == "one":
            _observations(catalog, 1)
        elif name == "failed":
            _failed(catalog, root / "data")
        catalog.dispose()
        urls[name] = url
    with ExitStack() as stack:
        yield {name: stack.enter_context(dashboards_server(url, root / "data")) for name, url in urls.items()}


@pytest.fixture(scope="module")
def browser(servers):
    with chromium() as context:
        yield context


def _load(browser, server, kind: str, dashboard: str):
    watched = open_dashboard(browser, server.url + f"voila/render/{dashboard}.ipynb")
    page = watched.page
    assert page.locator('[data-hcdc="error"], [data-hcdc="problem"]').count() == 0, page.inner_text("body")
    assert "Traceback" not in page.inner_text("body")
    screenshot(page, f"edge-{kind}-{dashboard}")
    return watched


def test_empty_catalog(browser, servers):
    for dashboard in DASHBOARDS:
        watched = _load(browser, servers["empty"], "empty", dashboard)
        page = watched.page
        assert page.locator('[data-hcdc="empty"]').count() == 1, dashboard
        if dashboard == "pipeline":
            assert "No campaign has been run" in card(page, "no-campaign")
        watched.assert_clean()
        page.close()


def test_catalog_with_one_observation(browser, servers):
    expected = {
        "monitoring": ["note", "empty-contrast", "empty-instrument"],
        "pipeline": ["no-campaign", "no-reductions"],
        "browser": ["no-detections", "no-limits"],
    }
    for dashboard in DASHBOARDS:
        watched = _load(browser, servers["one"], "one", dashboard)
        page = watched.page
        for key in expected[dashboard]:
            assert page.locator(f'[data-hcdc="{key}"]').count() >= 1, (dashboard, key)
        if dashboard == "monitoring":
            assert card(page, "n_observations") == "1"
            assert "outliers need at least" in card(page, "note")
            assert page.locator('div.hcdc-plot[data-plot="conditions"][data-state="ready"]').count() == 1
        if dashboard == "browser":
            assert card(page, "n_targets") == "1"
        watched.assert_clean()
        page.close()


def test_catalog_with_failed_reductions(browser, servers):
    for dashboard in DASHBOARDS:
        watched = _load(browser, servers["failed"], "failed", dashboard)
        page = watched.page
        if dashboard == "pipeline":
            assert card(page, "n_failed") == "3" and card(page, "n_done") == "0"
            rows = page.locator('[data-hcdc="failures"] tbody tr')
            assert rows.count() == 3 and "PCA needs at least 2 frames" in rows.first.inner_text()
            assert page.locator('[data-hcdc="notebook-link"]').count() == 3
        elif dashboard == "monitoring":
            assert card(page, "n_with_contrast") == "0"
            assert page.locator('[data-hcdc="empty-contrast"]').count() == 1
        else:
            assert page.locator('[data-hcdc="no-limits"]').count() == 1
            # no report: the executed notebook of the failed step is offered instead
            reports = page.locator('[data-hcdc="target-observations"] [data-hcdc="report"]')
            assert reports.count() == 3 and "notebook (failed)" in reports.first.inner_text()
        watched.assert_clean()
        page.close()
