"""Serving the dashboards: Voilà, standalone for staff or as a JupyterHub service behind the hub login.

One Voilà server renders the notebooks of ``notebooks/dashboards`` with the
``hcdc`` template (``templates/voila/templates/hcdc``), plus three endpoints
of its own under the same prefix:

``<prefix>``                                   landing page: the dashboards and who you are
``<prefix>hcdc/reductions/<id>/notebook|report|log``
                                               a reduction's executed notebook (rendered), report or log,
                                               after the access check (``?download=1``: the file itself)
``<prefix>hcdc/health``                        liveness (no authentication)

**Standalone** (``python -m hcdc.dashboards serve``): 127.0.0.1 by default,
every row visible (staff mode, said on every page), or ``--viewer NAME`` to
preview what NAME may see.

**Hub service** (``--hub``; started by JupyterHub from ``hub_config``): the
hub passes the service URL, prefix, OAuth client and API token in the
environment. Every request is authenticated by the hub
(``jupyterhub.singleuser.extension.JupyterHubIdentityProvider``: OAuth with
the hub, the scope ``access:services!service=<name>`` required); the user name
is injected as the notebook's first cell before its kernel starts
(:func:`hcdc.dashboards.context.viewer_cell`), so each kernel filters the
catalog for that user through :mod:`hcdc.access` (and PostgreSQL RLS). Voilà
kernels execute only the dashboards' own cells — browsers may only exchange
widget messages with them — and the hub's API token is removed from the
kernels' environment.
"""

from __future__ import annotations

import asyncio
import contextvars
import html
import json
import logging
import mimetypes
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.services.kernels.handlers import KernelHandler
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from jupyter_server.utils import url_path_join
from tornado import web
from traitlets import Integer
from voila.app import Voila
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler

from hcdc import access
from hcdc.catalog.models import Reduction

from .context import STAFF_NAME, STANDALONE_ENV, Viewer, viewer_cell

log = logging.getLogger("hcdc.dashboards.server")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks" / "dashboards"
TEMPLATES = REPO / "templates"  #: a Jupyter data dir: voila/templates/hcdc
TEMPLATE = "hcdc"
KERNEL_NAME = "hcdc"
#: niceness of the dashboards' kernels (see DashboardKernelSpecManager) and of the first paints' rebuilds
KERNEL_NICENESS = 10
#: first paints are rebuilt in the background for pages viewed within this long
REBUILD_WITHIN_S = 7 * 86400

#: (notebook stem, title, one line) of every dashboard, in menu order
DASHBOARDS = (
    (
        "monitoring",
        "Instrument monitoring",
        "conditions, detector health, centring, rejected frames and the "
        "achieved contrast over time, with outlier nights flagged",
    ),
    (
        "pipeline",
        "Pipeline status",
        "campaigns; observations done, failed or pending; failures with their reason and executed notebook",
    ),
    (
        "browser",
        "Catalog browser",
        "targets, their observations, detections and contrast curves against "
        "published ones; reports; CSV/ECSV/VOTable exports",
    ),
)

#: JupyterLab extensions the dashboards page loads (others installed in the environment are left out:
#: they expect JupyterLab and fail in Voilà)
EXTENSIONS = [
    "@jupyter-widgets/jupyterlab-manager",
    "@voila-dashboards/widgets-manager8",
    "@voila-dashboards/widgets-manager7",
    "jupyterlab_pygments",
]


class DashboardKernelSpecManager(KernelSpecManager):
    """Kernels of the dashboards: this interpreter, the server's environment, nothing preset.

    The installed ``hcdc`` kernel spec is for PIs' servers; the dashboards' kernels
    must see the catalog and data directory of the server itself.
    """

    def _spec(self) -> KernelSpec:
        return KernelSpec(
            argv=[
                # below the server, which streams the pages and carries every page's widget messages: a kernel
                # building one user's page must not slow the others' (nor, on the same machine, the first
                # paint the browser is drawing meanwhile)
                "nice",
                "-n",
                str(KERNEL_NICENESS),
                sys.executable,
                "-m",
                "ipykernel_launcher",
                "-f",
                "{connection_file}",
                "--IPKernelApp.exec_lines=import hcdc_widgets.dashboards.preload",
            ],
            display_name="HC-DC dashboards",
            language="python",
            env={},
            name=KERNEL_NAME,
            resource_dir=str(NOTEBOOKS),
            metadata={},
        )

    def find_kernel_specs(self) -> dict[str, str]:
        return {KERNEL_NAME: str(NOTEBOOKS)}

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name not in (KERNEL_NAME, "python3"):
            raise NoSuchKernel(kernel_name)
        return self._spec()

    def get_all_specs(self) -> dict[str, dict[str, Any]]:
        return {KERNEL_NAME: {"resource_dir": str(NOTEBOOKS), "spec": self._spec().to_dict()}}


