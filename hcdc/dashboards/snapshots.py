"""First paints of the dashboards: each page as each viewer last saw it, while the catalog has not changed.

A Voilà page shows nothing until its JavaScript has loaded and drawn the
widgets (2.0-2.3 s for a page of one widget on 2 cores), after the kernel has
built the page (up to 4 s on 10,000 observations). So each page, once built
for a viewer, is also kept as static HTML
(:func:`hcdc_widgets.dashboards.snapshot.page_snapshot`), and the next time
that viewer opens the page the server sends it first, then the live page
replaces it.

A stored page is served only to the viewer it was built for (same mode, same
user name, same staff flag), and only under the same **fingerprint**
(:func:`fingerprint`): the catalog's write count and token
(:class:`hcdc.catalog.models.CatalogState`, kept by triggers), its schema
revision, the day, the dashboards' settings and the code that builds the pages.
Any write to the catalog makes every stored page stale; a stale page is never
shown (the live page alone is sent, as without this store) and is rebuilt in the
background once the catalog has settled
(:class:`hcdc.dashboards.server.FirstPaintRebuilder`).

The store is a folder of the server's data directory
(``<data dir>/dashboards/first-paint``, 0700, files 0600 of the service account,
written atomically); file names are hashes, never a user's text.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path

from .context import Viewer

#: Environment variable naming the store's folder (the server sets it for its kernels).
STORE_ENV = "HCDC_DASHBOARDS_FIRST_PAINT"
#: Pages that have a first paint.
PAGES = ("monitoring", "pipeline", "browser")
SUFFIX = ".html.gz"

_REPO = Path(__file__).resolve().parents[2]
#: what the pages are built by: the platform and the UI (access rule, queries, pages, template), and the
#: libraries that draw them
_CODE = (_REPO / "hcdc", _REPO / "hcdc_widgets", _REPO / "templates" / "voila" / "templates" / "hcdc")
_LIBRARIES = ("bokeh", "ipywidgets", "voila", "pandas", "sqlalchemy")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the code and libraries that build the pages: a page built by other code is never served."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for folder in _CODE:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix in (".py", ".j2", ".css", ".json") and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(_REPO)).encode())
                digest.update(path.read_bytes())
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}=={version(library)}".encode())
        except PackageNotFoundError:
            digest.update(f"{library} missing".encode())
    return digest.hexdigest()[:16]


def catalog_state(catalog) -> dict | None:
    """The catalog's write count and token, schema revision and date (None: a catalog older than
    migration 0012, which has no count)."""
    from sqlalchemy import select, text
    from sqlalchemy.exc import DBAPIError

    from hcdc.catalog.models import CatalogState

    try:
        with catalog.engine.connect() as connection:
            row = connection.execute(
                select(CatalogState.changes, CatalogState.token).where(CatalogState.id == 1)
            ).one_or_none()
            if row is None:
                return None
            revision = connection.scalar(text("SELECT version_num FROM alembic_version"))
            today = connection.scalar(text("SELECT CURRENT_DATE"))
    except DBAPIError:
        return None
    return {"changes": int(row.changes), "token": row.token, "revision": revision, "database_day": str(today)}


def fingerprint(catalog, settings=None) -> str | None:
    """What a stored page must have been built under to be served now (None: nothing can be served).

    The catalog's write count and token and its schema revision; the day as the access rule
    (``hcdc.access``: the local date), the database (row-level security: ``CURRENT_DATE``) and UTC see
    it, since a release date makes rows public at midnight; the dashboards' settings; the code.
    """
    state = catalog_state(catalog)
    if state is None:
        return None
    if settings is None:
        from .config import get_dashboard_settings

        settings = get_dashboard_settings()
    parts = {
        **state,
        "local_day": date.today().isoformat(),
        "utc_day": datetime.now(timezone.utc).date().isoformat(),
        "settings": settings.model_dump(mode="json"),
        "code": code_digest(),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def viewer_key(viewer: Viewer) -> str:
    """Who a stored page is for: mode, staff flag and user name, all of them."""
    return json.dumps([viewer.mode, bool(viewer.all_rows), viewer.username])


@dataclass(frozen=True)
class Entry:
    page: str
    viewer: Viewer
    fingerprint: str
    made_at: float
    viewed_at: float  #: when its viewer last opened the page (a rebuild keeps it)


class FirstPaintStore:
    """The stored first paints of one server (see the module docstring)."""

    def __init__(self, directory: Path | str):
        self.directory = Path(directory)

    @classmethod
    def for_data_dir(cls, data_dir: Path | str) -> "FirstPaintStore":
        return cls(Path(data_dir) / "dashboards" / "first-paint")

    @classmethod
    def from_environment(cls) -> "FirstPaintStore | None":
        folder = os.environ.get(STORE_ENV)
        return cls(folder) if folder else None

    def _path(self, page: str, viewer: Viewer) -> Path:
        if page not in PAGES:
            raise ValueError(f"no dashboard page {page!r} (pages: {', '.join(PAGES)})")
        name = hashlib.sha256(f"{page}\n{viewer_key(viewer)}".encode()).hexdigest()
        return self.directory / f"{name}{SUFFIX}"

    def save(self, page: str, viewer: Viewer, fingerprint: str, html: str, viewed_at: float | None = None) -> Path:
        """Store ``html`` as ``viewer``'s first paint of ``page`` (whole or not at all).

        ``viewed_at``: when the viewer last opened the page (default now; a background rebuild passes the
        stored one, so that pages nobody opens any more age out). The file is gzip: one line of JSON (whose
        page it is, for whom, under which fingerprint), then the HTML.
        """
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)
        path = self._path(page, viewer)
        now = time.time()
        header = {
            "page": page,
            "viewer": json.loads(viewer_key(viewer)),
            "fingerprint": fingerprint,
            "made_at": now,
            "viewed_at": now if viewed_at is None else float(viewed_at),
        }
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".part")
        try:
            with os.fdopen(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=5) as stream:
                stream.write(json.dumps(header).encode() + b"\n")
                stream.write(html.encode("utf-8"))
            os.chmod(temporary, 0o600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return path

    @staticmethod
    def _read(path: Path, with_html: bool) -> tuple[dict, str | None] | None:
        """(header, HTML or None); None for a missing or damaged file."""
        try:
            with gzip.open(path, "rb") as stream:
                header = json.loads(stream.readline())
                html = stream.read().decode("utf-8") if with_html else None
        except (OSError, ValueError, EOFError, UnicodeDecodeError):
            return None
        return (header, html) if isinstance(header, dict) else None

    def load(self, page: str, viewer: Viewer, fingerprint: str | None) -> str | None:
        """``viewer``'s first paint of ``page`` if it was built under ``fingerprint``; else None."""
        if fingerprint is None:
            return None
        found = self._read(self._path(page, viewer), with_html=True)
        if found is None:
            return None
        header, html = found
        if (
            header.get("page") != page
            or header.get("viewer") != json.loads(viewer_key(viewer))
            or header.get("fingerprint") != fingerprint
        ):
            return None
        return html

    def entries(self, max_age_s: float | None = None) -> list[Entry]:
        """Every stored page (viewed within ``max_age_s``), for rebuilding them (reads the headers only)."""
        out = []
        if not self.directory.is_dir():
            return out
        now = time.time()
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            found = self._read(path, with_html=False)
            if found is None or found[0].get("page") not in PAGES:
                continue
            header = found[0]
            viewed_at = float(header.get("viewed_at", header.get("made_at", 0)))
            if max_age_s is not None and now - viewed_at > max_age_s:
                continue
            mode, all_rows, username = header["viewer"]
            out.append(
                Entry(
                    page=header["page"],
                    viewer=Viewer(mode=mode, username=username, all_rows=bool(all_rows)),
                    fingerprint=header.get("fingerprint", ""),
                    made_at=float(header.get("made_at", 0)),
                    viewed_at=viewed_at,
                )
            )
        return out

    def prune(self, max_age_s: float) -> int:
        """Delete the pages nobody opened within ``max_age_s`` (and damaged or stray files); how many went."""
        if not self.directory.is_dir():
            return 0
        kept = {self._path(e.page, e.viewer) for e in self.entries(max_age_s)}
        removed = 0
        for path in self.directory.iterdir():
            try:
                if path in kept or not path.is_file() or time.time() - path.stat().st_mtime < 3600:
                    continue  # in use, or written within the hour (by another process, maybe now)
                path.unlink()
                removed += 1
            except FileNotFoundError:  # renamed or removed by another process meanwhile
                continue
        return removed
