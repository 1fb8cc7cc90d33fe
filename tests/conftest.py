"""Shared fixtures: reference data, catalogs on SQLite and on the local PostgreSQL."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
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


# --- the pipeline tests' archive and their undisturbed campaign, made once per run -----------------------


@pytest.fixture(scope="session")
def pipeline_archive(tmp_path_factory):
    """One recent night: three IRDIS observations with companions (noise, AO, 128-px windows)."""
    from reduction.simulator import simulate_archive

    root = tmp_path_factory.mktemp("pipe") / "archive"
    simulate_archive(root, nights=1, seed=12, window=128, ifs=False)
    return root


@dataclass(frozen=True)
class UndisturbedCampaign:
    """What a serial campaign with the pipeline tests' FAST parameters gives on :func:`pipeline_archive`:
    the detections and limits row by row (``tests.test_pipeline._science_rows``) and their counts, taken
    when it ended, and its report's figures, as plain values (no report, session or ORM object outlives
    the fixture); its catalog and data directory, which ``test_rerun_touch_and_failure_isolation`` goes on
    from (the other tests read the snapshot only)."""

    rows: list
    n_detections: int
    n_limits: int
    observations: int
    counts: dict
    failures: list
    observation_ids: list
    campaign_id: int
    name: str
    catalog_url: str
    data_dir: Path


@pytest.fixture(scope="session")
def undisturbed_campaign(pipeline_archive, tmp_path_factory) -> UndisturbedCampaign:
    """The reference every fault test (killed run, killed worker, PostgreSQL restart, disk full) compares
    its catalog to: run once, not once per test (the campaign is deterministic: same archive, same
    parameters, serial)."""
    import gc

    from sqlalchemy import func, select

    from hcdc.catalog.models import Detection, DetectionLimit
    from hcdc.pipeline.campaign import reprocess

    from .test_pipeline import _parameters, _science_rows, _setup

    root = tmp_path_factory.mktemp("undisturbed")
    catalog, settings = _setup(pipeline_archive, f"sqlite:///{root / 'reference.sqlite'}", root / "data")
    try:
        report = reprocess(catalog, settings, campaign="reference", executor="serial", parameters=_parameters(root))
        figures = {
            "observations": int(report.observations),
            "counts": dict(report.counts),
            "failures": [tuple(str(x) for x in failure) for failure in report.failures],
            "observation_ids": [int(r.observation_id) for r in report.results],
            "campaign_id": int(report.campaign_id),
        }
        del report
        with catalog.session() as session:
            counts = (
                int(session.scalar(select(func.count()).select_from(Detection))),
                int(session.scalar(select(func.count()).select_from(DetectionLimit))),
            )
        rows = _science_rows(catalog, "reference")
    finally:
        catalog.dispose()
        del catalog
        gc.collect()  # the campaign's cycles, now, while everything they point to is still whole
    return UndisturbedCampaign(
        rows,
        *counts,
        **figures,
        name="reference",
        catalog_url=f"sqlite:///{root / 'reference.sqlite'}",
        data_dir=root / "data",
    )
