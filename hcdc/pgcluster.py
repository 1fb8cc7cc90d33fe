"""The project's own PostgreSQL cluster: scram-sha-256 only, owned by the service account.

A machine's shared PostgreSQL often trusts every local connection (as the
development servers here do, on 127.0.0.1:5432): any PI's kernel could then
connect as the superuser and read every row, row-level security or not. For a
deployment on PostgreSQL the project therefore starts a cluster of its own:

* ``initdb`` as the service account (``hcdc-service``), in ``<data_dir>/postgres/cluster``;
* ``pg_hba.conf`` accepts nothing but ``scram-sha-256`` (socket and loopback), and
  the server listens on 127.0.0.1 only, on a port of its own (default 5433);
* two roles with random passwords: ``postgres`` (superuser, for upkeep) and
  ``hcdc`` (owner of the ``hcdc`` database, which the catalog and the pipeline use);
  the cluster-wide ``hcdc_reader`` role of the row-level-security migration is
  created here, granted to ``hcdc``;
* the passwords are in ``<data_dir>/postgres/pgpass`` (libpq's format), mode 0600,
  owned by the service account: the catalog URL names that file
  (``?passfile=…``) and holds no secret itself.

``hcdc db cluster start`` creates it when missing and starts it; ``hcdc db cluster url``
prints the catalog URL; ``hcdc db cluster stop`` stops it.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .accounts import PRIVATE_UMASK, run_as

DEFAULT_PORT = 5433
DATABASE = "hcdc"
OWNER_ROLE = "hcdc"
SUPERUSER = "postgres"
READER_ROLE = "hcdc_reader"  # hcdc.access.READER_ROLE; created here because the owner role may not


class ClusterError(RuntimeError):
    """The project's PostgreSQL cluster cannot be created, started or reached."""


def postgres_bin(tool: str) -> Path:
    """Path of a PostgreSQL server program (``initdb``, ``pg_ctl``), newest Debian version first."""
    found = shutil.which(tool)
    if found:
        return Path(found)
    versions = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{tool}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        reverse=True,
    )
    if not versions:
        raise ClusterError(f"{tool} not found: install Debian's postgresql package (apt-get install postgresql)")
    return versions[0]


