"""PostgreSQL without trust (issue 12): the project's own scram cluster, and a preflight that refuses
a catalog server which lets a PI connect without a password.

The machine's development PostgreSQL (127.0.0.1:5432) trusts every local connection: any PI's
kernel could connect there as the superuser. ``hcdc db cluster start`` makes and starts a cluster
of the project's own (``initdb``/``pg_ctl`` as the service account, ``scram-sha-256`` only, the
passwords in a 0600 pass file); ``hcdc hub preflight`` tries, as a PI's OS account and with no
password, to connect to the catalog's server, says what it saw, and refuses a server that let it in.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ..hubtest import free_ports
from .attacker import Attacker, skip_reason

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(300)]

SERVICE_USER = "hcdc-service"
MACHINE_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _machine_pg_trusts() -> bool:
    """Whether the machine's server lets an account in without a password (the check preflight makes)."""
    from hcdc.pgcluster import passwordless_probe

    return any(line.startswith("CONNECTED") for line in passwordless_probe(MACHINE_PG, "nobody", sys.executable))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The project's cluster, made and started through the CLI as an operator would."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    from hcdc.accounts import ensure_service_account
    from hcdc.pgcluster import ProjectCluster, postgres_bin

    try:
        postgres_bin("initdb")
    except Exception as exc:
        pytest.skip(str(exc))
    ensure_service_account(SERVICE_USER)
    root = tmp_path_factory.mktemp("pgcluster")
    os.chmod(root, 0o755)
    for parent in root.parents:  # the service account must reach its data dir (pytest's tmp is 0700)
        if parent == Path("/"):
            break
        if not os.stat(parent).st_mode & 0o001:
            os.chmod(parent, os.stat(parent).st_mode | 0o001)
    data_dir = root / "data"
    port = free_ports(1)[0]
    env = {**os.environ, "HCDC_DATA_DIR": str(data_dir), "HCDC_PG_PORT": str(port)}
    env.pop("HCDC_CATALOG_URL", None)
    hcdc = [str(Path(sys.executable).parent / "hcdc")]
    started = subprocess.run(hcdc + ["db", "cluster", "start"], env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    again = subprocess.run(hcdc + ["db", "cluster", "start"], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "created" not in again.stderr, again.stderr  # idempotent
    project = ProjectCluster.for_data_dir(data_dir, port=port, owner=SERVICE_USER)
    assert url == project.url() and project.running()
    yield project, env
    stopped = subprocess.run(hcdc + ["db", "cluster", "stop"], env=env, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert not project.running()


def _preflight(tmp_path: Path, catalog_url: str, data_dir: Path) -> tuple[list[str], list[str]]:
    from hcdc.hub import load_hub_config, preflight

    path = tmp_path / "hub.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "hub": {"state_dir": str(tmp_path / "state")},
                "catalog": {"catalog_url": catalog_url, "data_dir": str(data_dir), "service_user": SERVICE_USER},
            }
        )
    )
    changes: list[str] = []
    return preflight(load_hub_config(path), changes=changes), changes


def test_cluster_files_and_roles_are_the_service_accounts_alone(cluster):
    project, _env = cluster
    owner = pwd.getpwnam(SERVICE_USER)
    for path in (project.root, project.data, project.passfile, project.socket_dir):
        info = path.stat()
        assert info.st_uid == owner.pw_uid and info.st_mode & 0o077 == 0, (path, oct(info.st_mode))
    hba = (project.data / "pg_hba.conf").read_text()
    methods = {line.split()[-1] for line in hba.splitlines() if line.strip() and not line.startswith("#")}
    assert methods == {"scram-sha-256"}, hba
    attacker = Attacker()
    try:
        seen = attacker.run(
            r"""
import psycopg
R["roles"] = {}
for role in ("postgres", "hcdc", "hcdc_reader", P["me"]):
    for host in ("127.0.0.1", P["socket"]):
        try:
            psycopg.connect(host=host, port=P["port"], dbname="hcdc", user=role, connect_timeout=5,
                            passfile="/nonexistent").close()
            R["roles"][role + "@" + host] = "CONNECTED"
        except Exception as exc:
            R["roles"][role + "@" + host] = "refused: " + str(exc).strip().splitlines()[0][-80:]
try:
    open(P["passfile"]).read()
    R["passfile"] = "READ"
except Exception as exc:
    R["passfile"] = type(exc).__name__
""",
            {
                "port": project.port,
                "socket": str(project.socket_dir),
                "passfile": str(project.passfile),
                "me": attacker.name,
            },
        )
    finally:
        attacker.remove()
    assert all(answer.startswith("refused") for answer in seen["roles"].values()), seen["roles"]
    assert any("password" in answer for answer in seen["roles"].values()), seen["roles"]  # asked, not absent
    assert seen["passfile"] == "PermissionError"


def test_the_catalog_works_on_the_cluster_with_row_level_security(cluster):
    """The catalog migrates and runs there (its role from the pass file), and RLS is in force."""
    from sqlalchemy import text

    from hcdc.catalog import Catalog

    project, _env = cluster
    catalog = Catalog(project.url())
    try:
        with catalog.engine.connect() as connection:
            assert connection.execute(text("SELECT current_user")).scalar() == "hcdc"
            forced = connection.execute(
                text("SELECT count(*) FROM pg_class WHERE relname = 'observations' AND relrowsecurity")
            ).scalar()
            assert forced == 1
            assert connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = 'hcdc'")).scalar() is False
    finally:
        catalog.dispose()


def test_preflight_tries_as_a_pi_and_refuses_a_trusting_server(cluster, tmp_path):
    project, _env = cluster
    data_dir = project.root.parent
    problems, changes = _preflight(tmp_path, project.url(), data_dir)
    checked = [c for c in changes if c.startswith("checked: PostgreSQL")]
    assert checked and all("refused" in c for c in checked), changes
    assert not [p for p in problems if "PostgreSQL" in p], problems
    if not _machine_pg_trusts():
        pytest.skip("the machine's PostgreSQL on 5432 does not trust local connections: nothing to refuse")
    problems, changes = _preflight(tmp_path, MACHINE_PG, data_dir)
    refused = [p for p in problems if "PostgreSQL" in p]
    assert refused and "without a password as" in refused[0] and "hcdc db cluster start" in refused[0], problems
    assert any("CONNECTED" in c for c in changes), changes