#: the viewer whose page is starting a kernel (set by :func:`prelaunch_hook`, read by ``start_kernel``
#: in the same request's task)
_PAGE_VIEWER: contextvars.ContextVar[str | None] = contextvars.ContextVar("hcdc_page_viewer", default=None)


class DashboardKernelManager(AsyncMappingKernelManager):
    """Kernels of the dashboards, with a pool started in advance (libraries already imported).

    A page takes a pooled kernel when there is one (and a replacement starts);
    every kernel serves one page only, so nothing passes from one viewer to the
    next. Pooled kernels get the server's environment, not the request's (the
    viewer comes in the injected cell, the base URL in HCDC_DASHBOARDS_BASE_URL).

    Every page's kernel belongs to the user who opened the page: only they may
    reach it (websocket, kernel API, shutdown), and each user may run at most
    ``max_kernels_per_user`` of them at once.
    """

    pool_size = Integer(1, config=True, help="Kernels kept started in advance (0: none).")
    max_kernels_per_user = Integer(
        3,
        config=True,
        help=(
            "Dashboard pages (one kernel each) a user may have open at once; one more is refused with 429 "
            "until a page is closed or its kernel culled."
        ),
    )

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pool: list[str] = []
        self._filling = False
        self._owners: dict[str, str] = {}

    def owner_of(self, kernel_id: str) -> str | None:
        """The user whose page started ``kernel_id`` (None: a pooled kernel, or none at all)."""
        return self._owners.get(kernel_id) if kernel_id in self else None

    def kernels_of(self, username: str) -> list[str]:
        return [k for k, owner in list(self._owners.items()) if owner == username and k in self]

    def check_room_for(self, username: str) -> None:
        """Refuse (429) a page that would give ``username`` more kernels than allowed."""
        if len(self.kernels_of(username)) >= self.max_kernels_per_user:
            raise web.HTTPError(
                429,
                reason="Too many dashboards open",
                log_message=(f"{username} has {self.max_kernels_per_user} dashboard pages open"),
            )

    async def start_kernel(
        self, *, kernel_name: str | None = None, path: str | None = None, env: dict | None = None, **kwargs
    ):
        viewer = _PAGE_VIEWER.get()
        if viewer is not None:
            self.check_room_for(viewer)
        kernel_id = None
        while self._pool and kernel_name in (None, KERNEL_NAME):
            candidate = self._pool.pop(0)
            if candidate in self:  # still alive
                kernel_id = candidate
                break
        if kernel_id is None:
            kernel_id = await super().start_kernel(kernel_name=kernel_name, path=path, env=env, **kwargs)
        if viewer is not None:
            self._owners[kernel_id] = viewer
        self.fill_pool()
        return kernel_id

    def fill_pool(self) -> None:
        if self.pool_size > 0 and not self._filling and len(self._pool) < self.pool_size:
            self._filling = True
            asyncio.ensure_future(self._fill())

    async def _fill(self) -> None:
        try:
            while len(self._pool) < self.pool_size:
                kernel_id = await super().start_kernel(kernel_name=KERNEL_NAME, path="", env=dict(os.environ))
                self._pool.append(kernel_id)
        except Exception:  # a pool is an optimisation: pages still start their own kernels
            log.exception("cannot start a pooled dashboards kernel")
        finally:
            self._filling = False

    async def shutdown_kernel(self, kernel_id: str, now: bool = False, restart: bool = False):
        result = await super().shutdown_kernel(kernel_id, now=now, restart=restart)
        if not restart:
            self._owners.pop(kernel_id, None)
        return result

    async def cull_kernel_if_idle(self, kernel_id: str):
        """Abandoned pages' kernels are culled (cull_idle_timeout); the pool's waiting kernels are not."""
        if kernel_id in self._pool:
            return None
        return await super().cull_kernel_if_idle(kernel_id)


