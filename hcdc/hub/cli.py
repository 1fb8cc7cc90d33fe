"""``hcdc hub``: config, schema, preflight, start."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from .config import (
    DEFAULT_CONFIG,
    HUB_CONFIG_DIR,
    HubConfig,
    HubConfigError,
    NativeAuthenticatorSection,
    hub_schema,
    load_hub_config,
)
from .state import demo_accounts, ensure_state_dir, generate_password, preflight, write_seed_accounts
from .traits import hub_traits, public_url, redacted, render_python, service_settings

# --- command line ---------------------------------------------------------------------------------


def _load(config_path: Path | None, profile: str | None) -> HubConfig:
    try:
        return load_hub_config(config_path, profile)
    except HubConfigError as exc:
        raise click.ClickException(str(exc)) from None


_config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Hub YAML (default: $HCDC_HUB_CONFIG or hub_config/hcdc_hub.yaml).",
)
_profile_option = click.option(
    "--profile",
    type=click.Choice(["local", "cluster"]),
    default=None,
    help="Profile to use (default: the file's 'profile').",
)


@click.group("hub")
def main() -> None:
    """The HC-DC JupyterHub (hub_config/): configuration, checks, start."""


@main.command("config")
@_config_option
@_profile_option
@click.option("--format", "fmt", type=click.Choice(["python", "json"]), default="python", show_default=True)
def config_command(config_path: Path | None, profile: str | None, fmt: str) -> None:
    """Validate the YAML and print the JupyterHub configuration it generates."""
    config = _load(config_path, profile)
    traits = hub_traits(config)
    if fmt == "json":
        click.echo(
            json.dumps(redacted(traits), indent=1, default=lambda v: sorted(v) if isinstance(v, set) else str(v))
        )
    else:
        click.echo(render_python(traits), nl=False)


@main.command("schema")
def schema_command() -> None:
    """Print the JSON schema of the hub YAML."""
    click.echo(json.dumps(hub_schema(), indent=1))


@main.command("preflight")
@_config_option
@_profile_option
@click.option(
    "--fix",
    is_flag=True,
    help="Repair what can be repaired and say what changed: the service account, "
    "the data directory's owner and modes, PI homes closed to each other, "
    "o+x on the folders leading to the interpreter and the data.",
)
def preflight_command(config_path: Path | None, profile: str | None, fix: bool) -> None:
    """Check what the hub needs on this machine (proxy, interpreter reachable by PI accounts, kernel spec,
    service account, private data directory and homes)."""
    changes: list[str] = []
    problems = preflight(_load(config_path, profile), fix=fix, changes=changes)
    for change in changes:
        click.echo(change if change.startswith(("to do:", "checked:")) else f"changed: {change}", err=True)
    for problem in problems:
        click.echo(f"problem: {problem}", err=True)
    if problems:
        raise SystemExit(1)
    click.echo("ready", err=True)


@main.command("start")
@_config_option
@_profile_option
@click.option(
    "--demo-users",
    is_flag=True,
    help="Create (or reset) approved accounts for the catalog's PIs, "
    "co-Is and staff, and the admins, and print their passwords once.",
)
def start_command(config_path: Path | None, profile: str | None, demo_users: bool) -> None:
    """Start the hub in the foreground (Ctrl-C stops it and every server)."""
    config = _load(config_path, profile)
    problems = preflight(config)
    if problems:
        raise click.ClickException("the hub cannot start:\n  " + "\n  ".join(problems))
    if demo_users:
        if not isinstance(config.active.authenticator, NativeAuthenticatorSection):
            raise click.ClickException("--demo-users needs the native authenticator (profile local)")
        catalog_url, _ = service_settings(config)
        people = demo_accounts(catalog_url)
        people += [(admin, "hub admin") for admin in config.hub.admin_users if admin not in dict(people)]
        if not people:
            raise click.ClickException(
                "the catalog has no PI, co-I or staff user: ingest with a programme "
                "table first (hcdc ingest DIR --programmes T.ecsv)"
            )
        passwords = {name: generate_password() for name, _ in people}
        write_seed_accounts(config, passwords, set(config.hub.admin_users))
        click.echo(f"Demo accounts (printed once; log in at {public_url(config)}hub/login):")
        width = max(len(name) for name, _ in people)
        for name, description in people:
            click.echo(f"  {name:<{width}}  {passwords[name]}   {description}")
    source = config.source or DEFAULT_CONFIG
    env = {**os.environ, "HCDC_HUB_CONFIG": str(source), "HCDC_HUB_PROFILE": config.profile}
    command = [str(Path(sys.executable).parent / "jupyterhub"), "-f", str(HUB_CONFIG_DIR / "jupyterhub_config.py")]
    click.echo(f"starting JupyterHub ({config.profile}) at {public_url(config)}", err=True)
    os.chdir(ensure_state_dir(config))  # the hub's configuration file mends the data dir (prepare_state)
    os.execve(command[0], command, env)  # the hub replaces this process: Ctrl-C reaches it directly


if __name__ == "__main__":  # pragma: no cover
    main()
