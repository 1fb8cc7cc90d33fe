"""The hub YAML: its validated schema (pydantic, with help text) and how it is read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

REPO = Path(__file__).resolve().parents[2]
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
    first_paint: bool = Field(
        True,
        description="Send each user's page as they last saw it first, while the catalog has not changed since, "
        "then the live page (stored per user in <data dir>/dashboards/first-paint, private to the service "
        "account; never sent to another user).",
    )
    first_paint_rebuild_seconds: float = Field(
        30,
        ge=0,
        le=86400,
        description="How often the dashboards look whether the catalog changed, and then rebuild the stale "
        "stored pages of the last week in the background (0: only when a page is viewed).",
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
        "tables' pi / co_is columns).",
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
    warm_start: bool = Field(
        True,
        description="Start servers and kernels as forks of a pre-warmed interpreter (hcdc.warmstart: the "
        "Jupyter server, the kernel, the widgets and the science imported once, by a root process in the hub's "
        "state folder) instead of importing everything again for each PI; false: every server and kernel is "
        "a fresh interpreter.",
    )
    warm_kernels: bool = Field(
        True,
        description="With warm_start: the server's kernels are forks of the PI's own pre-warmed kernel zygote "
        "too; false: they are fresh interpreters (the server alone is forked).",
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