@dataclass(frozen=True)
class ProjectCluster:
    """The cluster under ``root`` (normally ``<data_dir>/postgres``), run as ``owner``."""

    root: Path
    port: int = DEFAULT_PORT
    owner: str = "hcdc-service"
    #: the database created with the cluster (owned by :data:`OWNER_ROLE`)
    database: str = DATABASE

    @classmethod
    def for_data_dir(cls, data_dir: Path, port: int = DEFAULT_PORT, owner: str = "hcdc-service") -> ProjectCluster:
        return cls(Path(data_dir) / "postgres", port, owner)

    @property
    def data(self) -> Path:
        return self.root / "cluster"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def passfile(self) -> Path:
        return self.root / "pgpass"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, role: str = OWNER_ROLE, database: str | None = None) -> str:
        """SQLAlchemy URL of ``database`` (default: the cluster's) as ``role``; the password is in the pass file."""
        return f"postgresql+psycopg://{role}@127.0.0.1:{self.port}/{database or self.database}?passfile={self.passfile}"

    # --- running as the owner -------------------------------------------------------------------

    def _as_owner(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        """Run a server program as the owner (PostgreSQL refuses to run as root)."""
        account = pwd.getpwnam(self.owner)
        preexec = None
        if os.geteuid() == 0 and account.pw_uid != 0:
            preexec = run_as(account, PRIVATE_UMASK)
        elif os.geteuid() != account.pw_uid:
            raise ClusterError(f"the cluster belongs to {self.owner}: run this as root or as {self.owner}")
        env = {"PATH": "/usr/bin:/bin", "HOME": account.pw_dir, "LANG": "C.UTF-8", "PGPASSFILE": str(self.passfile)}
        return subprocess.run(
            [str(a) for a in argv], preexec_fn=preexec, env=env, capture_output=True, text=True, cwd=self.root, **kwargs
        )

    def _check(self, done: subprocess.CompletedProcess, what: str) -> None:
        if done.returncode != 0:
            raise ClusterError(f"{what} failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-800:]}")

    # --- life cycle ------------------------------------------------------------------------------

    def exists(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def running(self) -> bool:
        if not self.exists():
            return False
        return self._as_owner([postgres_bin("pg_ctl"), "-D", self.data, "status"]).returncode == 0

    def init(self) -> list[str]:
        """Create the cluster, its roles and database (nothing when it exists); what was done."""
        if self.exists():
            return []
        account = pwd.getpwnam(self.owner)
        for folder in (self.root, self.socket_dir):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chown(folder, account.pw_uid, account.pw_gid)
            os.chmod(folder, 0o700)
        passwords = {SUPERUSER: secrets.token_urlsafe(24), OWNER_ROLE: secrets.token_urlsafe(24)}
        lines = [f"127.0.0.1:{self.port}:*:{role}:{password}" for role, password in passwords.items()]
        lines += [f"{self.socket_dir}:{self.port}:*:{role}:{password}" for role, password in passwords.items()]
        _write_private(self.passfile, "\n".join(lines) + "\n", account)
        superuser_file = self.root / "superuser-password"
        _write_private(superuser_file, passwords[SUPERUSER] + "\n", account)
        try:
            self._check(
                self._as_owner(
                    [
                        postgres_bin("initdb"),
                        "-D",
                        self.data,
                        "-U",
                        SUPERUSER,
                        "--auth=scram-sha-256",
                        f"--pwfile={superuser_file}",
                        "-E",
                        "UTF8",
                        "--locale=C.UTF-8",
                    ]
                ),
                "initdb",
            )
        finally:
            superuser_file.unlink(missing_ok=True)
        (self.data / "pg_hba.conf").write_text(
            "# HC-DC: passwords (scram-sha-256) only; no trust, no peer, nothing but loopback\n"
            "local all all scram-sha-256\n"
            "host  all all 127.0.0.1/32 scram-sha-256\n"
            "host  all all ::1/128 scram-sha-256\n"
        )
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\n# HC-DC\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\nunix_socket_permissions = 0700\n"
                "password_encryption = 'scram-sha-256'\n"
            )
        try:
            self.start()
            for statement in (
                f"CREATE ROLE {OWNER_ROLE} LOGIN PASSWORD '{passwords[OWNER_ROLE]}'",
                f"CREATE ROLE {READER_ROLE} NOLOGIN",
                f"GRANT {READER_ROLE} TO {OWNER_ROLE} WITH ADMIN OPTION",
                f"CREATE DATABASE {self.database} OWNER {OWNER_ROLE}",
                "REVOKE ALL ON DATABASE postgres FROM PUBLIC",
            ):
                self.psql_superuser(statement)
        except BaseException:  # half a cluster is worse than none: the next start begins again
            self.stop()
            shutil.rmtree(self.data, ignore_errors=True)
            raise
        return [
            f"created the PostgreSQL cluster {self.data} (scram-sha-256 only, port {self.port}, "
            f"owner {self.owner}); passwords in {self.passfile} (0600)"
        ]

    def start(self) -> list[str]:
        if not self.exists():
            return self.init()
        if self.running():
            return []
        done = self._as_owner([postgres_bin("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60", "start"])
        if done.returncode != 0:  # the reason (a port in use, ...) is in the server's log, not in pg_ctl's output
            log = self.logfile.read_text(errors="replace").strip().splitlines()[-4:] if self.logfile.is_file() else []
            raise ClusterError(
                f"PostgreSQL ({self.data}) did not start on 127.0.0.1:{self.port}: " + " | ".join(log or [done.stderr])
            )
        return [f"started PostgreSQL on 127.0.0.1:{self.port}"]

    def stop(self) -> list[str]:
        if not self.running():
            return []
        self._check(
            self._as_owner([postgres_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop"]), "pg_ctl stop"
        )
        return [f"stopped PostgreSQL on 127.0.0.1:{self.port}"]

    def psql_superuser(self, sql: str, database: str = "postgres") -> str:
        psql = postgres_bin("psql")
        for _ in range(40):  # just started: the socket may need a moment
            done = self._as_owner(
                [
                    psql,
                    "-X",
                    "-q",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    SUPERUSER,
                    "-d",
                    database,
                    "-c",
                    sql,
                ]
            )
            if done.returncode == 0 or "starting up" not in done.stderr:
                break
            time.sleep(0.25)
        self._check(done, "psql")
        return done.stdout


def _write_private(path: Path, text: str, account: pwd.struct_passwd) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)
    os.chown(path, account.pw_uid, account.pw_gid)
    os.chmod(path, 0o600)


# --- what a PI could do -------------------------------------------------------------------------------


PROBE = r"""
import sys, psycopg
host, port, database = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for role in sys.argv[4:]:
    try:
        psycopg.connect(host=host, port=port, dbname=database, user=role, connect_timeout=5,
                        passfile="/nonexistent", sslmode="disable").close()
        print(f"CONNECTED as {role}")
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        print(f"refused as {role}: {reason}")
"""


def passwordless_probe(url: str, account: str, python: str) -> list[str]:
    """Try, as OS ``account`` and without any password, to open ``url``'s database as its role,
    as ``postgres`` and as the account's own name: one line per role saying what the server did."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    host = parsed.host or "127.0.0.1"
    port = parsed.port or 5432
    roles = list(dict.fromkeys([parsed.username or "postgres", SUPERUSER, account]))
    user = pwd.getpwnam(account)
    preexec = run_as(user) if os.geteuid() == 0 else None
    env = {"PATH": "/usr/bin:/bin", "HOME": user.pw_dir if os.path.isdir(user.pw_dir) else "/", "LANG": "C.UTF-8"}
    done = subprocess.run(
        [python, "-c", PROBE, host, str(port), parsed.database or "postgres", *roles],
        preexec_fn=preexec,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if not lines:
        return [f"probe failed: {done.stderr.strip()[-300:]}"]
    return lines
