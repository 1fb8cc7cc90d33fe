"""Shared fixtures: reference data, catalogs on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN_URL = os.environ.get("HCDC_TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def reference_data_dir() -> Path | None:
    """``$HCDC_REFERENCE_DATA`` or ``../shared/data`` beside the repository."""
    env = os.environ.get("HCDC_REFERENCE_DATA")
    candidate = Path(env) if env else REPO.parent / "shared" / "data"
    return candidate if candidate.is_dir() else None


#: the umask the test run started with: an in-process CLI call that sets the platform's private umask
#: (hcdc.accounts.PRIVATE_UMASK) must not leak into the next test, whose files a service account may
#: need to read (it did: the browser test's calibrated cube came out 0700 and the service answered 500)
_STARTING_UMASK = os.umask(0o022)
os.umask(_STARTING_UMASK)


@pytest.fixture(autouse=True)
def _restore_umask():
    yield
    os.umask(_STARTING_UMASK)


@pytest.fixture(scope="session")
def reference_data() -> Path:
    path = reference_data_dir()
    if path is None:
        pytest.skip("reference data not found: set HCDC_REFERENCE_DATA or put shared/data beside the repo")
    return path


@pytest.fixture(scope="session")
def postgres_database():
    """One throwaway PostgreSQL database for the whole test run (dropped at the end)."""
    name = f"hcdc_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        if os.environ.get("CI"):
            raise
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            )
        )
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _reset_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request, tmp_path) -> str:
    """An empty catalog URL, once on SQLite and once on the local PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    url = request.getfixturevalue("postgres_database")
    _reset_postgres(url)
    return url


@pytest.fixture
def catalog(catalog_url):
    from hcdc.catalog import Catalog

    cat = Catalog(catalog_url)
    yield cat
    cat.dispose()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A real one-node SLURM for the whole run (tests/slurm.py); skips with the reason when it cannot run."""
    from . import slurm

    reason = slurm.missing()
    if reason:
        pytest.skip(f"SLURM not available: {reason}")
    cluster = slurm.SlurmCluster().start()
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    cluster.stop()
