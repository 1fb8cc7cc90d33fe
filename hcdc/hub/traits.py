"""The hub YAML turned into JupyterHub traits (and the paths and URLs they derive)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .config import SEED_FILE, HubConfig, NativeAuthenticatorSection, SimpleSpawnerSection, SystemUserSpawnerSection

# --- paths ------------------------------------------------------------------------------------


def relative_to_source(config: HubConfig, path: Path) -> Path:
    path = path.expanduser()
    if not path.is_absolute() and config.source is not None:
        path = config.source.parent / path
    return path.resolve()


def service_settings(config: HubConfig) -> tuple[str, Path]:
    """(catalog URL, data dir) of the service: the YAML's, else HC-DC settings."""
    from hcdc.settings import get_settings

    settings = get_settings()
    data_dir = relative_to_source(config, config.catalog.data_dir) if config.catalog.data_dir else settings.data_dir
    url = config.catalog.catalog_url or settings.catalog_url or f"sqlite:///{data_dir / 'catalog.sqlite'}"
    return url, data_dir


def state_dir(config: HubConfig) -> Path:
    if config.hub.state_dir is not None:
        return relative_to_source(config, config.hub.state_dir)
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


def warm_start_socket(config: HubConfig) -> Path:
    """The server zygote's Unix socket (hcdc.warmstart), in the hub's 0700 state folder."""
    return state_dir(config) / "warm" / "zygote.sock"


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
            environment["HCDC_DASHBOARDS_CONFIG"] = str(relative_to_source(config, dashboards.config))
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
                    "--first-paint" if dashboards.first_paint else "--no-first-paint",
                    f"--first-paint-rebuild-seconds={dashboards.first_paint_rebuild_seconds}",
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
            "warm_start_socket": str(warm_start_socket(config)) if spawner.warm_start else "",
            "warm_kernels": spawner.warm_kernels,
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