def _own_kernel_only(handler, kernel_id: str) -> None:
    """404 unless the request's user started ``kernel_id`` (hub mode; standalone serves one viewer)."""
    if handler.settings.get("hcdc_mode") != "hub":
        return
    viewer = request_viewer(handler)
    owner = getattr(handler.kernel_manager, "owner_of", lambda _k: None)(kernel_id)
    if viewer is None or owner is None or owner != viewer.username:
        raise web.HTTPError(404, f"no kernel {kernel_id} of this user")


class OwnKernelHandler(KernelHandler):
    """``api/kernels/<id>``: the kernel's owner only (others: 404, as for a kernel that does not exist)."""

    async def prepare(self):
        await super().prepare()
        kernel_id = self.path_kwargs.get("kernel_id") or (self.path_args[0] if self.path_args else "")
        _own_kernel_only(self, kernel_id)


class OwnKernelWebsocketHandler(VoilaKernelWebsocketHandler):
    """The page's websocket to its kernel: the kernel's owner only."""

    async def get(self, kernel_id: str, *args, **kwargs):
        if self.current_user is None:
            raise web.HTTPError(403)
        _own_kernel_only(self, kernel_id)
        return await super().get(kernel_id, *args, **kwargs)


class OwnKernelShutdownHandler(VoilaShutdownKernelHandler):
    """``voila/api/shutdown/<id>`` (sent when a page is closed): the kernel's owner only."""

    @web.authenticated
    async def post(self, kernel_id: str):
        _own_kernel_only(self, kernel_id)
        return await super().post(kernel_id)


# --- who is asking --------------------------------------------------------------------------------


def request_viewer(handler) -> Viewer | None:
    """The viewer of a request: the hub user (hub mode) or the server's standalone viewer."""
    mode = handler.settings.get("hcdc_mode")
    if mode == "hub":
        user = handler.current_user
        name = getattr(user, "username", None) if user is not None else None
        return Viewer(mode="hub", username=name) if name else None
    standalone = os.environ.get(STANDALONE_ENV, "staff")
    if standalone.startswith("user:"):
        return Viewer(mode="standalone", username=standalone[5:])
    return Viewer(mode="standalone", username=STAFF_NAME, all_rows=True)


def prelaunch_hook(handler, notebook: nbformat.NotebookNode, cwd: str) -> nbformat.NotebookNode:
    """Before a dashboard's kernel starts: tell it who is looking (hub mode); attach the viewer's first paint."""
    viewer = request_viewer(handler)
    attach_first_paint(handler, notebook, viewer)
    if handler.settings.get("hcdc_mode") == "hub":
        if viewer is None:
            raise web.HTTPError(403, "no hub user")
        manager = handler.kernel_manager
        if hasattr(manager, "check_room_for"):  # refuse now, before the page starts streaming
            manager.check_room_for(viewer.username)
        _PAGE_VIEWER.set(viewer.username)
        cell = nbformat.v4.new_code_cell(viewer_cell(viewer.username))
        cell.metadata["tags"] = ["hcdc-viewer"]
        notebook.cells.insert(0, cell)
    return notebook


def attach_first_paint(handler, notebook: nbformat.NotebookNode, viewer: Viewer | None) -> None:
    """Put the viewer's stored first paint of this page in the notebook's metadata, if it is current.

    The template (``templates/voila/templates/hcdc``) sends it before the live page, which replaces it
    once drawn. Only a page built for this very viewer under the catalog's current fingerprint is
    attached (:mod:`hcdc.dashboards.snapshots`); anything else leaves the page as it was.
    """
    from .snapshots import PAGES as FIRST_PAINT_PAGES
    from .snapshots import fingerprint

    notebook.metadata.pop("hcdc_first_paint", None)  # never from the notebook file
    store = handler.settings.get("hcdc_first_paint")
    page_name = Path(urlparse(handler.request.path).path).stem
    if store is None or viewer is None or page_name not in FIRST_PAINT_PAGES:
        return
    try:
        html_text = store.load(page_name, viewer, fingerprint(handler.settings["hcdc_catalog"]()))
    except Exception:  # an optimisation: the live page is sent all the same
        log.exception("first paint of %s not attached", page_name)
        return
    if html_text:
        notebook.metadata["hcdc_first_paint"] = html_text


