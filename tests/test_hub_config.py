"""The hub configuration is validated data: schema, profiles, traits, escape hatch, clear errors."""

from __future__ import annotations

import json
import runpy
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from traitlets.config import Config

from hcdc.hub import (
    DEFAULT_CONFIG,
    SCHEMA_FILE,
    HubConfigError,
    hub_schema,
    hub_traits,
    load_hub_config,
    main,
    write_seed_accounts,
)

REPO = Path(__file__).resolve().parents[1]


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "hub.yaml"
    data.setdefault("hub", {}).setdefault("state_dir", str(tmp_path / "state"))
    data.setdefault("catalog", {}).setdefault("data_dir", str(tmp_path / "data"))
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_yaml_matches_the_schema_file():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema == hub_schema(), "hub_config/hcdc_hub.schema.json is stale: hcdc hub schema > it"
    jsonschema.validate(yaml.safe_load(DEFAULT_CONFIG.read_text()), schema)

    def described(node):  # every option carries help text
        for name, prop in node.get("properties", {}).items():
            assert prop.get("description"), name

    described(schema)
    for definition in schema["$defs"].values():
        described(definition)


def test_local_profile_traits():
    traits = hub_traits(load_hub_config(DEFAULT_CONFIG, "local"))
    hub = traits["JupyterHub"]
    assert hub["ip"] == "127.0.0.1"
    assert hub["authenticator_class"] == "hcdc.hub_extensions.HCDCNativeAuthenticator"
    assert hub["spawner_class"] == "hcdc.hub_extensions.HCDCSystemUserSpawner"
    assert traits["Authenticator"]["allow_all"] is True  # JupyterHub >= 5 needs an allow rule
    assert traits["HCDCNativeAuthenticator"]["open_signup"] is False  # an admin approves sign-ups
    service = hub["services"][0]
    assert service["name"] == "hcdc-catalog" and service["command"][-1] == "hcdc.service"
    assert "access:services!service=hcdc-catalog" in hub["load_roles"][0]["scopes"]
    assert "access:services!service=hcdc-catalog" in traits["Spawner"]["server_token_scopes"]
    # users' servers learn where the service is, and get no database URL
    environment = traits["Spawner"]["environment"]
    assert environment["HCDC_SERVICE_URL"].endswith("/services/hcdc-catalog/") and environment["HCDC_CATALOG_URL"] == ""
    assert traits["ConfigurableHTTPProxy"]["command"] == ["configurable-http-proxy"]


def test_cluster_profile_generates_slurm_and_oauth(monkeypatch):
    monkeypatch.setenv("HCDC_OAUTH_CLIENT_SECRET", "s3cret")
    config = load_hub_config(DEFAULT_CONFIG, "cluster")
    traits = hub_traits(config)
    assert traits["JupyterHub"]["spawner_class"] == "batchspawner.SlurmSpawner"
    assert traits["SlurmSpawner"]["req_partition"] == "interactive"
    assert traits["SlurmSpawner"]["req_runtime"] == "08:00:00"
    assert traits["JupyterHub"]["authenticator_class"] == "generic-oauth"
    assert traits["GenericOAuthenticator"]["username_claim"] == "preferred_username"
    assert traits["GenericOAuthenticator"]["client_secret"] == "s3cret"
    result = CliRunner().invoke(main, ["config", "--profile", "cluster"])
    assert result.exit_code == 0, result.output
    assert "c.JupyterHub.spawner_class = 'batchspawner.SlurmSpawner'" in result.output
    assert "s3cret" not in result.output and "<redacted>" in result.output
    # the generated configuration is loadable Python for JupyterHub's config loader
    namespace = {"get_config": Config}
    exec(result.output, namespace)
    assert namespace["c"].SlurmSpawner.req_memory == "16G"


@pytest.mark.parametrize(
    "data, message",
    [
        ({"profile": "moon"}, "profile"),
        ({"hub": {"port": 99999}}, "hub.port"),
        ({"hub": {"prot": 8000}}, "hub.prot"),
        ({"local": {"spawner": {"kind": "docker"}}}, "local.spawner"),
        ({"cluster": {"spawner": {"kind": "slurm", "runtime": "soon"}}}, "cluster.spawner.slurm.runtime"),
    ],
)
def test_invalid_configuration_says_where(tmp_path, data, message):
    with pytest.raises(HubConfigError) as error:
        load_hub_config(_write(tmp_path, data))
    assert message in str(error.value) and "Traceback" not in str(error.value)
    result = CliRunner().invoke(main, ["config", "--config", str(tmp_path / "hub.yaml")])
    assert result.exit_code != 0 and message in result.output


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(HubConfigError, match="no such file"):
        load_hub_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("hub: [unclosed")
    with pytest.raises(HubConfigError, match="not valid YAML"):
        load_hub_config(tmp_path / "bad.yaml")


def test_jupyterhub_config_applies_traits_and_escape_hatch(tmp_path, monkeypatch):
    extra = tmp_path / "extra.d"
    extra.mkdir()
    (extra / "10-banner.py").write_text("c.JupyterHub.template_vars = {'announcement': hcdc_config.profile}\n")
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    path = _write(tmp_path, {"hub": {"config_d": [str(extra)], "port": 8123}})
    monkeypatch.setenv("HCDC_HUB_CONFIG", str(path))
    monkeypatch.delenv("HCDC_HUB_PROFILE", raising=False)
    config = Config()
    runpy.run_path(str(REPO / "hub_config" / "jupyterhub_config.py"), init_globals={"get_config": lambda: config})
    assert config.JupyterHub.port == 8123
    assert config.JupyterHub.template_vars == {"announcement": "local"}
    state = tmp_path / "state"
    assert state.is_dir() and state.stat().st_mode & 0o077 == 0
    assert data_dir.stat().st_mode & 0o077 == 0  # hardened: PI accounts cannot enter it


def test_invalid_configuration_stops_jupyterhub_config_cleanly(tmp_path, monkeypatch):
    monkeypatch.setenv("HCDC_HUB_CONFIG", str(_write(tmp_path, {"hub": {"port": "many"}})))
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(REPO / "hub_config" / "jupyterhub_config.py"), init_globals={"get_config": Config})
    assert "hub.port" in str(stop.value.code)


def test_seed_accounts_are_hashed_and_private(tmp_path):
    config = load_hub_config(_write(tmp_path, {}))
    path = write_seed_accounts(config, {"alice": "correct horse battery"}, admins=set())
    assert path.stat().st_mode & 0o077 == 0
    text = path.read_text()
    assert "correct horse" not in text and json.loads(text)[0]["password_bcrypt"].startswith("$2")


def test_lab_defaults_switch_off_the_news_prompt_and_keep_other_settings(tmp_path):
    import json

    from hcdc.kernelspec import install_lab_overrides

    existing = tmp_path / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    existing.parent.mkdir(parents=True)
    existing.write_text(json.dumps({"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}))
    path = install_lab_overrides(tmp_path)
    settings = json.loads(path.read_text())
    assert path == existing
    assert settings["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    assert settings["@jupyterlab/apputils-extension:themes"] == {"theme": "JupyterLab Dark"}
