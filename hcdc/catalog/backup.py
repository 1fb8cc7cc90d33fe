"""Backups of the catalog with the engines' own tools (``hcdc db backup`` / ``hcdc db restore``).

* SQLite: the online backup API (``sqlite3.Connection.backup``), a consistent copy
  taken page by page while other connections may write; the backup is itself a
  SQLite database file.
* PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore --clean --if-exists
  --single-transaction`` (all or nothing), privileges included: the read-only role of the
  catalog service (``hcdc_reader``, row-level security) keeps its grants. The password travels in the
  environment (``PGPASSWORD``), never on a command line another account could
  read in ``/proc``.

A backup file is written beside its destination under a temporary name and
renamed into place once complete, readable by its owner only: it holds every
PI's proprietary rows. It holds the catalog, not the product files: those stay
where the ``products`` rows point, with their SHA-256 (``hcdc db restore``
reports products whose file is missing or differs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.engine import make_url

SQLITE_MAGIC = b"SQLite format 3\x00"
PG_CUSTOM_MAGIC = b"PGDMP"


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says why and names the file."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    engine: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class ProductCheck:
    products: int
    missing: tuple[str, ...]
    changed: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing and not self.changed


def engine_of(url: str) -> str:
    """``sqlite`` or ``postgresql`` (other engines are refused)."""
    backend = make_url(url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BackupError(f"backups support SQLite and PostgreSQL catalogs, not {backend!r}")
    return backend


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"{url}: an in-memory SQLite catalog has nothing to back up")
    return Path(database)


def _libpq(url: str) -> tuple[list[str], dict[str, str]]:
    """Connection options for pg_dump/pg_restore, and the environment holding the password."""
    parsed = make_url(url)
    query = {key: (value[0] if isinstance(value, tuple) else value) for key, value in parsed.query.items()}
    host = query.get("host") or parsed.host or "127.0.0.1"  # ?host=/socket/dir: a Unix socket
    args = ["--dbname", parsed.database or "postgres", "--host", host]
    if parsed.port:
        args += ["--port", str(parsed.port)]
    if parsed.username:
        args += ["--username", parsed.username]
    env = dict(os.environ)
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    if query.get("passfile"):  # the project's own cluster keeps its password in a pass file
        env["PGPASSFILE"] = str(query["passfile"])
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    return args, env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise BackupError(f"{name} not found: install PostgreSQL's client tools (Debian: postgresql-client)")
    return found


def _private_temp(destination: Path) -> Path:
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent)
    except OSError as exc:
        raise BackupError(f"cannot write the backup into {destination.parent}: {exc.strerror}") from exc
    os.close(handle)
    os.chmod(name, 0o600)
    return Path(name)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_only(path: Path) -> str:
    """A read-only SQLite URI of ``path`` (its characters escaped: a path may hold ``?`` or ``#``)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def _sqlite_copy(source: sqlite3.Connection, target_path: Path, what: str) -> None:
    """SQLite's online backup of the open ``source`` into the database file ``target_path``."""
    target = sqlite3.connect(target_path)
    try:
        source.backup(target)
    except sqlite3.Error as exc:
        raise BackupError(f"{what} failed: {exc}") from exc
    finally:
        target.close()


def backup(url: str, destination: Path) -> BackupReport:
    """Write a consistent backup of the catalog at ``url`` to ``destination`` (replaced when it exists)."""
    destination = Path(destination)
    engine = engine_of(url)
    partial = _private_temp(destination)
    try:
        if engine == "sqlite":
            source_path = _sqlite_path(url)
            if not source_path.is_file():
                raise BackupError(f"{source_path}: no such SQLite catalog")
            source = sqlite3.connect(_read_only(source_path), uri=True)
            try:
                _sqlite_copy(source, partial, f"backup of {source_path}")
            finally:
                source.close()
        else:
            args, env = _libpq(url)
            done = subprocess.run(
                [_tool("pg_dump"), "--format=custom", "--no-owner", "--file", str(partial), *args],
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise BackupError(f"pg_dump failed for {make_url(url).render_as_string()}: {done.stderr.strip()}")
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupReport(destination, engine, destination.stat().st_size, _sha256(destination))


def backup_engine(path: Path) -> str:
    """The engine a backup file was made from, from its first bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise BackupError(f"{path}: cannot read the backup: {exc.strerror}") from exc
    if head.startswith(SQLITE_MAGIC):
        return "sqlite"
    if head.startswith(PG_CUSTOM_MAGIC):
        return "postgresql"
    raise BackupError(f"{path}: not a backup made by hcdc db backup (neither a SQLite file nor a pg_dump archive)")


def restore(url: str, source: Path) -> None:
    """Replace the catalog at ``url`` by the backup ``source`` (whole or not at all).

    The backup must come from the same engine (a SQLite backup into SQLite, a
    pg_dump archive into PostgreSQL). SQLite: the backup API copies the file
    into the catalog under its lock. PostgreSQL: ``pg_restore --clean
    --if-exists --single-transaction`` drops and recreates every object of the
    dump in one transaction.
    """
    source = Path(source)
    engine = engine_of(url)
    made_by = backup_engine(source)
    if made_by != engine:
        raise BackupError(f"{source} is a {made_by} backup; the catalog {make_url(url).render_as_string()} is {engine}")
    if engine == "sqlite":
        target_path = _sqlite_path(url)
        target_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            backup_db = sqlite3.connect(_read_only(source), uri=True)
        except sqlite3.Error as exc:
            raise BackupError(f"{source}: cannot open the SQLite backup: {exc}") from exc
        try:
            try:
                check = backup_db.execute("PRAGMA integrity_check").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                check = str(exc)
            if check != "ok":
                raise BackupError(f"{source}: the SQLite backup is damaged ({check}); the catalog was not changed")
            _sqlite_copy(backup_db, target_path, f"restoring {source} into {target_path}")
        finally:
            backup_db.close()
        return
    args, env = _libpq(url)
    done = subprocess.run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--no-owner",
            "--exit-on-error",
            *args,
            str(source),
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BackupError(
            f"pg_restore of {source} into {make_url(url).render_as_string()} failed, nothing was changed: "
            f"{done.stderr.strip()}"
        )


def check_products(catalog) -> ProductCheck:
    """Every product row's file exists and has the SHA-256 the catalog recorded."""
    from .models import Product

    missing, changed = [], []
    with catalog.session() as session:
        rows = session.execute(select(Product.path, Product.sha256)).all()
    for path, sha in rows:
        file = Path(path)
        if not file.is_file():
            missing.append(path)
        elif sha and _sha256(file) != sha:
            changed.append(path)
    return ProductCheck(len(rows), tuple(missing), tuple(changed))