class FirstPaintRebuilder:
    """Rebuilds stale first paints in the background once the catalog has settled after a change.

    Every ``interval_s`` the catalog's fingerprint is read. When it has moved since the last successful
    rebuild and then stayed the same for one interval (so that a campaign writing every few seconds does
    not keep a rebuild running), and some stored page viewed in the last week is stale,
    ``python -m hcdc_widgets.dashboards.snapshot`` runs, niced, as this server's account and with its
    settings. A failed rebuild is tried again at the next look.
    """

    def __init__(self, catalog_factory, store, interval_s: float):
        self.catalog_factory = catalog_factory
        self.store = store
        self.interval_s = interval_s
        self.previous: str | None = None  #: the fingerprint at the last look
        self.rebuilt: str | None = None  #: the fingerprint of the last successful rebuild
        self.running: tuple[asyncio.subprocess.Process, str] | None = None

    def start(self) -> None:
        from tornado.ioloop import PeriodicCallback

        PeriodicCallback(self.check, self.interval_s * 1000).start()

    async def check(self) -> None:
        from .snapshots import fingerprint

        if self.running is not None:
            process, stamp = self.running
            if process.returncode is None:
                return
            self.running = None
            if process.returncode == 0:
                self.rebuilt = stamp
            else:
                log.warning("rebuilding the first paints failed (exit %s); tried again later", process.returncode)
        try:
            loop = asyncio.get_running_loop()
            stamp = await loop.run_in_executor(None, lambda: fingerprint(self.catalog_factory()))
        except Exception:
            log.exception("cannot read the catalog's fingerprint")
            return
        settled, self.previous = stamp == self.previous, stamp
        if stamp is None or stamp == self.rebuilt or not settled:
            return
        entries = await loop.run_in_executor(None, lambda: self.store.entries(REBUILD_WITHIN_S))
        if not any(entry.fingerprint != stamp for entry in entries):
            self.rebuilt = stamp
            return
        command = [
            "nice",
            "-n",
            str(KERNEL_NICENESS),
            sys.executable,
            "-m",
            "hcdc_widgets.dashboards.snapshot",
            f"--max-age-days={REBUILD_WITHIN_S / 86400:g}",
        ]
        try:
            process = await asyncio.create_subprocess_exec(*command, cwd=str(REPO))  # its lines go to this log
        except OSError:
            log.exception("cannot start %s", " ".join(command))
            return
        self.running = (process, stamp)


