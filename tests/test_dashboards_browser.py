"""The three dashboards served for real (Voilà) and loaded in Debian's headless Chromium.

Each page must render without JavaScript errors or failed requests, with its
plots drawn, and the numbers shown must be the catalog's: counts, the
contrast of one observation, detections, failures with their notebook. A
screenshot of each dashboard is written (path printed).
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import requests
from astropy.table import Table
from sqlalchemy import func, select

from hcdc.catalog import Catalog
from hcdc.catalog.models import Detection, DetectionLimit, DetectionLimitPoint, Observation, Reduction, Target

from .test_dashboards_support import (
    card,
    chromium,
    dashboards_server,
    hover_point,
    open_dashboard,
    plot_source,
    screenshot,
    simulated_catalog,
    skip_without_chromium,
    wait_ready,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    skip_without_chromium()
    return simulated_catalog(tmp_path_factory)


@pytest.fixture(scope="module")
def server(simulated):
    with dashboards_server(simulated["catalog_url"], simulated["data_dir"]) as running:
        yield running


@pytest.fixture(scope="module")
def browser(server):
    with chromium() as context:
        yield context


@pytest.fixture(scope="module")
def facts(simulated):
    """What the catalog says, computed here independently of hcdc.dashboards."""
    catalog = Catalog(simulated["catalog_url"])
    try:
        with catalog.session() as session:
            observations = session.scalars(select(Observation).order_by(Observation.id)).all()
            curves = {}
            for limit in session.scalars(select(DetectionLimit)):
                points = session.execute(
                    select(DetectionLimitPoint.sep_arcsec, DetectionLimitPoint.contrast)
                    .where(DetectionLimitPoint.limit_id == limit.id)
                    .order_by(DetectionLimitPoint.sep_arcsec)
                ).all()
                seps, contrasts = np.array(points).T
                curves[limit.observation_id] = float(10 ** np.interp(0.25, seps, np.log10(contrasts)))
            detections = session.execute(
                select(Detection, Target.name)
                .join(Observation, Observation.id == Detection.observation_id)
                .join(Target, Target.id == Observation.target_id)
            ).all()
            failed = session.scalars(select(Reduction).where(Reduction.status == "failed")).all()
            from hcdc.sources import source_rows

            sources = {}
            for row in source_rows(session):  # the staff's view: the dashboards run as the local viewer (staff)
                sources.setdefault(row["target"], []).append(row)
            return {
                "n_observations": len(observations),
                "keys": {o.id: o.key for o in observations},
                "seeing": {o.key: o.seeing_arcsec for o in observations},
                "filters": {o.id: o.filter for o in observations},
                "contrast_0p25": curves,
                "n_targets": session.scalar(select(func.count(func.distinct(Observation.target_id)))),
                "detections": [(d.snr, d.sep_arcsec, d.pa_deg, d.contrast, d.status, name) for d, name in detections],
                "failed": [(r.id, r.observation_id, r.error, r.notebook_path) for r in failed],
                "sources": sources,
                "reported": set(
                    session.scalars(select(Reduction.observation_id).where(Reduction.report_path.isnot(None)))
                ),
            }
    finally:
        catalog.dispose()


def test_monitoring_dashboard(server, browser, simulated, facts):
    watched = open_dashboard(browser, server.url + "voila/render/monitoring.ipynb")
    page = watched.page
    print(f"monitoring: first render {watched.seconds:.1f} s")
    assert "Standalone staff mode" in card(page, "viewer")
    assert int(card(page, "n_observations")) == facts["n_observations"]
    assert int(card(page, "n_flagged")) == 1
    bad_night = simulated["truth"]["bad_seeing_nights"][0]
    row = page.locator(f'[data-hcdc="flagged-nights"] tr[data-night="{bad_night}"]')
    assert "atmosphere" in row.inner_text() and "Hot pixels" in row.inner_text()
    states = page.evaluate(
        "Array.from(document.querySelectorAll('div.hcdc-plot')).map(e => [e.dataset.plot, e.dataset.state])"
    )
    assert dict(states) == {"contrast": "ready", "conditions": "ready", "detector": "ready", "instrument": "ready"}
    assert page.locator("div.hcdc-plot canvas").count() >= 10  # bokeh drew into canvases (shadow DOM pierced)
    # what is plotted is the catalog: every observation, with its seeing
    source = plot_source(page, "conditions", "observations")
    assert len(source["key"]) == facts["n_observations"]
    assert {k: s for k, s in zip(source["key"], source["seeing_arcsec"])} == pytest.approx(facts["seeing"])
    # the contrast of one observation, as shown in the table, is the catalog curve at 0.25"
    observation_id, expected = next(iter(sorted(facts["contrast_0p25"].items())))
    cell = page.locator(f'[data-hcdc="observations"] tr[data-id="{observation_id}"] td[data-col="contrast_0p25"]')
    assert float(cell.inner_text()) == pytest.approx(expected, rel=5e-3)
    contrast = plot_source(page, "contrast", "observations")
    shown = dict(zip(contrast["id"], contrast["contrast_0p25"]))
    assert shown[observation_id] == pytest.approx(expected, rel=1e-9)
    # hovering a point names its observation
    key, tooltip = hover_point(page, "conditions", "trend-seeing_arcsec", 0)
    assert key in tooltip and "target" in tooltip
    screenshot(page, "monitoring")
    # a filter narrows everything shown
    page.locator(".hcdc-filter-filter select").select_option("DB_K12")
    page.wait_for_function(
        "document.querySelector('[data-hcdc=\"n_observations\"]') && "
        f"document.querySelector('[data-hcdc=\"n_observations\"]').textContent.trim() == "
        f"'{sum(1 for f in facts['filters'].values() if f == 'DB_K12')}'",
        timeout=60_000,
    )
    wait_ready(page)
    assert set(plot_source(page, "conditions", "observations")["filter"]) == {"DB_K12"}
    watched.assert_clean()
    page.close()


def test_pipeline_dashboard(server, browser, simulated, facts):
    watched = open_dashboard(browser, server.url + "voila/render/pipeline.ipynb")
    page = watched.page
    print(f"pipeline: first render {watched.seconds:.1f} s")
    assert int(card(page, "n_campaign_observations")) == facts["n_observations"]
    assert int(card(page, "n_failed")) == len(simulated["failed"]) == 1
    assert int(card(page, "n_pending")) == len(simulated["pending"])
    assert int(card(page, "n_done")) == facts["n_observations"] - 2
    reduction_id, observation_id, error, notebook = facts["failed"][0]
    failure = page.locator(f'[data-hcdc="failures"] tr[data-id="{reduction_id}"]')
    assert facts["keys"][observation_id] in failure.inner_text()
    assert "PCA needs at least 2 frames" in failure.inner_text()
    assert page.locator("div.hcdc-plot[data-plot='progress'] canvas").count() >= 2
    screenshot(page, "pipeline")
    # the executed notebook opens (rendered, after the access check) and shows the failure
    with page.context.expect_page() as opened:
        failure.locator('[data-hcdc="notebook-link"]').click()
    notebook_page = opened.value
    notebook_page.wait_for_load_state()
    assert "PCA needs at least 2 frames" in notebook_page.content()
    raw = requests.get(notebook_page.url.split("?")[0] + "?download=1", timeout=30)
    assert raw.ok and raw.content == open(notebook, "rb").read()
    notebook_page.close()
    missing = requests.get(server.url + "hcdc/reductions/999999/notebook", timeout=30)
    assert missing.status_code == 404 and "does not exist" in missing.text
    watched.assert_clean()
    page.close()


def test_catalog_browser(server, browser, facts, reference_data):
    watched = open_dashboard(browser, server.url + "voila/render/browser.ipynb")
    page = watched.page
    print(f"browser: first render {watched.seconds:.1f} s")
    assert int(card(page, "n_targets")) == facts["n_targets"]
    assert int(card(page, "n_observations")) == facts["n_observations"]
    # choose a target with a detection: the table shows the catalog's S/N, separation, PA, contrast, status
    snr, sep, pa, contrast, status, name = sorted(facts["detections"], key=lambda d: d[5])[0]
    option = page.locator(".hcdc-target select option", has_text=name).first.get_attribute("value")
    page.locator(".hcdc-target select").select_option(option)
    page.wait_for_function(
        f"document.querySelector('[data-hcdc=\"target-card\"]').dataset.target == {name!r}", timeout=60_000
    )
    wait_ready(page)
    row = page.locator('[data-hcdc="detections"] tbody tr').first
    cells = {
        c: row.locator(f'td[data-col="{c}"]').inner_text()
        for c in ("snr", "sep_arcsec", "pa_deg", "contrast", "status")
    }
    assert float(cells["snr"]) == pytest.approx(snr, abs=0.05)
    assert float(cells["sep_arcsec"]) == pytest.approx(sep, abs=5e-4)
    assert float(cells["pa_deg"]) == pytest.approx(pa, abs=0.05)
    assert float(cells["contrast"]) == pytest.approx(contrast, rel=5e-3)
    assert cells["status"] == status
    # sources across epochs: the catalog's verdicts, and the background track of one of them drawn
    expected = facts["sources"].get(name, [])
    listed = page.locator('[data-hcdc="sources"] tbody tr')
    assert listed.count() == len(expected) > 0
    shown = {
        listed.nth(i).locator('td[data-col="source"]').inner_text(): listed.nth(i)
        .locator('td[data-col="status"]')
        .inner_text()
        for i in range(listed.count())
    }
    assert shown == {str(r["source"]): r["status"] for r in expected}
    page.wait_for_selector("div.hcdc-plot[data-plot='source-track'][data-state='ready']", timeout=60_000)
    # contrast curves with the detections; a published curve for comparison
    assert plot_source(page, "curves", "detections") is not None
    page.locator(".hcdc-references select").select_option(index=0)
    page.wait_for_function("window.hcdcDash.source('curves', 'reference-0') !== null", timeout=60_000)
    reference = plot_source(page, "curves", "reference-0")
    assert min(reference["sep_arcsec"]) == pytest.approx(0.2) and reference["contrast"][0] == pytest.approx(
        10 ** (-0.4 * 14.25)
    )
    # per observation: the report opens (an observation of the target whose reduction has one)
    labels = [o.get_attribute("value") for o in page.locator(".hcdc-observation select option").all()]
    with_report = [(v, int(re.search(r"#(\d+)$", v).group(1))) for v in labels]  # labels end with "#<id>"
    with_report = [(v, i) for v, i in with_report if i in facts["reported"]]
    assert with_report, "the chosen target has no reduction report"
    page.locator(".hcdc-observation select").select_option(with_report[0][0])
    page.wait_for_selector(f'[data-hcdc="observation-card"][data-id="{with_report[0][1]}"]', timeout=60_000)
    with page.context.expect_page() as opened:
        page.locator('[data-hcdc="observation-report"]').first.click()
    report = opened.value
    report.wait_for_load_state()
    assert "Report of" in report.content()
    report.close()
    screenshot(page, "browser")
    # exports of the current selection, in three formats, readable by astropy
    n_observations = page.locator('[data-hcdc="target-observations"]').get_attribute("data-rows")
    for fmt, reader in (("csv", "ascii.csv"), ("ecsv", "ascii.ecsv"), ("votable", "votable")):
        page.locator(f".hcdc-export-{fmt} button, button.hcdc-export-{fmt}").first.click()
        link = page.locator(f'[data-hcdc="download-{fmt}"]')
        link.wait_for(timeout=60_000)
        with page.expect_download() as download:
            link.click()
        table = Table.read(io.BytesIO(open(download.value.path(), "rb").read()), format=reader)
        assert len(table) == int(n_observations) and set(table["target"]) == {name}, fmt
        if fmt != "csv":
            assert str(table["seeing_arcsec"].unit) == "arcsec"
    watched.assert_clean()
    page.close()


def test_landing_page_lists_the_dashboards(server):
    landing = requests.get(server.url, timeout=30)
    assert landing.ok
    assert all(f'data-dashboard="{name}"' in landing.text for name in ("monitoring", "pipeline", "browser"))
    assert re.search("Standalone staff mode", landing.text)


def test_first_paint_then_the_live_page(server, browser, simulated, facts):
    """A page viewed before, on an unchanged catalog, is shown at once from its stored first paint, then the
    live page takes its place (its filters work); after any write to the catalog no first paint is sent."""
    url = server.url + "voila/render/monitoring.ipynb"
    open_dashboard(browser, url).page.close()  # viewed once: its first paint is stored
    watched = open_dashboard_first_paint(browser, url)
    page = watched.page
    print(f"monitoring: first paint {watched.seconds:.1f} s")
    # the first paint and the live page show the same numbers
    assert int(watched.first_paint["n_observations"]) == facts["n_observations"]
    assert watched.first_paint["plots"] == ["contrast", "conditions", "detector", "instrument"]
    assert watched.first_paint["disabled_filters"] >= 3  # nothing to click before the live page is there
    wait_ready(page, 120)
    assert page.locator("#hcdc-first-paint").count() == 0
    assert int(card(page, "n_observations")) == facts["n_observations"]
    page.locator(".hcdc-filter-filter select").select_option("DB_K12")  # the live filters answer
    page.wait_for_function(
        "document.querySelector('[data-hcdc=\"n_observations\"]') && "
        "document.querySelector('[data-hcdc=\"n_observations\"]').textContent.trim() == "
        f"'{sum(1 for f in facts['filters'].values() if f == 'DB_K12')}'",
        timeout=60_000,
    )
    watched.assert_clean()
    page.close()
    # a write to the catalog (the same value written back still counts): the stored page is stale
    catalog = Catalog(simulated["catalog_url"], migrate=False)
    with catalog.engine.begin() as connection:
        connection.execute(Target.__table__.update().values(name=Target.__table__.c.name))
    catalog.dispose()
    stale = open_dashboard(browser, url)
    assert stale.page.evaluate("() => window.hcdcFirstPaintSeen === true") is False
    stale.assert_clean()
    stale.page.close()


#: records what the first paint shows as soon as it is parsed (the live page may replace it quickly)
_RECORD_FIRST_PAINT = """
new MutationObserver(function () {
  var shown = document.getElementById('hcdc-first-paint');
  if (!shown || window.hcdcFirstPaintRecord) return;
  var page = shown.querySelector('.hcdc-page');
  if (!page || !shown.querySelector('div.hcdc-doc')) return;  // the page's payload comes last
  window.hcdcFirstPaintRecord = {
    at: performance.now(),
    n_observations: page.querySelector('[data-hcdc="n_observations"]').textContent.trim(),
    plots: Array.from(page.querySelectorAll('div.hcdc-plot')).map(function (e) { return e.dataset.plot; }),
    disabled_filters: page.querySelectorAll('.hcdc-filters select[disabled], .hcdc-filters input[disabled]').length,
  };
}).observe(document, { childList: true, subtree: true });
"""


def open_dashboard_first_paint(context, url: str):
    """Open ``url``, wait until a first paint was shown (its content recorded at once) and the live page is
    ready; ``seconds``: navigation to the first paint parsed."""
    from .test_dashboards_support import watch

    page = context.new_page()
    page.add_init_script(_RECORD_FIRST_PAINT)
    watched = watch(page)
    page.goto(url, wait_until="commit", timeout=120_000)
    page.wait_for_function("() => window.hcdcFirstPaintRecord !== undefined", timeout=120_000, polling=50)
    watched.first_paint = page.evaluate("() => window.hcdcFirstPaintRecord")
    watched.seconds = watched.first_paint["at"] / 1000
    return watched


def test_the_first_paints_allowlist_keeps_every_page_whole(simulated):
    """Every HTML value of the three pages, built on the simulated catalog, passes the first paint's allowlist
    with nothing shown as text and no attribute dropped (a page using a new tag or attribute fails here)."""
    import ipywidgets as w

    from hcdc.dashboards.context import STAFF_NAME, Viewer
    from hcdc_widgets.dashboards import page
    from hcdc_widgets.dashboards.snapshot import safe_value

    def widgets(node):
        yield node
        for child in getattr(node, "children", ()):
            yield from widgets(child)

    catalog = Catalog(simulated["catalog_url"], migrate=False)
    staff = Viewer(mode="standalone", username=STAFF_NAME, all_rows=True)
    checked = 0
    try:
        for name in ("monitoring", "pipeline", "browser"):
            for widget in widgets(page(name, viewer=staff, catalog=catalog).widget()):
                if isinstance(widget, (w.HTML, w.HTMLMath)) and widget.value:
                    kept = safe_value(widget.value)
                    assert kept.count("&lt;") == widget.value.count("&lt;"), (name, widget.value[:300])
                    assert kept.count("<") == widget.value.count("<"), (name, widget.value[:300])
                    assert kept.count("=") == widget.value.count("="), (name, widget.value[:300])
                    checked += 1
    finally:
        catalog.dispose()
    assert checked >= 30
