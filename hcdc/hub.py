"""The HC-DC JupyterHub: validated configuration, translation into traits, accounts, ``hcdc hub``.

The deployment is data: ``hub_config/hcdc_hub.yaml`` (checked against
:class:`HubConfig`, whose JSON schema is ``hub_config/hcdc_hub.schema.json``)
says everything; :func:`hub_traits` turns it into JupyterHub traits, which
``hub_config/jupyterhub_config.py`` applies, then runs the Python files of the
``config_d`` folders (the escape hatch for what the schema does not cover).

Profiles:

``local``
    one machine; NativeAuthenticator (accounts approved by an admin);
    configurable-http-proxy; each PI's server runs as their own OS account
    (``system-users``, created on first spawn) so that file permissions keep
    the data directory out of their reach. ``simple`` runs every server as the
    hub's OS user: for a single developer only (no isolation between PIs).
``cluster``
    single-user servers as SLURM jobs through batchspawner's SlurmSpawner,
    login through the observatory's identity provider (OAuth2/OIDC with
    GenericOAuthenticator).

In both, the catalog service (:mod:`hcdc.service`) is a hub-managed service;
kernels reach it through the proxy with their hub token and get neither a
database URL nor read access to the data directory. So are the dashboards
(:mod:`hcdc.dashboards.server`: Voilà behind the hub's OAuth, section
``dashboards``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import click
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

REPO = Path(__file__).resolve().parents[1]
HUB_CONFIG_DIR = REPO / "hub_config"
DEFAULT_CONFIG = HUB_CONFIG_DIR / "hcdc_hub.yaml"
SCHEMA_FILE = HUB_CONFIG_DIR / "hcdc_hub.schema.json"
SEED_FILE = "accounts-to-create.json"


class HubConfigError(ValueError):
    """The hub configuration is invalid (message names the file and the fields)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the schema -------------------------------------------------------------------------------


class HubSection(_Model):
    ip: str = Field(
        "127.0.0.1",
        description="Address the proxy listens on for browsers "
        "(127.0.0.1: this machine only; 0.0.0.0: every interface).",
    )
    port: int = Field(8000, ge=1, le=65535, description="Public port of the proxy (browsers and kernels).")
    hub_ip: str = Field(
        "127.0.0.1",
        description="Address of the hub's internal API. On a cluster: an address the "
        "compute nodes reach (see hub_connect_ip).",
    )
    hub_connect_ip: str | None = Field(
        None,
        description="Address single-user servers use to reach the hub API "
        "(cluster: the login node's address). Default: hub_ip.",
    )
    hub_port: int = Field(8081, ge=1, le=65535, description="Port of the hub's internal API.")
    proxy_api_port: int | None = Field(
        None, ge=1, le=65535, description="Port of configurable-http-proxy's REST API. Default: port + 1."
    )
    public_url: str | None = Field(
        None,
        description="URL of the proxy as browsers and compute nodes see it "
        "(e.g. https://hub.example.org/). Default: http://ip:port/.",
    )
    base_url: str = Field("/", description="URL prefix of the whole hub (e.g. /hcdc/).")
    state_dir: Path | None = Field(
        None,
        description="Hub state (database, cookie secret, proxy pid), kept 0700. "
        "Default: <HC-DC data_dir>/hub. Relative paths are relative "
        "to this YAML file.",
    )
    admin_users: list[str] = Field(
        ["hcdc-admin"], description="Hub administrators (approve NativeAuthenticator sign-ups at /hub/authorize)."
    )
    cookie_max_age_days: float = Field(1.0, gt=0, le=90, description="How long a browser login lasts (days).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Hub log level.")
    config_d: list[Path] = Field(
        [Path("jupyterhub_config.d")],
        description="Folders of extra jupyterhub_config Python files, run in name order "
        "after the validated settings (escape hatch). Relative to this file.",
    )

    @field_validator("base_url")
    @classmethod
    def _slashes(cls, value: str) -> str:
        return "/" + value.strip("/") + "/" if value.strip("/") else "/"


