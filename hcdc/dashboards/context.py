"""Who is looking: the viewer of a dashboard, and the catalog opened on their behalf.

The dashboards show what :mod:`hcdc.access` lets the *viewer* see:

``hub``
    served as a JupyterHub service: the hub authenticated the browser (OAuth),
    and the server injects the user name into the notebook before its kernel
    starts (:func:`viewer_cell`); PI/co-I rights and the staff flag come from
    the catalog (:func:`hcdc.access.principal_for`).
``standalone``
    ``python -m hcdc.dashboards serve`` on a staff machine: everything is shown,
    and every page says so. ``--viewer NAME`` previews what NAME may see.

A kernel with neither (a notebook opened by hand) gets :class:`NoViewer`:
the dashboards then explain how to serve them and show no data.
"""

from __future__ import annotations

import html
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

from sqlalchemy.orm import Session

from hcdc import access
from hcdc.access import Principal

#: Environment variable of a standalone server (inherited by its kernels): "staff" or "user:<name>".
STANDALONE_ENV = "HCDC_DASHBOARDS_STANDALONE"
#: Display name of the standalone staff viewer.
STAFF_NAME = "staff (standalone)"


class NoViewer(RuntimeError):
    """The kernel does not know who is looking (not started by the dashboards server)."""


@dataclass(frozen=True)
class Viewer:
    """The person the dashboards answer: how they were identified and their user name."""

    mode: str  #: "hub" or "standalone"
    username: str  #: hub user name, or the standalone display name
    all_rows: bool = False  #: standalone staff mode: no access filter at all

    def principal(self, session: Session) -> Principal:
        """Their rights as the catalog knows them (staff mode: staff)."""
        if self.all_rows:
            return Principal(username=self.username, is_staff=True)
        return access.principal_for(session, self.username)

    def describe(self, principal: Principal) -> str:
        """One sentence for the page header: who, and what they see."""
        if self.all_rows:
            return (
                "Standalone staff mode: every row of the catalog is shown, proprietary ones included "
                "(serve through the hub to show each user only what they may see)."
            )
        who = f"Logged in as {self.username}" if self.mode == "hub" else f"Previewing as {self.username}"
        if principal.is_staff:
            return f"{who} (staff): every row of the catalog is shown."
        if not principal.known:
            return f"{who}: not a catalog user, so only released (public) data are shown."
        n = len(principal.programme_ids)
        return (
            f"{who}: released data and the proprietary data of your {n} programme{'s' if n != 1 else ''} are shown."
            if n
            else f"{who}: only released (public) data are shown."
        )


_current: Viewer | None = None


def set_viewer(mode: str, username: str) -> None:
    """Called by the cell the server injects (hub mode) before the dashboard's own cells."""
    global _current
    if mode != "hub":
        raise ValueError("only the hub server injects viewers; standalone mode comes from the server's environment")
    if not username:
        raise ValueError("a hub viewer needs a user name")
    _current = Viewer(mode="hub", username=username)


def current_viewer() -> Viewer:
    """The viewer of this kernel (see the module docstring); :class:`NoViewer` when unknown."""
    if _current is not None:
        return _current
    standalone = os.environ.get(STANDALONE_ENV, "")
    if standalone == "staff":
        return Viewer(mode="standalone", username=STAFF_NAME, all_rows=True)
    if standalone.startswith("user:") and standalone[5:]:
        return Viewer(mode="standalone", username=standalone[5:])
    raise NoViewer(
        "this dashboard does not know who is looking: open it through the HC-DC hub "
        "(services → hcdc-dashboards), or serve it for staff with "
        "'python -m hcdc.dashboards serve'"
    )


def viewer_cell(username: str) -> str:
    """Source of the cell injected first into a notebook served for hub user ``username``."""
    return (
        "from hcdc.dashboards.context import set_viewer as _hcdc_set_viewer\n"
        f"_hcdc_set_viewer('hub', {json.dumps(username)})\n"
        "del _hcdc_set_viewer"
    )


@contextmanager
def reader_session(catalog, principal: Principal) -> Iterator[Session]:
    """A read-only session for ``principal``: on PostgreSQL with row-level security as well.

    The dashboards filter every query with :mod:`hcdc.access`; on PostgreSQL the
    session also runs as the reader role under the RLS policies (as the catalog
    service does), so that a forgotten filter still leaks nothing.
    """
    from hcdc.service import CatalogAccess

    if principal.is_staff:  # staff see every row: RLS would not hide anything
        with catalog.session() as session:
            yield session
            session.rollback()
        return
    with CatalogAccess(catalog).session_for(principal) as session:
        yield session


class CatalogUnavailable(RuntimeError):
    """The catalog cannot be opened (the message, HTML-safe, says why and what to do)."""


def open_catalog():
    """The catalog of this server (HC-DC settings: HCDC_CATALOG_URL / HCDC_DATA_DIR), read-only use."""
    from hcdc.catalog.db import Catalog, current_revision
    from hcdc.settings import get_settings

    try:
        url = get_settings().resolved_catalog_url
    except Exception as exc:
        raise CatalogUnavailable(f"The HC-DC settings are invalid: {html.escape(str(exc))}") from None
    catalog = Catalog(url, migrate=False)
    try:
        revision = current_revision(catalog.engine)
    except Exception as exc:
        raise CatalogUnavailable(
            f"The catalog at {html.escape(catalog.engine.url.render_as_string(hide_password=True))} "
            f"cannot be opened: {html.escape(str(exc))}"
        ) from None
    if revision is None:
        raise CatalogUnavailable(
            "The catalog is empty and not initialised yet: run <code>hcdc db upgrade</code> "
            "then <code>hcdc ingest</code>."
        )
    return catalog
