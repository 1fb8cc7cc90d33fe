"""First paints of the dashboards: the static page, its store, and when it may be served.

The browser side (shown at once, then replaced by the live page) is in ``test_dashboards_browser.py``;
that one user never receives another's, behind a real hub, in ``test_dashboards_hub.py``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time

import ipywidgets as w
import pytest

from hcdc.dashboards.context import STAFF_NAME, Viewer
from hcdc.dashboards.snapshots import FirstPaintStore, catalog_state, fingerprint
from hcdc_widgets.dashboards.snapshot import page_snapshot, widget_html

ALICE = Viewer(mode="hub", username="alice")


def test_widget_tree_as_static_html():
    payload = '<script type="application/json">{"a": 1}</script>'
    hidden = w.HTML(payload, layout=w.Layout(display="none"))
    tabs = w.Tab([w.HTML("first tab"), w.HTML("second tab")], titles=("One", "Two"), selected_index=1)
    root = w.VBox(
        [
            w.HBox(
                [
                    w.Dropdown(options=["(all)", "DB_K12"], value="DB_K12", description="Filter"),
                    w.Button(description="Go"),
                ]
            ),
            w.HTML(
                '<b data-hcdc="n">12</b><script>alert(1)</script><SCRIPT src="x.js"></SCRIPT>'
                '<base href="https://elsewhere/"><meta http-equiv="refresh" content="0;url=https://elsewhere/">'
                '<iframe src="https://elsewhere/"></iframe><object data="x"></object><embed src="x">'
                '<link rel="stylesheet" href="https://elsewhere/x.css">'
                '<script type="application/json">{"b": 2}</script>'
                '<img src=x onerror=alert(2)><a href=" javascript:alert(3)" onclick="alert(4)">x</a>'
                '<script data-type="application/json">alert(5)</script><svg><script>alert(6)</script></svg>'
                '<button formaction="javascript:alert(7)">b</button>'
                '<a href="https://example.org/a?b=1&amp;c=2">ok</a><textarea><!-- unclosed'
            ),
            hidden,
            tabs,
            w.Label("a <label>"),
        ],
        layout=w.Layout(width="100%"),
    )
    root.add_class("hcdc-page")
    text = widget_html(root)
    assert text.startswith('<div class="lm-Widget widget-container widget-box widget-vbox hcdc-page"')
    assert "flex-direction: column" in text and "width: 100%" in text
    assert '<b data-hcdc="n">12</b>' in text
    # scripts from widget values never run in the static page: only JSON payloads stay scripts
    assert "<script>alert" not in text.lower() and "&lt;script&gt;alert(1)" in text
    for active in ("<base", "<meta", "<iframe", "<object", "<embed", "<link", "<svg", "<textarea", "<!--"):
        assert active not in text.lower(), active
    assert "&lt;base" in text and "&lt;iframe" in text
    tags = re.findall(r"<[a-zA-Z][^>]*>", text)  # the elements of the page (escaped text has no "<")
    assert not [t for t in tags if re.search(r"\son\w+=|javascript:|formaction", t, re.I)], tags
    assert '<img src="x">' in text and "<button formaction" not in text
    assert text.count("<script") == 2 and payload in text and '<script type="application/json">{"b": 2}' in text
    assert 'href="https://example.org/a?b=1&amp;c=2"' in text and 'data-hcdc="n"' in text
    assert '<div style="display: none">' in text  # the hidden payload is kept, not shown
    assert "second tab" in text and "first tab" not in text and "hcdc-snapshot-tab-selected" in text
    assert 'value="DB_K12"' in text and "disabled" in text and "<button" in text
    assert "a &lt;label&gt;" in text
    assert page_snapshot(root).index("Bokeh") < page_snapshot(root).index("hcdc-page")


def test_store_serves_a_page_only_to_its_viewer_under_its_fingerprint(tmp_path):
    store = FirstPaintStore(tmp_path / "first-paint")
    store.save("browser", ALICE, "f1", "<p>alice's page</p>")
    assert store.load("browser", ALICE, "f1") == "<p>alice's page</p>"
    assert store.load("browser", ALICE, "f2") is None  # the catalog changed
    assert store.load("browser", ALICE, None) is None  # no fingerprint (catalog unreadable): nothing
    assert store.load("monitoring", ALICE, "f1") is None
    for other in (
        Viewer(mode="hub", username="bob"),
        Viewer(mode="hub", username="Alice"),
        Viewer(mode="standalone", username="alice"),
        Viewer(mode="hub", username="alice", all_rows=True),
        Viewer(mode="standalone", username=STAFF_NAME, all_rows=True),
    ):
        assert store.load("browser", other, "f1") is None, other
    with pytest.raises(ValueError, match="no dashboard page"):
        store.load("../../etc/passwd", ALICE, "f1")
    # private to the server's account; names that say nothing of the user; no partial file left behind
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    (path,) = store.directory.iterdir()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and "alice" not in path.name
    # a damaged file is no page
    path.write_text("{not json")
    assert store.load("browser", ALICE, "f1") is None and store.entries() == []
    # a file that says it is alice's but sits under another name is not served to her either
    store.save("browser", Viewer(mode="hub", username="bob"), "f1", "<p>bob's page</p>")
    bob_path = next(p for p in store.directory.iterdir() if p != path)
    os.replace(bob_path, path)
    assert store.load("browser", ALICE, "f1") is None


def test_entries_age_by_the_last_view_not_the_last_rebuild(tmp_path):
    store = FirstPaintStore(tmp_path)
    store.save("pipeline", ALICE, "f1", "x", viewed_at=time.time() - 10 * 86400)
    store.save("browser", ALICE, "f1", "y")
    assert [e.page for e in store.entries(7 * 86400)] == ["browser"]
    (old,) = [e for e in store.entries() if e.page == "pipeline"]
    store.save("pipeline", ALICE, "f2", "x2", viewed_at=old.viewed_at)  # what a rebuild does
    assert [e.page for e in store.entries(7 * 86400)] == ["browser"]
    old_path = next(p for p in tmp_path.iterdir() if p.name.endswith(".html.gz") and p != store._path("browser", ALICE))
    os.utime(old_path, (time.time() - 7200, time.time() - 7200))
    (tmp_path / ".writing.part").write_text("another process's page, half written")
    assert store.prune(7 * 86400) == 1  # the page nobody opened for 10 days goes; the one being written stays
    assert [e.page for e in store.entries()] == ["browser"] and (tmp_path / ".writing.part").exists()


def test_fingerprint_moves_with_every_write_and_with_the_settings(catalog):
    from sqlalchemy import update

    from hcdc.catalog.models import Target
    from hcdc.dashboards.config import DashboardSettings

    with catalog.session() as session:
        session.add(Target(name="HD 1"))
    first = fingerprint(catalog)
    assert first is not None and fingerprint(catalog) == first  # reading changes nothing
    count = catalog_state(catalog)["changes"]
    with catalog.session() as session:
        session.execute(update(Target).values(name=Target.name))  # the same value written back
    assert catalog_state(catalog)["changes"] > count and fingerprint(catalog) != first
    settings = json.loads(DashboardSettings().model_dump_json())
    settings["baseline"]["nights"] += 1
    assert fingerprint(catalog, DashboardSettings(**settings)) != fingerprint(catalog)


def test_rebuild_makes_stale_pages_current_for_their_viewer(catalog, tmp_path):
    """The background rebuild builds each stored page again, for its own viewer, under the new fingerprint."""
    from sqlalchemy import update

    from hcdc.catalog.models import Target
    from hcdc_widgets.dashboards.snapshot import rebuild

    with catalog.session() as session:
        session.add(Target(name="HD 2"))
    staff = Viewer(mode="standalone", username=STAFF_NAME, all_rows=True)
    store = FirstPaintStore(tmp_path / "fp")
    store.save("browser", staff, "old", "<p>stale</p>")
    store.save("pipeline", ALICE, fingerprint(catalog), "<p>current</p>")
    built = rebuild(store, catalog)
    assert [(page, json.loads(who)[2]) for page, who, _s in built] == [("browser", STAFF_NAME)]
    now = fingerprint(catalog)
    page = store.load("browser", staff, now)
    assert page is not None and "hcdc-page-browser" in page and "Standalone staff mode" in page
    assert store.load("pipeline", ALICE, now) == "<p>current</p>"  # current pages are left alone
    with catalog.session() as session:
        session.execute(update(Target).values(name="HD 3"))
    assert store.load("browser", staff, fingerprint(catalog)) is None
    assert {page for page, _who, _s in rebuild(store, catalog)} == {"browser", "pipeline"}
    assert "hcdc-page-browser" in store.load("browser", staff, fingerprint(catalog))


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_served_first_paints_follow_the_catalog(catalog, tmp_path):
    """A real server (standalone, previewing as alice): a page's first visit carries no first paint, the next
    one does; a write to the catalog stops it at once, and the background rebuild brings it back."""
    import requests
    from sqlalchemy import update

    from hcdc.catalog.models import Target

    from .test_dashboards_support import dashboards_server

    if catalog.engine.dialect.name != "sqlite":
        pytest.skip("the server's part is the same on every engine; the triggers are tried on both in test_migrations")
    with catalog.session() as session:
        session.add(Target(name="HD 4"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    store = FirstPaintStore.for_data_dir(data_dir)
    alice = Viewer(mode="standalone", username="alice")
    options = ("--kernel-pool", "0", "--first-paint-rebuild-seconds", "1")
    with dashboards_server(catalog.url, data_dir, viewer="alice", options=options) as server:
        url = server.url + "voila/render/pipeline.ipynb"

        def visit() -> bool:
            response = requests.get(url, timeout=120)
            assert response.ok, server.tail()
            shown = 'id="hcdc-first-paint"' in response.text
            # a first paint is the page itself (the live one is widgets, drawn from the kernel's messages)
            assert shown == ("Previewing as alice" in response.text)
            return shown

        assert not visit()  # nothing stored yet: the live page only; its kernel stores the page
        assert store.load("pipeline", alice, fingerprint(catalog)) is not None
        assert visit()
        with catalog.session() as session:
            session.execute(update(Target).values(name="HD 5"))
        assert store.load("pipeline", alice, fingerprint(catalog)) is None
        deadline = time.monotonic() + 120
        while store.load("pipeline", alice, fingerprint(catalog)) is None:  # rebuilt in the background
            assert time.monotonic() < deadline, "the stale first paint was not rebuilt:\n" + server.tail()
            time.sleep(0.5)
        assert visit()
        assert store.load("browser", alice, fingerprint(catalog)) is None  # never opened: never built