class CatalogSection(_Model):
    service_name: str = Field(
        "hcdc-catalog",
        pattern=r"^[a-z][a-z0-9-]{1,40}$",
        description="Name of the catalog service (URL /services/<name>/ and the scope "
        "access:services!service=<name> every user gets).",
    )
    service_port: int = Field(10101, ge=1, le=65535, description="Port the catalog service listens on (127.0.0.1).")
    catalog_url: str | None = Field(
        None,
        description="SQLAlchemy URL of the catalog for the service only. "
        "Default: HC-DC settings (HCDC_CATALOG_URL). Never passed "
        "to users' servers.",
    )
    data_dir: Path | None = Field(
        None, description="HC-DC data directory (products) for the service. Default: HC-DC settings (HCDC_DATA_DIR)."
    )
    token_cache_seconds: int = Field(
        30, ge=0, le=3600, description="How long the service trusts a checked hub token (revocation delay)."
    )
    harden_data_dir: bool = Field(
        True,
        description="At start, make the data directory and a SQLite catalog "
        "readable by the hub's OS user only (0700/0600), so that PI "
        "accounts cannot open products or the database directly.",
    )
    service_user: str | None = Field(
        "hcdc-service",
        pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Unprivileged OS account the catalog and dashboards services run "
        "as (a system account without login, created at start when "
        "missing); it owns the data directory (0700/0600) and the hcdc "
        "commands run as root switch to it (HCDC_SERVICE_USER). Only "
        "the hub keeps root, to spawn servers. null: the services run "
        "as the hub's own account (one developer, no root).",
    )


class DashboardsSection(_Model):
    enabled: bool = Field(
        True,
        description="Serve the Voilà dashboards (instrument monitoring, pipeline status, "
        "catalog browser) as a hub service behind the hub login; each user "
        "sees what the access rule lets them see.",
    )
    service_name: str = Field(
        "hcdc-dashboards",
        pattern=r"^[a-z][a-z0-9-]{1,40}$",
        description="Name of the dashboards service (URL /services/<name>/ and the scope "
        "access:services!service=<name> every user gets).",
    )
    service_port: int = Field(10102, ge=1, le=65535, description="Port the dashboards service listens on (127.0.0.1).")
    display: bool = Field(True, description="List the dashboards in the hub's Services menu.")
    config: Path | None = Field(
        None,
        description="Dashboards settings YAML (outlier thresholds; HCDC_DASHBOARDS_CONFIG). Relative to this file.",
    )
    max_kernels_per_user: int = Field(
        3,
        ge=1,
        le=50,
        description="Dashboard pages (one kernel each) a user may "
        "have open at once; one more is refused (429) "
        "until a page is closed.",
    )
    kernel_idle_minutes: float = Field(
        10,
        gt=0,
        le=1440,
        description="A page's kernel left without a connection "
        "(crashed tab, lost network) is stopped after "
        "this many idle minutes; closing a page stops "
        "its kernel at once.",
    )


class NativeAuthenticatorSection(_Model):
    kind: Literal["native"] = Field(
        "native",
        description="Accounts in the hub database (jupyterhub-nativeauthenticator); sign-ups wait for an admin.",
    )
    enable_signup: bool = Field(True, description="Show the sign-up page.")
    open_signup: bool = Field(False, description="Let sign-ups in without admin approval (never in production).")
    minimum_password_length: int = Field(10, ge=8, le=128, description="Minimum password length at sign-up.")
    check_common_password: bool = Field(True, description="Refuse the most common passwords at sign-up.")
    allowed_failed_logins: int = Field(
        5, ge=0, le=100, description="Failed logins before a user is blocked (0: never blocked)."
    )
    seconds_before_next_try: int = Field(600, ge=0, description="How long a blocked user waits.")


class OAuthAuthenticatorSection(_Model):
    kind: Literal["generic-oauth"] = Field(
        "generic-oauth", description="The observatory's identity provider (OAuth2 / OpenID Connect)."
    )
    login_service: str = Field("Observatory account", description="Label of the login button.")
    client_id: str = Field(..., description="Client id registered with the identity provider.")
    client_secret_env: str = Field(
        "HCDC_OAUTH_CLIENT_SECRET", description="Environment variable holding the client secret (never in this file)."
    )
    authorize_url: str = Field(
        ...,
        description="Authorization endpoint, e.g. https://idp.example.org/auth/realms/obs/protocol/openid-connect/auth",
    )
    token_url: str = Field(..., description="Token endpoint.")
    userdata_url: str = Field(..., description="User-info endpoint.")
    oauth_callback_url: str = Field(..., description="https://<public hub>/hub/oauth_callback, as registered.")
    scope: list[str] = Field(["openid", "profile", "email"], description="Scopes requested.")
    username_claim: str = Field(
        "preferred_username",
        description="Claim holding the user name; it must equal "
        "the catalog's users.username (the programme "
        "tables' pi_username / co_is).",
    )
    groups_key: str | None = Field(
        "groups", description="Claim holding the user's groups (for allowed_groups and admin_groups)."
    )
    allowed_groups: list[str] = Field([], description="Only members of these groups may log in.")
    admin_groups: list[str] = Field([], description="Members of these groups are hub admins.")
    allow_all: bool = Field(
        False,
        description="Let every account of the identity provider in (the catalog still shows them public data only).",
    )


