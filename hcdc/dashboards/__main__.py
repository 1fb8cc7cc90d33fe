"""``python -m hcdc.dashboards``: serve the dashboards, print their configuration."""

from __future__ import annotations

import json
import os
import sys

import click


@click.group()
def main() -> None:
    """HC-DC dashboards (Voilà): instrument monitoring, pipeline status, catalog browser."""


@main.command()
@click.option(
    "--hub",
    is_flag=True,
    help="Run as the JupyterHub service (started by the hub: address, prefix and "
    "OAuth come from its environment; every user sees what they may see).",
)
@click.option("--port", type=int, default=8866, show_default=True, help="Port (standalone).")
@click.option("--ip", default="127.0.0.1", show_default=True, help="Address to listen on (standalone).")
@click.option("--base-url", default="/", show_default=True, help="URL prefix (standalone).")
@click.option("--catalog-url", default=None, help="Catalog to show (default: HC-DC settings, HCDC_CATALOG_URL).")
@click.option(
    "--viewer", default=None, help="Standalone: show what this catalog user may see instead of everything (staff mode)."
)
@click.option(
    "--kernel-pool",
    type=click.IntRange(0, 16),
    default=1,
    show_default=True,
    help="Kernels started in advance, libraries imported, so that a page opens faster (0: none).",
)
@click.option(
    "--max-kernels-per-user",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Dashboard pages (one kernel each) a hub user may have open at once; one more answers 429.",
)
@click.option(
    "--kernel-idle-minutes",
    type=click.FloatRange(0.1, 1440),
    default=10,
    show_default=True,
    help="A page's kernel left without a connection (crashed tab, lost network) is stopped after "
    "this many idle minutes; a page closed normally stops its kernel at once.",
)
@click.option(
    "--first-paint/--no-first-paint",
    default=True,
    show_default=True,
    help="Send each viewer's page as they last saw it first, while the catalog has not changed since, "
    "then the live page (kept in <data dir>/dashboards/first-paint).",
)
@click.option(
    "--first-paint-rebuild-seconds",
    type=click.FloatRange(0, 86400),
    default=30,
    show_default=True,
    help="How often to look whether the catalog changed, and then rebuild the stored pages in the "
    "background (0: never; a page is then stored only when viewed).",
)
def serve(
    hub: bool,
    port: int,
    ip: str,
    base_url: str,
    catalog_url: str | None,
    viewer: str | None,
    kernel_pool: int,
    max_kernels_per_user: int,
    kernel_idle_minutes: float,
    first_paint: bool,
    first_paint_rebuild_seconds: float,
) -> None:
    """Serve the dashboards (standalone staff mode unless --hub or --viewer)."""
    from .server import build_app, hub_address

    if catalog_url:
        os.environ["HCDC_CATALOG_URL"] = catalog_url
    if hub:
        if viewer:
            raise click.UsageError(
                "--viewer is for standalone previews; behind the hub the logged-in user is the viewer"
            )
        ip, port, base_url = hub_address()
    elif ip not in ("127.0.0.1", "localhost", "::1") and not viewer:
        click.echo(
            f"warning: standalone staff mode shows every row, proprietary ones included, to anyone who "
            f"reaches {ip}:{port}; serve through the hub (--hub) for per-user access",
            err=True,
        )
    app = build_app(
        hub=hub,
        port=port,
        ip=ip,
        base_url=base_url,
        viewer=viewer,
        kernel_pool=kernel_pool,
        max_kernels_per_user=max_kernels_per_user,
        kernel_idle_minutes=kernel_idle_minutes,
        first_paint=first_paint,
        first_paint_rebuild_s=first_paint_rebuild_seconds,
    )
    mode = "hub service" if hub else (f"standalone, previewing as {viewer}" if viewer else "standalone staff mode")
    click.echo(f"HC-DC dashboards ({mode}) at http://{ip}:{port}{app.base_url}", err=True)
    app.start()


@main.command()
@click.option("--schema", is_flag=True, help="Print the JSON schema instead of the resolved values.")
def config(schema: bool) -> None:
    """The dashboards' settings (thresholds, baseline, contrast, reference curves)."""
    from .config import dashboard_settings_schema, get_dashboard_settings

    if schema:
        click.echo(json.dumps(dashboard_settings_schema(), indent=1))
    else:
        click.echo(json.dumps(get_dashboard_settings().model_dump(mode="json"), indent=1))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