# --- handlers --------------------------------------------------------------------------------------


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<link rel="icon" href="data:;base64,="><style>
body {{ font-family: -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif; margin: 0; color: #1d2733; }}
header {{ background: #14324f; color: white; padding: 14px 28px; }} header a {{ color: #cfe3ff; }}
main {{ padding: 20px 28px; max-width: 1100px; }} .note {{ color: #5b6b7b; }}
li {{ margin: 10px 0; }} a {{ color: #0b5cad; }} pre {{ white-space: pre-wrap; background: #f5f7fa; padding: 8px; }}
.message {{ padding: 12px 16px; border-left: 4px solid #d62728; background: #fdf1f1; }}
{extra_css}</style></head><body><header><b>HC-DC</b> &nbsp; {title}</header><main>{body}</main></body></html>"""


def page(title: str, body: str, extra_css: str = "") -> str:
    return PAGE.format(title=html.escape(title), body=body, extra_css=extra_css)


class IndexHandler(JupyterHandler):
    """The landing page: the dashboards and who is looking."""

    @web.authenticated
    def get(self) -> None:
        viewer = request_viewer(self)
        if viewer is None:
            raise web.HTTPError(403)
        items = "".join(
            f'<li><a href="{html.escape(url_path_join(self.base_url, "voila/render", stem + ".ipynb"))}" '
            f'data-dashboard="{stem}">{html.escape(title)}</a><br><span class="note">{html.escape(text)}</span></li>'
            for stem, title, text in DASHBOARDS
        )
        who = (
            "Standalone staff mode: every row of the catalog is shown."
            if viewer.all_rows
            else f"{'Logged in' if viewer.mode == 'hub' else 'Previewing'} as <b>{html.escape(viewer.username)}</b>: "
            f"the dashboards show what you may see."
        )
        self.finish(page("Dashboards", f"<p>{who}</p><ul>{items}</ul>"))


class ReductionFileHandler(JupyterHandler):
    """A reduction's executed notebook (rendered), report or log, for those who may see the reduction.

    The file is found by :func:`hcdc.reports.open_reduction_file` from the server's data directory and
    the reduction row: only the file the pipeline wrote for that reduction is ever served (no recorded
    path elsewhere, no symbolic link), after the access rule on every request.
    """

    @web.authenticated
    def get(self, reduction_id: str, what: str) -> None:
        from hcdc.reports import ReportUnavailable, open_reduction_file

        viewer = request_viewer(self)
        if viewer is None:
            raise web.HTTPError(403)
        from .context import CatalogUnavailable

        try:
            catalog = self.settings["hcdc_catalog"]()
        except CatalogUnavailable as exc:
            return self._fail(503, str(exc))
        number = int(reduction_id)
        with catalog.session() as session:
            principal = viewer.principal(session)
            reduction = session.get(Reduction, number) if number <= MAX_ROW_ID else None
            if reduction is None:
                return self._fail(404, f"Reduction {number} does not exist in the catalog.")
            if not access.row_visible(session, principal, reduction):
                return self._fail(
                    403,
                    f"Reduction {number} is proprietary: it is not released yet and "
                    f"{html.escape(viewer.username)} is neither PI/co-I of its programme nor staff.",
                )
            label = f"{reduction.step} (reduction {reduction.id}, observation {reduction.observation_id})"
            try:
                path, content = open_reduction_file(self.settings["hcdc_data_dir"], reduction, what)
            except ReportUnavailable as exc:
                log.warning("reduction %s %s not served to %s: %s", number, what, viewer.username, exc)
                return self._fail(404, html.escape(str(exc)) + ".")
        self.set_header("Cache-Control", "no-store")
        if self.get_argument("download", "0") == "1":
            self.set_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
            self.set_header("Content-Disposition", f'attachment; filename="{path.name}"')
            self.finish(content)
            return
        # scripts of a served document run in an opaque origin: they cannot read the dashboards' cookies
        self.set_header("Content-Security-Policy", "sandbox allow-scripts allow-popups allow-downloads")
        if path.suffix == ".ipynb":
            self.finish(
                render_notebook(content, path.name, f"Executed notebook: {label}", self.request.path + "?download=1")
            )
            return
        kind = mimetypes.guess_type(path.name)[0] or "text/plain"
        if kind.startswith("text/") and kind != "text/html":
            kind = "text/plain"
        self.set_header("Content-Type", f"{kind}; charset=utf-8" if kind.startswith("text/") else kind)
        self.finish(content)

    def _fail(self, status: int, text: str) -> None:
        self.set_status(status)
        self.finish(page("Not available", f'<div class="message" data-status="{status}">{text}</div>'))


def render_notebook(content: bytes, name: str, title: str, download_url: str) -> str:
    """An executed notebook as a self-contained HTML page (no CDN: basic template, inline styles)."""
    from nbconvert import HTMLExporter
    from pygments.formatters import HtmlFormatter

    try:
        notebook = nbformat.reads(content.decode("utf-8"), as_version=4)
        body, _resources = HTMLExporter(template_name="basic").from_notebook_node(notebook)
    except Exception as exc:  # a damaged notebook is shown as such, not as a server error
        body = f'<div class="message">This notebook cannot be rendered: {html.escape(str(exc))}</div>'
    css = (
        HtmlFormatter().get_style_defs(".highlight")
        + """
.jp-InputArea, .input_area { background: #f7f7f7; border: 1px solid #e0e0e0; margin: 6px 0; }
.jp-OutputArea-output pre, .output_area pre { background: #fff; }
.jp-RenderedHTMLCommon table { border-collapse: collapse; } .jp-RenderedHTMLCommon td { border: 1px solid #ddd; }
img { max-width: 100%; } .jp-InputPrompt, .jp-OutputPrompt { color: #888; font-size: 0.8em; }"""
    )
    header = f'<p class="note">{html.escape(name)} — <a href="{html.escape(download_url)}">download the .ipynb</a></p>'
    return page(title, header + body, css)


#: the largest id a catalog row can have (PostgreSQL integer): larger ones are answered 404, never 500
MAX_ROW_ID = 2**31 - 1


class HealthHandler(web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok", "service": "hcdc-dashboards", "mode": self.settings.get("hcdc_mode")}))


# --- the application ---------------------------------------------------------------------------------


class DashboardsVoila(Voila):
    """Voilà with the HC-DC endpoints, kernels and (hub mode) the hub's OAuth."""

    hcdc_mode = "standalone"
    #: where first paints are kept (None: off); set by :func:`build_app`
    first_paint_store = None
    first_paint_rebuild_s = 30.0

    def init_settings(self) -> dict:
        settings = super().init_settings()
        settings["hcdc_mode"] = self.hcdc_mode
        settings["hcdc_catalog"] = _catalog_factory()
        from hcdc.settings import get_settings

        settings["hcdc_data_dir"] = get_settings().data_dir
        settings["hcdc_first_paint"] = self.first_paint_store
        if self.hcdc_mode == "hub":
            hub_auth = self.identity_provider.hub_auth
            _ = hub_auth.api_token, hub_auth.api_url  # read them now: the kernels must not inherit the token
            for key in ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
                os.environ.pop(key, None)
        return settings

    def listen(self):
        from tornado.ioloop import IOLoop

        fill = getattr(self.kernel_manager, "fill_pool", None)
        if fill is not None:
            IOLoop.current().add_callback(fill)
        if self.first_paint_store is not None and self.first_paint_rebuild_s > 0:
            FirstPaintRebuilder(
                self.app.settings["hcdc_catalog"], self.first_paint_store, self.first_paint_rebuild_s
            ).start()
        return super().listen()

    def init_handlers(self) -> list:
        own = {
            KernelHandler: OwnKernelHandler,
            VoilaKernelWebsocketHandler: OwnKernelWebsocketHandler,
            VoilaShutdownKernelHandler: OwnKernelShutdownHandler,
        }
        handlers = [
            (spec[0], own.get(spec[1], spec[1]), *spec[2:]) if isinstance(spec, tuple) and len(spec) > 1 else spec
            for spec in super().init_handlers()
        ]
        missing = set(own.values()) - {spec[1] for spec in handlers if isinstance(spec, tuple) and len(spec) > 1}
        if missing:  # a Voilà upgrade renamed a handler: refuse to serve kernels to anyone rather than to all
            raise RuntimeError(f"Voilà's kernel handlers not found, cannot restrict them: {sorted(map(str, missing))}")
        base = self.server_url
        ours: list = [
            (url_path_join(base, r"/hcdc/health"), HealthHandler),
            (url_path_join(base, r"/hcdc/reductions/(\d+)/(notebook|report|log)"), ReductionFileHandler),
            (base.rstrip("/") + "/?", IndexHandler),
        ]
        if self.hcdc_mode == "hub":
            from jupyterhub.singleuser.extension import JupyterHubLogoutHandler, JupyterHubOAuthCallbackHandler

            ours += [
                (
                    url_path_join(base, r"/oauth_callback"),
                    JupyterHubOAuthCallbackHandler,
                    {"hub_auth": self.identity_provider.hub_auth},
                ),
                (url_path_join(base, r"/logout"), JupyterHubLogoutHandler),
            ]
        return ours + handlers


def _catalog_factory():
    cache: dict[str, Any] = {}

    def get():
        if "catalog" not in cache:
            from .context import open_catalog

            cache["catalog"] = open_catalog()
        return cache["catalog"]

    return get


def build_app(
    *,
    hub: bool = False,
    port: int = 8866,
    ip: str = "127.0.0.1",
    base_url: str = "/",
    viewer: str | None = None,
    kernel_pool: int = 1,
    max_kernels_per_user: int = 3,
    kernel_idle_minutes: float = 10,
    first_paint: bool = True,
    first_paint_rebuild_s: float = 30.0,
    extra_args: list[str] | None = None,
) -> DashboardsVoila:
    """A configured (not started) dashboards server; see the module docstring for the modes.

    ``first_paint``: send each viewer's stored first paint of a page before the live page
    (:mod:`hcdc.dashboards.snapshots`), rebuilt ``first_paint_rebuild_s`` after the catalog changed
    (0: only when a page is viewed).
    """
    os.environ["JUPYTER_PATH"] = os.pathsep.join(
        [str(TEMPLATES)] + [p for p in os.environ.get("JUPYTER_PATH", "").split(os.pathsep) if p]
    )
    if hub:
        os.environ.pop(STANDALONE_ENV, None)  # never staff mode behind the hub
    else:
        os.environ[STANDALONE_ENV] = f"user:{viewer}" if viewer else "staff"
    base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    os.environ["HCDC_DASHBOARDS_BASE_URL"] = base_url  # pooled kernels do not get Voilà's VOILA_BASE_URL
    DashboardsVoila.hcdc_mode = "hub" if hub else "standalone"
    from .snapshots import STORE_ENV, FirstPaintStore

    if first_paint:
        from hcdc.settings import get_settings

        store = FirstPaintStore.for_data_dir(get_settings().data_dir)
        os.environ[STORE_ENV] = str(store.directory)  # the kernels store what they build there
    else:
        store = None
        os.environ.pop(STORE_ENV, None)
    DashboardsVoila.first_paint_store = store
    DashboardsVoila.first_paint_rebuild_s = float(first_paint_rebuild_s)
    app = DashboardsVoila()
    argv = [
        str(NOTEBOOKS),
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--no-browser",
        f"--Voila.base_url={base_url}",
        f"--template={TEMPLATE}",
        "--Voila.port_retries=0",
        "--VoilaConfiguration.kernel_spec_manager_class=hcdc.dashboards.server.DashboardKernelSpecManager",
        "--VoilaConfiguration.multi_kernel_manager_class=hcdc.dashboards.server.DashboardKernelManager",
        f"--DashboardKernelManager.pool_size={int(kernel_pool)}",
        f"--DashboardKernelManager.max_kernels_per_user={int(max_kernels_per_user)}",
        # a closed tab stops its kernel (voila/api/shutdown); a crashed one leaves it behind: stop it
        # once idle that long without a connection
        f"--DashboardKernelManager.cull_idle_timeout={int(kernel_idle_minutes * 60)}",
        f"--DashboardKernelManager.cull_interval={max(5, min(120, int(kernel_idle_minutes * 60) // 4))}",
        f"--VoilaConfiguration.extension_allowlist={json.dumps(EXTENSIONS)}",
        "--VoilaConfiguration.show_tracebacks=False",
        "--VoilaConfiguration.file_allowlist=[]",
    ]
    if hub:
        argv += [
            "--Voila.identity_provider_class=jupyterhub.singleuser.extension.JupyterHubIdentityProvider",
            "--Voila.auto_token=True",
        ]
    app.initialize(argv + list(extra_args or []))
    app.voila_configuration.prelaunch_hook = prelaunch_hook
    return app


def hub_address() -> tuple[str, int, str]:
    """(ip, port, prefix) of this service as JupyterHub announced it in the environment."""
    url = os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        raise SystemExit(
            "--hub: JUPYTERHUB_SERVICE_URL is not set (JupyterHub starts this service; to serve the "
            "dashboards yourself, leave out --hub)"
        )
    parsed = urlparse(url)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/hcdc-dashboards/")
    return parsed.hostname or "127.0.0.1", parsed.port or 80, prefix