class SystemUserSpawnerSection(_Model):
    kind: Literal["system-users"] = Field(
        "system-users", description="Each hub user's server runs as an OS account of its own (LocalProcessSpawner)."
    )
    system_user_prefix: str = Field(
        "", pattern=r"^[a-z_][a-z0-9_-]*$|^$", description="OS account name = prefix + hub user name."
    )
    create_system_users: bool = Field(
        True, description="Create the OS account (useradd, no login shell) on first spawn."
    )
    min_uid: int = Field(
        1000,
        ge=1,
        description="Refuse to run a server as an existing OS account below this uid (root and system accounts).",
    )
    disable_server_extensions: list[str] = Field(
        ["panel.io.jupyter_server_extension"],
        description="Jupyter server extensions installed in the "
        "environment but not loaded in users' servers "
        "(panel's costs ~5 s per start and HC-DC does not "
        "use it).",
    )
    start_timeout: int = Field(60, ge=5, le=3600, description="Seconds a server may take to start.")
    http_timeout: int = Field(60, ge=5, le=3600, description="Seconds a started server may take to answer.")


class SimpleSpawnerSection(_Model):
    kind: Literal["simple"] = Field(
        "simple",
        description="Every server runs as the hub's OS user "
        "(SimpleLocalProcessSpawner): no isolation between PIs, "
        "for one developer only.",
    )
    home_dir_template: str = Field("/tmp/hcdc-hub-{username}", description="Working folder of each user.")
    disable_server_extensions: list[str] = Field(
        ["panel.io.jupyter_server_extension"],
        description="Jupyter server extensions installed in the "
        "environment but not loaded in users' servers "
        "(panel's costs ~5 s per start and HC-DC does not "
        "use it).",
    )
    start_timeout: int = Field(60, ge=5, le=3600, description="Seconds a server may take to start.")
    http_timeout: int = Field(60, ge=5, le=3600, description="Seconds a started server may take to answer.")


