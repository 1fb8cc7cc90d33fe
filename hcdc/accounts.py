"""The OS account the platform acts as, and the privacy of what it writes.

HC-DC's own processes — the catalog service, the dashboards service, ingest, the
pipeline and its dask workers and kernels — run as one unprivileged system account
(``hcdc-service`` by default: never root, never a PI). The data directory
(catalog, raw archive copies, products, reports, logs) belongs to that account,
folders 0700 and files 0600, so PI accounts (other uids) can open none of it.

* :func:`ensure_service_account` creates the account (root only; a system account
  without login, home ``/var/lib/<name>`` 0700).
* :func:`make_private_tree` gives a folder and everything under it to an account
  with modes closed to others, and says what it changed (the hub's start and
  ``hcdc hub preflight --fix`` mend older data directories with it).
* :func:`act_as_data_dir_owner` is called first by the ``hcdc`` commands: run as
  root on a data directory owned by the service account, they switch to it, so
  that every file they write is the service's from the start. Every platform
  process also sets the umask 077 (:data:`PRIVATE_UMASK`).
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

#: default name of the platform's OS account
SERVICE_USER = "hcdc-service"
#: umask of every platform process: files 0600, folders 0700
PRIVATE_UMASK = 0o077


class AccountError(RuntimeError):
    """The service account cannot be made or used (message says why and what to do)."""


def account(name: str) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        return None


def ensure_service_account(name: str = SERVICE_USER) -> tuple[pwd.struct_passwd, bool]:
    """The service account, created when missing (needs root); returns (account, created)."""
    existing = account(name)
    if existing is not None:
        if existing.pw_uid == 0:
            raise AccountError(f"the service account {name!r} is root: choose an unprivileged account")
        return existing, False
    if os.geteuid() != 0:
        raise AccountError(
            f"the service account {name!r} does not exist and only root can create it "
            f"(hcdc hub preflight --fix as root)"
        )
    home = f"/var/lib/{name}"
    result = subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--create-home",
            "--home-dir",
            home,
            "--shell",
            "/usr/sbin/nologin",
            "-K",
            "HOME_MODE=0700",
            "--comment",
            "HC-DC services (catalog, dashboards, pipeline)",
            name,
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise AccountError(f"cannot create the service account {name!r}: {result.stderr.strip()}")
    created = pwd.getpwnam(name)
    os.chmod(created.pw_dir, 0o700)
    return created, True


def make_private_tree(root: Path, owner: pwd.struct_passwd, skip: tuple[Path, ...] = ()) -> list[str]:
    """Give ``root`` and everything under it to ``owner``, closed to others (folders 0700, files 0600).

    Symbolic links are never followed (their own owner is set, not their target's); folders in ``skip``
    (e.g. the hub's state, which stays root's) are left as they are. Returns the changes, in words, at
    most one line per kind of change.
    """
    root = Path(root)
    skip = tuple(Path(os.path.abspath(p)) for p in skip)
    counts = {"owner": 0, "mode": 0}
    first: dict[str, str] = {}

    def mend(path: str, info: os.stat_result, is_dir: bool) -> None:
        if info.st_uid != owner.pw_uid or info.st_gid != owner.pw_gid:
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
            counts["owner"] += 1
            first.setdefault("owner", path)
        if stat.S_ISLNK(info.st_mode):
            return
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            os.chmod(path, (mode & 0o700) | (0o700 if is_dir else 0o600), follow_symlinks=False)
            counts["mode"] += 1
            first.setdefault("mode", path)

    if not root.exists():
        root.mkdir(parents=True, mode=0o700)
    mend(str(root), os.lstat(root), True)
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(os.path.abspath(os.path.join(folder, d))) not in skip]
        for name in dirs:
            path = os.path.join(folder, name)
            mend(path, os.lstat(path), True)
        for name in files:
            path = os.path.join(folder, name)
            mend(path, os.lstat(path), False)
    changes = []
    if counts["owner"]:
        changes.append(f"{counts['owner']} path(s) under {root} given to {owner.pw_name} (e.g. {first['owner']})")
    if counts["mode"]:
        changes.append(f"{counts['mode']} path(s) under {root} closed to other accounts (e.g. {first['mode']})")
    return changes


def unreachable_by(path: Path, who: pwd.struct_passwd) -> list[Path]:
    """Folders on the way to ``path`` that ``who`` (not their owner) cannot traverse (others' x bit)."""
    blocked = []
    for folder in list(Path(os.path.abspath(path)).parents)[::-1]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            break
        if info.st_uid != who.pw_uid and not info.st_mode & stat.S_IXOTH:
            blocked.append(folder)
    return blocked


def become(who: pwd.struct_passwd) -> None:
    """Switch this process to ``who`` for good (root only): groups, gid, uid, HOME and USER."""
    _switch(who, os.getgrouplist(who.pw_name, who.pw_gid))
    os.environ.update({"HOME": who.pw_dir, "USER": who.pw_name, "LOGNAME": who.pw_name})


def _switch(who: pwd.struct_passwd, groups: list[int]) -> None:
    os.setgroups(groups)
    os.setgid(who.pw_gid)
    os.setuid(who.pw_uid)


def run_as(who: pwd.struct_passwd, umask: int | None = None) -> Callable[[], None]:
    """A ``preexec_fn`` that makes a child process ``who`` (root only), with ``umask``.

    The group list is looked up here, before the fork: the child only makes system calls.
    """
    groups = os.getgrouplist(who.pw_name, who.pw_gid)

    def child() -> None:
        _switch(who, groups)
        if umask is not None:
            os.umask(umask)

    return child


def act_as_data_dir_owner(data_dir: Path, service_user: str = SERVICE_USER) -> str | None:
    """Set the private umask; run as root on a data dir owned by ``service_user``, become that account.

    Returns the account switched to (None: no switch). The data directory's owner is the platform's
    account by construction (:func:`make_private_tree`), so the files written next are its own. A data
    directory owned by root (or anyone else) is used as it is.
    """
    os.umask(PRIVATE_UMASK)
    if os.geteuid() != 0:
        return None
    try:
        owner_uid = os.stat(data_dir).st_uid
    except FileNotFoundError:
        return None
    who = account(service_user)
    if who is None or owner_uid != who.pw_uid or who.pw_uid == 0:
        return None
    become(who)
    return who.pw_name


def run_as_service_account(settings, say=print) -> None:
    """As root: the data directory is the service account's from the start, and so is this process.

    Creates the account and the data directory when missing, gives the directory (all but the hub's
    state) to the account, private, then drops to it. Not root: only the private umask is set.
    """
    if os.geteuid() == 0:
        owner, created = ensure_service_account(settings.service_user)
        if created:
            say(f"created the service account {owner.pw_name} (the platform's files are its own, closed to PIs)")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        blocked = unreachable_by(settings.data_dir, owner)
        if blocked:
            raise SystemExit(
                f"the service account {owner.pw_name} cannot reach {settings.data_dir}: "
                f"{', '.join(map(str, blocked))} not traversable; choose another HCDC_DATA_DIR"
            )
        for change in make_private_tree(settings.data_dir, owner, skip=(settings.data_dir / "hub",)):
            say(f"    {change}")
    who = act_as_data_dir_owner(settings.data_dir, settings.service_user)
    if who:
        say(f"running as {who}, the owner of {settings.data_dir} (files 0600, folders 0700)")
