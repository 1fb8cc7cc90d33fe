"""The hub's state folder, accounts to create, and the preflight checks of the machine (``hcdc hub preflight``)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

from .config import SEED_FILE, HubConfig, SystemUserSpawnerSection
from .traits import hub_traits, relative_to_source, service_settings, state_dir, warm_start_socket

# --- state, permissions, accounts ---------------------------------------------------------------


def prepare_state(config: HubConfig) -> Path:
    """Create the state folder (root's or the hub user's, 0700); make the data directory private.

    As root with a ``service_user``: the account is created when missing, and the data directory
    (everything under it but the hub's state) is given to it with modes closed to others; the homes of
    the hub users' OS accounts are closed to each other. Otherwise the data directory and a SQLite
    catalog are made private to the hub's own account (``harden_data_dir``).
    """
    for change in mend(config):
        print(f"HC-DC hub: {change}", file=sys.stderr)
    return state_dir(config)


def ensure_state_dir(config: HubConfig) -> Path:
    """The hub's state folder, created 0700 when missing; nothing else is walked or changed.

    (:func:`prepare_state`, which walks the whole data directory, runs once per hub start, from the
    hub's own configuration file.)
    """
    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True, mode=0o700)
    if stat.S_IMODE(state.stat().st_mode) != 0o700:
        os.chmod(state, 0o700)
    return state


def _close_own_data(config: HubConfig) -> list[Path]:
    """Not root (one developer's hub): the data directory and a SQLite catalog of this account, closed
    to others (0700/0600); what was changed. Files of other accounts are left alone."""
    from sqlalchemy.engine import make_url

    url, data_dir = service_settings(config)
    candidates = [(data_dir, 0o700)]
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        candidates.append((Path(parsed.database), 0o600))
    changed = []
    for path, mode in candidates:
        try:
            info = path.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700 | mode)
            changed.append(path)
    return changed


def mend(config: HubConfig) -> list[str]:
    """Make the deployment as private as it must be (see :func:`prepare_state`); returns the changes."""
    state = state_dir(config)
    state.mkdir(parents=True, exist_ok=True)
    changes = []
    if stat.S_IMODE(state.stat().st_mode) != 0o700:
        os.chmod(state, 0o700)
        changes.append(f"hub state {state} closed to other accounts (0700)")
    if os.geteuid() == 0 and config.catalog.service_user:
        from hcdc.accounts import ensure_service_account, make_private_tree

        owner, created = ensure_service_account(config.catalog.service_user)
        if created:
            changes.append(f"service account {owner.pw_name} created (uid {owner.pw_uid}, home {owner.pw_dir})")
        if stat.S_IMODE(os.stat(owner.pw_dir).st_mode) & 0o077 if os.path.isdir(owner.pw_dir) else False:
            os.chmod(owner.pw_dir, 0o700)
            changes.append(f"home {owner.pw_dir} of {owner.pw_name} closed to other accounts (0700)")
        _, data_dir = service_settings(config)
        if os.stat(state).st_uid != 0:
            os.chown(state, 0, 0)
            changes.append(f"hub state {state} given back to root")
        changes += make_private_tree(data_dir, owner, skip=(state,))
    elif config.catalog.harden_data_dir:
        changes += [f"{path} closed to other accounts" for path in _close_own_data(config)]
    if os.geteuid() == 0 and isinstance(config.active.spawner, SystemUserSpawnerSection):
        from hcdc.hub_extensions import hub_accounts, private_home

        for user in hub_accounts(config.active.spawner.system_user_prefix, config.active.spawner.min_uid):
            changes += private_home(user)
    return changes


def write_seed_accounts(config: HubConfig, accounts: dict[str, str], admins: set[str] = frozenset()) -> Path:
    """Queue NativeAuthenticator accounts (approved) for the hub's next start; passwords stored hashed."""
    import bcrypt

    state = ensure_state_dir(config)
    path = state / SEED_FILE
    rows = [
        {
            "username": name,
            "password_bcrypt": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode(),
            "admin": name in admins,
        }
        for name, password in sorted(accounts.items())
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(rows, handle, indent=1)
    return path


def demo_accounts(catalog_url: str) -> list[tuple[str, str]]:
    """(username, description) of the catalog's PIs, co-Is and staff: the demo accounts."""
    from sqlalchemy import select

    from hcdc.catalog.db import Catalog
    from hcdc.catalog.models import Programme, ProgrammeMember, User

    catalog = Catalog(catalog_url)
    try:
        with catalog.session() as session:
            rows = session.execute(
                select(User.username, User.is_staff, ProgrammeMember.role, Programme.prog_id)
                .outerjoin(ProgrammeMember, ProgrammeMember.user_id == User.id)
                .outerjoin(Programme, Programme.id == ProgrammeMember.programme_id)
                .order_by(User.username)
            ).all()
    finally:
        catalog.dispose()
    roles: dict[str, list[str]] = {}
    for username, staff, role, prog_id in rows:
        entry = roles.setdefault(username, ["staff"] if staff else [])
        if role:
            entry.append(f"{role.upper()} {prog_id}")
    return [(name, ", ".join(parts)) for name, parts in roles.items() if parts]


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def preflight(config: HubConfig, fix: bool = False, changes: list[str] | None = None) -> list[str]:
    """Problems that would stop the hub (and, with ``fix``, repair the fixable ones); [] when ready.

    ``changes`` (a list) receives, in words, what ``fix`` changed.
    """
    problems: list[str] = []
    changes = changes if changes is not None else []
    problems += _privacy_problems(config, fix, changes)
    problems += _database_problems(config, changes)
    profile = config.active
    proxy = profile.proxy_command[0]
    if shutil.which(proxy) is None:
        problems.append(f"{proxy} is not on PATH: npm install -g configurable-http-proxy")
    if isinstance(profile.spawner, SystemUserSpawnerSection):
        if os.geteuid() != 0:
            problems.append(
                "the system-users spawner starts servers as other OS accounts: run the hub as root "
                "(or choose spawner kind 'simple' for a single developer)"
            )
        else:
            blocked = unreachable_ancestors(Path(sys.executable))
            if blocked and fix:
                for folder in blocked:
                    os.chmod(folder, folder.stat().st_mode | stat.S_IXOTH)
                blocked = unreachable_ancestors(Path(sys.executable))
            if blocked:
                problems.append(
                    f"PI accounts cannot run {os.path.realpath(sys.executable)}: "
                    f"{', '.join(map(str, blocked))} not traversable by others; "
                    f"fix with 'hcdc hub preflight --fix' (chmod o+x on those folders) or install "
                    f"Python outside them"
                )
        spec = Path(sys.prefix) / "share" / "jupyter" / "kernels" / "hcdc" / "kernel.json"
        if not spec.is_file():
            problems.append(f"kernel spec {spec} missing: hcdc kernel install")
        elif "HCDC_CATALOG_URL" in json.loads(spec.read_text()).get("env", {}):
            problems.append(
                f"kernel spec {spec} presets HCDC_CATALOG_URL: PI kernels must not get a database "
                f"URL; reinstall it with HCDC_CATALOG_URL unset (hcdc kernel install)"
            )
    return problems


def _database_problems(config: HubConfig, changes: list[str]) -> list[str]:
    """A PostgreSQL catalog whose server lets a PI connect without a password is refused.

    Row-level security only binds the roles the service uses; a server that trusts local
    connections (``trust`` or ``peer`` in ``pg_hba.conf``) lets any kernel connect as the
    superuser and read every row. The check does what a PI would: as a PI's OS account (the
    first the spawner made, else ``nobody``), with no password and no pass file, it connects to
    the catalog's host and port as the catalog's role, as ``postgres`` and as its own name.
    """
    from sqlalchemy.engine import make_url

    url, _ = service_settings(config)
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return []
    server = f"{parsed.host}:{parsed.port or 5432}"
    import pwd

    from hcdc.pgcluster import passwordless_probe

    if os.geteuid() == 0:
        from hcdc.hub_extensions import hub_accounts

        prefix = getattr(config.active.spawner, "system_user_prefix", "")
        accounts = hub_accounts(prefix) or [pwd.getpwnam("nobody")]
        who = accounts[0].pw_name
    else:
        who = pwd.getpwuid(os.geteuid()).pw_name
    try:
        seen = passwordless_probe(url, who, sys.executable)
    except Exception as exc:  # the probe itself failed: say so, do not pass silently
        return [f"cannot check the catalog's PostgreSQL for password-less access: {type(exc).__name__}: {exc}"]
    for line in seen:
        changes.append(f"checked: PostgreSQL {server} as OS account {who}, no password: {line}")
    open_roles = [line.split(" as ", 1)[1].split(":")[0] for line in seen if line.startswith("CONNECTED")]
    if open_roles or any(line.startswith("probe failed") for line in seen):
        what = (
            f"lets OS account {who} connect without a password as {', '.join(open_roles)}"
            if open_roles
            else "could not be checked"
        )
        return [
            f"the catalog's PostgreSQL ({server}) {what}: any PI's "
            f"kernel could read every proprietary row, row-level security or not. Use a server that asks "
            f"passwords (scram-sha-256) of every local connection, e.g. the project's own: "
            f"'hcdc db cluster start', then catalog_url from 'hcdc db cluster url'"
        ]
    return []


def _privacy_problems(config: HubConfig, fix: bool, changes: list[str]) -> list[str]:
    """What leaves one PI's files open to another, or the platform's files open to PIs (fixed with ``fix``)."""
    if os.geteuid() != 0:
        return []
    if fix:
        changes += mend(config)
    problems = []
    name = config.catalog.service_user
    if name:
        from hcdc.accounts import account, unreachable_by

        owner = account(name)
        _, data_dir = service_settings(config)
        if owner is None:
            changes.append(
                f"to do: the service account {name} does not exist; the hub creates it at start, or --fix now"
            )
        else:
            if data_dir.exists() and data_dir.stat().st_uid != owner.pw_uid:
                changes.append(
                    f"to do: the data directory {data_dir} is not the service account's; the hub gives "
                    f"it (and all under it but the hub state) to {name} at start, or --fix now"
                )
            blocked = unreachable_by(data_dir, owner)
            if blocked and fix:
                for folder in blocked:
                    os.chmod(folder, folder.stat().st_mode | stat.S_IXOTH)
                    changes.append(f"{folder}: traversable by others (o+x) so that {name} reaches {data_dir}")
                blocked = unreachable_by(data_dir, owner)
            if blocked:
                problems.append(
                    f"the service account {name} cannot reach {data_dir}: "
                    f"{', '.join(map(str, blocked))} not traversable (hcdc hub preflight --fix)"
                )
    if isinstance(config.active.spawner, SystemUserSpawnerSection):
        from hcdc.hub_extensions import hub_accounts

        spawner = config.active.spawner
        for user in hub_accounts(spawner.system_user_prefix, spawner.min_uid):
            if os.path.isdir(user.pw_dir) and os.stat(user.pw_dir).st_mode & 0o077:
                changes.append(
                    f"to do: home {user.pw_dir} of {user.pw_name} is open to other accounts "
                    f"({oct(stat.S_IMODE(os.stat(user.pw_dir).st_mode))}); closed at start, or --fix now"
                )
    return problems


def unreachable_ancestors(executable: Path) -> list[Path]:
    """Folders on the way to ``executable`` (symlinks resolved) that other users cannot traverse."""
    blocked = []
    for target in {executable.absolute(), executable.resolve()}:
        for folder in list(target.parents)[::-1]:
            if not folder.stat().st_mode & stat.S_IXOTH and folder not in blocked:
                blocked.append(folder)
    return blocked


def start_server_zygote(config: HubConfig) -> Any:
    """Start the pre-warmed server zygote (``hcdc.warmstart``) of the system-users spawner, as root.

    It runs in the background (its imports take a few seconds; a spawn meanwhile waits for it, up to
    the spawner's ``warm_start_wait``), with a clean environment (nothing of the hub's secrets), and
    ends with the hub. Returns its ``Popen``, or None when warm start is off or the hub is not root.
    """
    import subprocess

    from hcdc.warmstart import clean_environment

    spawner = config.active.spawner
    if not isinstance(spawner, SystemUserSpawnerSection) or not spawner.warm_start or os.geteuid() != 0:
        return None
    path = warm_start_socket(config)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    env = clean_environment({"HOME": str(path.parent), "MPLCONFIGDIR": str(path.parent / "matplotlib")})
    from hcdc.settings import get_settings

    if get_settings().reference_data:  # the kernels' reference data (the kernel spec's, as imported)
        env["HCDC_REFERENCE_DATA"] = str(get_settings().reference_data)
    path.unlink(missing_ok=True)  # a socket left by an earlier hub: the spawner must wait for this zygote's
    process = subprocess.Popen(
        [sys.executable, "-m", "hcdc.warmstart", str(path), "--min-uid", str(spawner.min_uid)],
        env=env,
        cwd=str(path.parent),
        stdin=subprocess.DEVNULL,
        close_fds=True,
    )
    (path.parent / "zygote.pid").write_text(f"{process.pid}\n")
    return process


def apply_to(c: Any, config: HubConfig) -> list[Path]:
    """Set ``config``'s traits on the traitlets config ``c``, prepare the state, run config_d files.

    Returns the escape-hatch files that were run.
    """
    prepare_state(config)
    start_server_zygote(config)
    for cls, values in hub_traits(config).items():
        section = c[cls]
        for key, value in values.items():
            section[key] = value
    ran = []
    for folder in config.hub.config_d:
        folder = relative_to_source(config, folder)
        if not folder.is_dir():
            continue
        for file in sorted(folder.glob("*.py")):
            code = compile(file.read_text(), str(file), "exec")
            exec(code, {"c": c, "hcdc_config": config, "__file__": str(file), "__name__": "__hcdc_config_d__"})
            ran.append(file)
    return ran
