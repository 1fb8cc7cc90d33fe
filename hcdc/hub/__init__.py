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

from .cli import config_command, main, preflight_command, schema_command, start_command  # noqa: F401
from .config import (  # noqa: F401
    DEFAULT_CONFIG,
    HUB_CONFIG_DIR,
    REPO,
    SCHEMA_FILE,
    SEED_FILE,
    Authenticator,
    CatalogSection,
    DashboardsSection,
    HubConfig,
    HubConfigError,
    HubSection,
    NativeAuthenticatorSection,
    OAuthAuthenticatorSection,
    Profile,
    SimpleSpawnerSection,
    SlurmSpawnerSection,
    Spawner,
    SystemUserSpawnerSection,
    hub_schema,
    load_hub_config,
)
from .state import (  # noqa: F401
    apply_to,
    demo_accounts,
    ensure_state_dir,
    generate_password,
    mend,
    preflight,
    prepare_state,
    unreachable_ancestors,
    write_seed_accounts,
)
from .traits import (  # noqa: F401
    hub_traits,
    public_url,
    redacted,
    render_python,
    service_account_traits,
    service_settings,
    service_url,
    singleuser_command,
    state_dir,
)