class SlurmSpawnerSection(_Model):
    kind: Literal["slurm"] = Field(
        "slurm",
        description="Each server is a SLURM job (batchspawner.SlurmSpawner), run as the user's cluster account.",
    )
    partition: str = Field("interactive", description="SLURM partition.")
    account: str | None = Field(None, description="SLURM account to charge.")
    runtime: str = Field("08:00:00", pattern=r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$", description="Job time limit.")
    memory: str = Field("16G", pattern=r"^\d+[KMGT]?$", description="Memory per job.")
    cores: int = Field(4, ge=1, le=1024, description="CPU cores per job.")
    options: str = Field("", description="Extra #SBATCH options, as one string.")
    prologue: str = Field("", description="Shell lines run in the job before the server (module load ...).")
    singleuser_cmd: str | None = Field(
        None,
        description="jupyterhub-singleuser on the compute nodes. Default: the "
        "one of this environment (shared file system).",
    )
    disable_server_extensions: list[str] = Field(
        ["panel.io.jupyter_server_extension"],
        description="Jupyter server extensions installed in the "
        "environment but not loaded in users' servers "
        "(panel's costs ~5 s per start and HC-DC does not "
        "use it).",
    )
    start_timeout: int = Field(300, ge=30, le=86400, description="Seconds a job may wait in the queue and start.")
    http_timeout: int = Field(120, ge=5, le=3600, description="Seconds a started server may take to answer.")


Authenticator = Annotated[NativeAuthenticatorSection | OAuthAuthenticatorSection, Field(discriminator="kind")]
Spawner = Annotated[SystemUserSpawnerSection | SimpleSpawnerSection | SlurmSpawnerSection, Field(discriminator="kind")]


class Profile(_Model):
    authenticator: Authenticator = Field(
        default_factory=NativeAuthenticatorSection, description="Who may log in and how."
    )
    spawner: Spawner = Field(default_factory=SystemUserSpawnerSection, description="Where servers run.")
    proxy_command: list[str] = Field(
        ["configurable-http-proxy"], min_length=1, description="The proxy (npm install -g configurable-http-proxy)."
    )


def _cluster_default() -> Profile:
    return Profile(
        authenticator=OAuthAuthenticatorSection(
            client_id="hcdc-hub",
            authorize_url="https://idp.example.org/auth",
            token_url="https://idp.example.org/token",
            userdata_url="https://idp.example.org/userinfo",
            oauth_callback_url="https://hub.example.org/hub/oauth_callback",
        ),
        spawner=SlurmSpawnerSection(),
    )


class HubConfig(_Model):
    """HC-DC JupyterHub deployment (hub_config/hcdc_hub.yaml)."""

    profile: Literal["local", "cluster"] = Field(
        "local", description="Which profile runs (HCDC_HUB_PROFILE or --profile override it)."
    )
    hub: HubSection = Field(default_factory=HubSection, description="Hub, proxy and state.")
    catalog: CatalogSection = Field(default_factory=CatalogSection, description="The catalog service.")
    dashboards: DashboardsSection = Field(default_factory=DashboardsSection, description="The dashboards service.")
    local: Profile = Field(default_factory=Profile, description="One machine.")
    cluster: Profile = Field(default_factory=_cluster_default, description="SLURM cluster + identity provider.")

    #: folder of the YAML file (relative paths), not part of the schema
    source: Path | None = Field(None, exclude=True, description="(internal) the YAML file read.")

    @property
    def active(self) -> Profile:
        return getattr(self, self.profile)


def hub_schema() -> dict[str, Any]:
    schema = HubConfig.model_json_schema()
    schema["properties"].pop("source", None)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "HC-DC JupyterHub configuration"
    return schema


def load_hub_config(path: str | Path | None = None, profile: str | None = None) -> HubConfig:
    """Read and validate a hub YAML file (default ``hub_config/hcdc_hub.yaml``)."""
    path = Path(path or os.environ.get("HCDC_HUB_CONFIG") or DEFAULT_CONFIG).expanduser().resolve()
    if not path.is_file():
        raise HubConfigError(f"hub configuration {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise HubConfigError(f"hub configuration {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise HubConfigError(f"hub configuration {path}: expected a mapping, got {type(data).__name__}")
    profile = profile or os.environ.get("HCDC_HUB_PROFILE")
    if profile:
        data["profile"] = profile
    try:
        config = HubConfig.model_validate({**data, "source": path})
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()]
        raise HubConfigError(f"hub configuration {path} is invalid:\n" + "\n".join(lines)) from None
    return config


# --- paths ------------------------------------------------------------------------------------


def _relative_to_source(config: HubConfig, path: Path) -> Path:
    path = path.expanduser()
    if not path.is_absolute() and config.source is not None:
        path = config.source.parent / path
    return path.resolve()


def service_settings(config: HubConfig) -> tuple[str, Path]:
    """(catalog URL, data dir) of the service: the YAML's, else HC-DC settings."""
    from hcdc.settings import get_settings

    settings = get_settings()
    data_dir = _relative_to_source(config, config.catalog.data_dir) if config.catalog.data_dir else settings.data_dir
    url = config.catalog.catalog_url or settings.catalog_url or f"sqlite:///{data_dir / 'catalog.sqlite'}"
    return url, data_dir


def state_dir(config: HubConfig) -> Path:
    if config.hub.state_dir is not None:
        return _relative_to_source(config, config.hub.state_dir)
    return service_settings(config)[1] / "hub"


def public_url(config: HubConfig) -> str:
    url = (
        config.hub.public_url
        or f"http://{'127.0.0.1' if config.hub.ip in ('', '0.0.0.0') else config.hub.ip}:{config.hub.port}"
    )
    url = url.rstrip("/")
    base = config.hub.base_url
    if not url.endswith(base.rstrip("/")):
        url += base.rstrip("/")
    return url + "/"


def service_url(config: HubConfig) -> str:
    """The URL kernels use for the catalog service (through the proxy)."""
    return f"{public_url(config)}services/{config.catalog.service_name}/"


def service_account_traits(config: HubConfig) -> dict[str, Any]:
    """``user`` and ``cwd`` of the hub-managed services: the service account when the hub is root."""
    name = config.catalog.service_user
    if not name or os.geteuid() != 0:
        return {}
    import pwd

    try:
        home = pwd.getpwnam(name).pw_dir
    except KeyError:  # created by prepare_state when the hub starts
        home = f"/var/lib/{name}"
    return {"user": name, "cwd": home}


def singleuser_command() -> str:
    return str(Path(sys.executable).parent / "jupyterhub-singleuser")


# --- traits -------------------------------------------------------------------------------------


def hub_traits(config: HubConfig) -> dict[str, dict[str, Any]]:
    """The JupyterHub traits of ``config``: ``{class name: {trait: value}}`` (plain data)."""
    hub, catalog, profile = config.hub, config.catalog, config.active
    state = state_dir(config)
    catalog_url, data_dir = service_settings(config)
    name = catalog.service_name
    traits: dict[str, dict[str, Any]] = {
        "JupyterHub": {
            "ip": hub.ip,
            "port": hub.port,
            "hub_ip": hub.hub_ip,
            "hub_port": hub.hub_port,
            "base_url": hub.base_url,
            "log_level": hub.log_level,
            "db_url": f"sqlite:///{state / 'jupyterhub.sqlite'}",
            "cookie_secret_file": str(state / "jupyterhub_cookie_secret"),
            "pid_file": str(state / "jupyterhub.pid"),
            "cookie_max_age_days": hub.cookie_max_age_days,
            "cleanup_servers": True,
            "load_roles": [
                {
                    "name": "user",
                    "description": "HC-DC users: their own resources and the catalog service",
                    "scopes": ["self", f"access:services!service={name}"],
                },
            ],
            "services": [
                {
                    "name": name,
                    "display": False,
                    "url": f"http://127.0.0.1:{catalog.service_port}",
                    "command": [sys.executable, "-m", "hcdc.service"],
                    "environment": {
                        "HCDC_CATALOG_URL": catalog_url,
                        "HCDC_DATA_DIR": str(data_dir),
                        "HCDC_SERVICE_TOKEN_CACHE_SECONDS": str(catalog.token_cache_seconds),
                        "HCDC_SERVICE_LOG_LEVEL": hub.log_level,
                    },
                    **service_account_traits(config),
                }
            ],
        },
        "ConfigurableHTTPProxy": {
            "command": list(profile.proxy_command),
            "api_url": f"http://127.0.0.1:{hub.proxy_api_port or hub.port + 1}",
            "pid_file": str(state / "proxy.pid"),
        },
        "Authenticator": {"admin_users": set(hub.admin_users)},
        "Spawner": {
            # kernels find the service; they get no database URL (an empty one overrides any inherited)
            "environment": {"HCDC_SERVICE_URL": service_url(config), "HCDC_CATALOG_URL": ""},
            "server_token_scopes": ["users:activity!user", "access:servers!server", f"access:services!service={name}"],
            "start_timeout": profile.spawner.start_timeout,
            "http_timeout": profile.spawner.http_timeout,
            "default_url": "/tree",
            "args": [
                "--MappingKernelManager.default_kernel_name=hcdc",
                *(
                    f"--ServerApp.jpserver_extensions={name}=False"
                    for name in profile.spawner.disable_server_extensions
                ),
            ],
        },
    }
    if hub.hub_connect_ip:
        traits["JupyterHub"]["hub_connect_ip"] = hub.hub_connect_ip
    if config.dashboards.enabled:
        dashboards = config.dashboards
        environment = {"HCDC_CATALOG_URL": catalog_url, "HCDC_DATA_DIR": str(data_dir)}
        if dashboards.config:
            environment["HCDC_DASHBOARDS_CONFIG"] = str(_relative_to_source(config, dashboards.config))
        from hcdc.settings import get_settings

        if get_settings().reference_data:
            environment["HCDC_REFERENCE_DATA"] = str(get_settings().reference_data)
        traits["JupyterHub"]["services"].append(
            {
                "name": dashboards.service_name,
                "display": dashboards.display,
                "url": f"http://127.0.0.1:{dashboards.service_port}",
                "oauth_no_confirm": True,
                "command": [
                    sys.executable,
                    "-m",
                    "hcdc.dashboards",
                    "serve",
                    "--hub",
                    f"--max-kernels-per-user={dashboards.max_kernels_per_user}",
                    f"--kernel-idle-minutes={dashboards.kernel_idle_minutes}",
                ],
                "environment": environment,
                **service_account_traits(config),
            }
        )
        traits["JupyterHub"]["load_roles"][0]["scopes"].append(f"access:services!service={dashboards.service_name}")

    auth = profile.authenticator
    if isinstance(auth, NativeAuthenticatorSection):
        traits["JupyterHub"]["authenticator_class"] = "hcdc.hub_extensions.HCDCNativeAuthenticator"
        traits["HCDCNativeAuthenticator"] = {
            "enable_signup": auth.enable_signup,
            "open_signup": auth.open_signup,
            "minimum_password_length": auth.minimum_password_length,
            "check_common_password": auth.check_common_password,
            "allowed_failed_logins": auth.allowed_failed_logins,
            "seconds_before_next_try": auth.seconds_before_next_try,
            "seed_accounts_file": str(state / SEED_FILE),
        }
        # NativeAuthenticator's own approval is the gate; JupyterHub >= 5 wants an explicit allow rule
        traits["Authenticator"]["allow_all"] = True
    else:
        traits["JupyterHub"]["authenticator_class"] = "generic-oauth"
        generic = {
            "login_service": auth.login_service,
            "client_id": auth.client_id,
            "authorize_url": auth.authorize_url,
            "token_url": auth.token_url,
            "userdata_url": auth.userdata_url,
            "oauth_callback_url": auth.oauth_callback_url,
            "scope": list(auth.scope),
            "username_claim": auth.username_claim,
            "allow_all": auth.allow_all,
            "client_secret": os.environ.get(auth.client_secret_env, ""),
        }
        if auth.allowed_groups or auth.admin_groups:
            generic.update(
                {
                    "manage_groups": True,
                    "auth_state_groups_key": f"oauth_user.{auth.groups_key}",
                    "allowed_groups": set(auth.allowed_groups),
                    "admin_groups": set(auth.admin_groups),
                }
            )
        traits["GenericOAuthenticator"] = generic
        traits["Authenticator"]["allow_all"] = auth.allow_all

    spawner = profile.spawner
    if isinstance(spawner, SystemUserSpawnerSection):
        traits["JupyterHub"]["spawner_class"] = "hcdc.hub_extensions.HCDCSystemUserSpawner"
        traits["HCDCSystemUserSpawner"] = {
            "system_user_prefix": spawner.system_user_prefix,
            "create_system_users": spawner.create_system_users,
            "min_uid": spawner.min_uid,
        }
        traits["Spawner"]["cmd"] = [singleuser_command()]
    elif isinstance(spawner, SimpleSpawnerSection):
        traits["JupyterHub"]["spawner_class"] = "jupyterhub.spawner.SimpleLocalProcessSpawner"
        traits["SimpleLocalProcessSpawner"] = {"home_dir_template": spawner.home_dir_template}
        traits["Spawner"]["cmd"] = [singleuser_command()]
        if os.geteuid() == 0:
            traits["Spawner"]["args"].append("--allow-root")
    else:
        traits["JupyterHub"]["spawner_class"] = "batchspawner.SlurmSpawner"
        slurm = {
            "req_partition": spawner.partition,
            "req_runtime": spawner.runtime,
            "req_memory": spawner.memory,
            "req_nprocs": str(spawner.cores),
            "req_options": spawner.options,
            "req_prologue": spawner.prologue,
        }
        if spawner.account:
            slurm["req_account"] = spawner.account
        traits["SlurmSpawner"] = slurm
        traits["Spawner"]["cmd"] = [spawner.singleuser_cmd or singleuser_command()]
    return traits


def redacted(traits: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``traits`` with secrets replaced (for printing)."""
    return {
        cls: {
            key: ("<redacted>" if "secret" in key and value and not key.endswith("_file") else value)
            for key, value in values.items()
        }
        for cls, values in traits.items()
    }


def render_python(traits: dict[str, dict[str, Any]]) -> str:
    """The traits as jupyterhub_config.py lines (secrets redacted), for ``hcdc hub config``."""
    lines = ["# generated by hcdc hub config", "c = get_config()  # noqa: F821"]
    for cls, values in redacted(traits).items():
        for key, value in values.items():
            if isinstance(value, set):
                value = sorted(value)
                lines.append(f"c.{cls}.{key} = set({value!r})")
            else:
                lines.append(f"c.{cls}.{key} = {value!r}")
    return "\n".join(lines) + "\n"


def apply_to(c: Any, config: HubConfig) -> list[Path]:
    """Set ``config``'s traits on the traitlets config ``c``, prepare the state, run config_d files.

    Returns the escape-hatch files that were run.
    """
    prepare_state(config)
    for cls, values in hub_traits(config).items():
        section = c[cls]
        for key, value in values.items():
            section[key] = value
    ran = []
    for folder in config.hub.config_d:
        folder = _relative_to_source(config, folder)
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.py")):
            code = compile(file.read_text(), str(file), "exec")
            exec(code, {"c": c, "hcdc_config": config, "__file__": str(file), "__name__": "__hcdc_config_d__"})
            ran.append(file)
    return ran


# --- state, permissions, accounts ---------------------------------------------------------------


def prepare_state(config: HubConfig) -> Path:
    """Create the state folder (root's or the hub user's, 0700); make the data directory private.

    As root with a ``service_user``: the account is created when missing, and the data directory
    (everything under it but the hub's state) is given to it with modes closed to others; the homes of
    the hub users' OS accounts are closed to each other. Otherwise the data directory and a SQLite
    catalog are made private to the hub's own account (``harden_data_dir``).
    """
    for change in mend(config):
        print(f"HC-DC hub: {change}", file=sys.stderr)
    return state_dir(config)


def ensure_state_dir(config: HubConfig) -> Path:
    """The hub's state folder, created 0700 when missing; nothing else is walked or changed.

    (:func:`prepare_state`, which walks the whole data directory, runs once per hub start, from the
    hub's own configuration file.)
    """
    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(state.stat().st_mode) != 0o700:
        os.chmod(state, 0o700)
    return state


def _close_own_data(config: HubConfig) -> list[Path]:
    """Not root (one developer's hub): the data directory and a SQLite catalog of this account, closed
    to others (0700/0600); what was changed. Files of other accounts are left alone."""
    from sqlalchemy.engine import make_url

    url, data_dir = service_settings(config)
    candidates = [(data_dir, 0o700)]
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        candidates.append((Path(parsed.database), 0o600))
    changed = []
    for path, mode in candidates:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700 | mode)
            changed.append(path)
    return changed


def mend(config: HubConfig) -> list[str]:
    """Make the deployment as private as it must be (see :func:`prepare_state`); returns the changes."""
    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True)
    changes = []
    if stat.S_IMODE(state.stat().st_mode) != 0o700:
        os.chmod(state, 0o700)
        changes.append(f"hub state {state} closed to other accounts (0700)")
    if os.geteuid() == 0 and config.catalog.service_user:
        from hcdc.accounts import ensure_service_account, make_private_tree

        owner, created = ensure_service_account(config.catalog.service_user)
        if created:
            changes.append(f"service account {owner.pw_name} created (uid {owner.pw_uid}, home {owner.pw_dir})")
        if stat.S_IMODE(os.stat(owner.pw_dir).st_mode) & 0o077 if os.path.isdir(owner.pw_dir) else False:
            os.chmod(owner.pw_dir, 0o700)
            changes.append(f"home {owner.pw_dir} of {owner.pw_name} closed to other accounts (0700)")
        _, data_dir = service_settings(config)
        if os.stat(state).st_uid != 0:
            os.chown(state, 0, 0)
            changes.append(f"hub state {state} given back to root")
        changes += make_private_tree(data_dir, owner, skip=(state,))
    elif config.catalog.harden_data_dir:
        changes += [f"{path} closed to other accounts" for path in _close_own_data(config)]
    if os.geteuid() == 0 and isinstance(config.active.spawner, SystemUserSpawnerSection):
        from hcdc.hub_extensions import hub_accounts, private_home

        for user in hub_accounts(config.active.spawner.system_user_prefix, config.active.spawner.min_uid):
            changes += private_home(user)
    return changes


def write_seed_accounts(config: HubConfig, accounts: dict[str, str], admins: set[str] = frozenset()) -> Path:
    """Queue NativeAuthenticator accounts (approved) for the hub's next start; passwords stored hashed."""
    import bcrypt

    state = ensure_state_dir(config)
    path = state / SEED_FILE
    rows = [
        {
            "username": name,
            "password_bcrypt": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode(),
            "admin": name in admins,
        }
        for name, password in sorted(accounts.items())
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(rows, handle, indent=1)
    return path


def demo_accounts(catalog_url: str) -> list[tuple[str, str]]:
    """(username, description) of the catalog's PIs, co-Is and staff: the demo accounts."""
    from sqlalchemy import select

    from hcdc.catalog.db import Catalog
    from hcdc.catalog.models import Programme, ProgrammeMember, User

    catalog = Catalog(catalog_url)
    try:
        with catalog.session() as session:
            rows = session.execute(
                select(User.username, User.is_staff, ProgrammeMember.role, Programme.prog_id)
                .outerjoin(ProgrammeMember, ProgrammeMember.user_id == User.id)
                .outerjoin(Programme, Programme.id == ProgrammeMember.programme_id)
                .order_by(User.username)
            ).all()
    finally:
        catalog.dispose()
    roles: dict[str, list[str]] = {}
    for username, staff, role, prog_id in rows:
        entry = roles.setdefault(username, ["staff"] if staff else [])
        if role:
            entry.append(f"{role.upper()} {prog_id}")
    return [(name, ", ".join(parts)) for name, parts in roles.items() if parts]


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def preflight(config: HubConfig, fix: bool = False, changes: list[str] | None = None) -> list[str]:
    """Problems that would stop the hub (and, with ``fix``, repair the fixable ones); [] when ready.

    ``changes`` (a list) receives, in words, what ``fix`` changed.
    """
    problems: list[str] = []
    changes = changes if changes is not None else []
    problems += _privacy_problems(config, fix, changes)
    problems += _database_problems(config, changes)
    profile = config.active
    proxy = profile.proxy_command[0]
    if shutil.which(proxy) is None:
        problems.append(f"{proxy} is not on PATH: npm install -g configurable-http-proxy")
    if isinstance(profile.spawner, SystemUserSpawnerSection):
        if os.geteuid() != 0:
            problems.append(
                "the system-users spawner starts servers as other OS accounts: run the hub as root "
                "(or choose spawner kind 'simple' for a single developer)"
            )
        else:
            blocked = unreachable_ancestors(Path(sys.executable))
            if blocked and fix:
                for folder in blocked:
                    os.chmod(folder, folder.stat().st_mode | stat.S_IXOTH)
                blocked = unreachable_ancestors(Path(sys.executable))
            if blocked:
                problems.append(
                    f"PI accounts cannot run {os.path.realpath(sys.executable)}: "
                    f"{', '.join(map(str, blocked))} not traversable by others; "
                    f"fix with 'hcdc hub preflight --fix' (chmod o+x on those folders) or install "
                    f"Python outside them"
                )
        spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "hcdc" / "kernel.json"
        if not spec.is_file():
            problems.append(f"kernel spec {spec} missing: hcdc kernel install")
        elif "HCDC_CATALOG_URL" in json.loads(spec.read_text()).get("env", {}):
            problems.append(
                f"kernel spec {spec} presets HCDC_CATALOG_URL: PI kernels must not get a database "
                f"URL; reinstall it with HCDC_CATALOG_URL unset (hcdc kernel install)"
            )
    return problems


def _database_problems(config: HubConfig, changes: list[str]) -> list[str]:
    """A PostgreSQL catalog whose server lets a PI connect without a password is refused.

    Row-level security only binds the roles the service uses; a server that trusts local
    connections (``trust`` or ``peer`` in ``pg_hba.conf``) lets any kernel connect as the
    superuser and read every row. The check does what a PI would: as a PI's OS account (the
    first the spawner made, else ``nobody``), with no password and no pass file, it connects to
    the catalog's host and port as the catalog's role, as ``postgres`` and as its own name.
    """
    from sqlalchemy.engine import make_url

    url, _ = service_settings(config)
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return []
    server = f"{parsed.host}:{parsed.port or 5432}"
    import pwd

    from hcdc.pgcluster import passwordless_probe

    if os.geteuid() == 0:
        from hcdc.hub_extensions import hub_accounts

        prefix = getattr(config.active.spawner, "system_user_prefix", "")
        accounts = hub_accounts(prefix) or [pwd.getpwnam("nobody")]
        who = accounts[0].pw_name
    else:
        who = pwd.getpwuid(os.geteuid()).pw_name
    try:
        seen = passwordless_probe(url, who, sys.executable)
    except Exception as exc:  # the probe itself failed: say so, do not pass silently
        return [f"cannot check the catalog's PostgreSQL for password-less access: {type(exc).__name__}: {exc}"]
    for line in seen:
        changes.append(f"checked: PostgreSQL {server} as OS account {who}, no password: {line}")
    open_roles = [line.split(" as ", 1)[1].split(":")[0] for line in seen if line.startswith("CONNECTED")]
    if open_roles or any(line.startswith("probe failed") for line in seen):
        what = (
            f"lets OS account {who} connect without a password as {', '.join(open_roles)}"
            if open_roles
            else "could not be checked"
        )
        return [
            f"the catalog's PostgreSQL ({server}) {what}: any PI's "
            f"kernel could read every proprietary row, row-level security or not. Use a server that asks "
            f"passwords (scram-sha-256) of every local connection, e.g. the project's own: "
            f"'hcdc db cluster start', then catalog_url from 'hcdc db cluster url'"
        ]
    return []


def _privacy_problems(config: HubConfig, fix: bool, changes: list[str]) -> list[str]:
    """What leaves one PI's files open to another, or the platform's files open to PIs (fixed with ``fix``)."""
    if os.geteuid() != 0:
        return []
    if fix:
        changes += mend(config)
    problems = []
    name = config.catalog.service_user
    if name:
        from hcdc.accounts import account, unreachable_by

        owner = account(name)
        _, data_dir = service_settings(config)
        if owner is None:
            changes.append(
                f"to do: the service account {name} does not exist; the hub creates it at start, or --fix now"
            )
        else:
            if data_dir.exists() and data_dir.stat().st_uid != owner.pw_uid:
                changes.append(
                    f"to do: the data directory {data_dir} is not the service account's; the hub gives "
                    f"it (and all under it but the hub state) to {name} at start, or --fix now"
                )
            blocked = unreachable_by(data_dir, owner)
            if blocked and fix:
                for folder in blocked:
                    os.chmod(folder, folder.stat().st_mode | stat.S_IXOTH)
                    changes.append(f"{folder}: traversable by others (o+x) so that {name} reaches {data_dir}")
                blocked = unreachable_by(data_dir, owner)
            if blocked:
                problems.append(
                    f"the service account {name} cannot reach {data_dir}: "
                    f"{', '.join(map(str, blocked))} not traversable (hcdc hub preflight --fix)"
                )
    if isinstance(config.active.spawner, SystemUserSpawnerSection):
        from hcdc.hub_extensions import hub_accounts

        spawner = config.active.spawner
        for user in hub_accounts(spawner.system_user_prefix, spawner.min_uid):
            if os.path.isdir(user.pw_dir) and os.stat(user.pw_dir).st_mode & 0o077:
                changes.append(
                    f"to do: home {user.pw_dir} of {user.pw_name} is open to other accounts "
                    f"({oct(stat.S_IMODE(os.stat(user.pw_dir).st_mode))}); closed at start, or --fix now"
                )
    return problems


def unreachable_ancestors(executable: Path) -> list[Path]:
    """Folders on the way to ``executable`` (symlinks resolved) that other users cannot traverse."""
    blocked = []
    for target in {executable.absolute(), executable.resolve()}:
        for folder in list(target.parents)[::-1]:
            if not folder.stat().st_mode & stat.S_IXOTH and folder not in blocked:
                blocked.append(folder)
    return blocked


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
