"""``hcdc db backup`` / ``hcdc db restore``: a round trip on SQLite and on the local PostgreSQL, row by row.

The catalog is a realistic one (simulated raw archive ingested, real pre-processing with its
products on disk, a campaign's detections and limits). After the backup the catalog is damaged
(rows deleted and changed); the restore must give back every table row for row, and the check of
the product files must pass; a changed product file must be named.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, delete, select, text, update

from hcdc.catalog.backup import BackupError, backup_engine, restore

from .isolation.test_postgres import cluster  # noqa: F401 - the project's own cluster, started by the CLI
from .synthetic_catalog import build_simulated_catalog


def _rows(url: str) -> dict[str, list[tuple]]:
    """Every table of the catalog, its rows in primary-key order."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        out = {}
        with engine.connect() as connection:
            for name, table in sorted(meta.tables.items()):
                key = list(table.primary_key.columns) or list(table.columns)
                out[name] = [tuple(row) for row in connection.execute(select(table).order_by(*key))]
        return out
    finally:
        engine.dispose()


def _hcdc(url: str, data_dir: Path, *args: str, stdin=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, HCDC_CATALOG_URL=url, HCDC_DATA_DIR=str(data_dir))
    return subprocess.run(
        [sys.executable, "-m", "hcdc.cli", *args], env=env, capture_output=True, text=True, stdin=stdin, timeout=300
    )


def test_backup_and_restore_give_back_every_row_and_check_the_products(catalog_url, tmp_path):
    built = build_simulated_catalog(tmp_path / "world", catalog_url, nights=2, window=32)
    data_dir = built["data_dir"]
    before = _rows(catalog_url)
    assert before["products"] and before["detections"] and before["observations"], "the catalog has no content"

    dump = tmp_path / "backups" / "catalog.backup"
    made = _hcdc(catalog_url, data_dir, "db", "backup", str(dump))
    assert made.returncode == 0, made.stderr
    assert dump.is_file() and (dump.stat().st_mode & 0o077) == 0, oct(dump.stat().st_mode)  # proprietary rows
    assert made.stdout.split()[1] == str(dump)
    assert backup_engine(dump) == ("sqlite" if catalog_url.startswith("sqlite") else "postgresql")
    assert not list(dump.parent.glob("*.partial"))

    # damage the catalog: rows deleted and changed after the backup
    engine = create_engine(catalog_url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.begin() as connection:
        connection.execute(delete(meta.tables["detection_limit_points"]))
        connection.execute(delete(meta.tables["detection_limits"]))
        connection.execute(delete(meta.tables["detections"]))
        connection.execute(update(meta.tables["observations"]).values(ob_name="overwritten"))
    engine.dispose()
    assert _rows(catalog_url) != before

    refused = _hcdc(catalog_url, data_dir, "db", "restore", str(dump), stdin=subprocess.DEVNULL)
    assert refused.returncode != 0 and "--yes" in refused.stderr  # no silent replacement
    restored = _hcdc(catalog_url, data_dir, "db", "restore", "--yes", str(dump))
    assert restored.returncode == 0, restored.stderr
    assert _rows(catalog_url) == before

    # a product file changed on disk is named, and the restore says the check failed
    product = Path(before["products"][0][[c.name for c in _product_columns(catalog_url)].index("path")])
    product.write_bytes(product.read_bytes() + b"tampered")
    again = _hcdc(catalog_url, data_dir, "db", "restore", "--yes", str(dump))
    assert again.returncode == 1 and str(product) in again.stderr, again.stderr


def _product_columns(url: str):
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine, only=["products"])
        return list(meta.tables["products"].columns)
    finally:
        engine.dispose()


def test_restore_refuses_what_is_not_a_backup_of_its_engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    junk = tmp_path / "notes.txt"
    junk.write_text("not a backup")
    with pytest.raises(BackupError, match="notes.txt: not a backup"):
        restore(url, junk)
    pg_dump_like = tmp_path / "pg.backup"
    pg_dump_like.write_bytes(b"PGDMP" + b"\0" * 64)
    with pytest.raises(BackupError, match="is a postgresql backup; the catalog .* is sqlite"):
        restore(url, pg_dump_like)
    missing = _hcdc(url, tmp_path, "db", "backup", str(tmp_path / "out.backup"))
    assert missing.returncode != 0 and "no such SQLite catalog" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_damaged_sqlite_backup_is_refused_and_the_catalog_kept(tmp_path):
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    from hcdc.catalog import Catalog

    Catalog(url).dispose()
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE probe (x INTEGER)"))
        connection.execute(text("INSERT INTO probe VALUES (42)"))
    engine.dispose()
    before = _rows(url)
    dump = tmp_path / "catalog.backup"
    made = _hcdc(url, tmp_path, "db", "backup", str(dump))
    assert made.returncode == 0, made.stderr
    data = bytearray(dump.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\xff" * 4096  # a damaged page in the middle
    dump.write_bytes(bytes(data))
    failed = _hcdc(url, tmp_path, "db", "restore", "--yes", str(dump))
    assert failed.returncode != 0 and "catalog.backup" in failed.stderr and "Traceback" not in failed.stderr
    assert _rows(url) == before


def test_project_cluster_round_trip_keeps_the_service_role_grants(cluster, tmp_path):  # noqa: F811
    """On the project's own cluster (scram, password in a pass file named by the URL): the backup and
    restore find the password there, and after a restore the catalog service's read-only role can
    still read every table (its grants are in the dump)."""
    from hcdc.access import READER_ROLE
    from hcdc.catalog import Catalog

    project, _env = cluster
    url = project.url()
    Catalog(url).dispose()  # migrated: tables, roles, grants, row-level security
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO users (username, full_name, is_staff, created_at) VALUES ('probe', 'Probe', false, now())"
            )
        )
    engine.dispose()
    before = _rows(url)
    dump = tmp_path / "cluster.backup"
    made = _hcdc(url, tmp_path / "data", "db", "backup", str(dump))
    assert made.returncode == 0, made.stderr
    restored = _hcdc(url, tmp_path / "data", "db", "restore", "--yes", str(dump))
    assert restored.returncode == 0, restored.stderr
    assert _rows(url) == before
    engine = create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"SET LOCAL ROLE {READER_ROLE}"))
            for table in ("observations", "detections", "products", "users"):
                connection.execute(text(f"SELECT count(*) FROM {table}"))  # no 'permission denied'
    finally:
        engine.dispose()
