"""JupyterHub classes of the HC-DC hub (imported by JupyterHub from the generated traits).

* :class:`HCDCSystemUserSpawner` — LocalProcessSpawner that runs each hub user's
  server as an OS account of its own (``<prefix><hub name>``), created on first
  spawn, never root or a system account. Separate uids are what lets file
  permissions keep products and the catalog out of a PI's kernel. Before each
  start it puts the starter notebooks (``notebooks/tutorials``: the reduction
  panel, converted from jupytext to ``.ipynb``, and the PI guide) into
  ``~/hcdc-tutorials`` when they are not there yet.
* :class:`HCDCNativeAuthenticator` — NativeAuthenticator that also creates
  approved accounts queued by ``hcdc hub start --demo-users`` (bcrypt hashes in
  the 0700 state folder, consumed at start).
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import re
import stat
import subprocess
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.handlers import LoginHandler as NativeLoginHandler
from nativeauthenticator.orm import UserInfo
from traitlets import Bool, Integer, List, Unicode

#: the repository's tutorials folder (starter notebooks for new users)
TUTORIALS = Path(__file__).resolve().parents[1] / "notebooks" / "tutorials"

#: what useradd accepts, kept to the portable subset
SYSTEM_NAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
#: GECOS comment of the OS accounts the spawner creates (how preflight finds them to mend them)
HUB_ACCOUNT_COMMENT = "HC-DC hub user"
#: umask of users' servers and kernels: nothing they write is readable by another account
PRIVATE_UMASK = 0o077


def private_home(account: pwd.struct_passwd) -> list[str]:
    """Close ``account``'s home to every other account (0700); returns what was changed, in words.

    Only a real folder owned by the account is changed (never a symbolic link, never someone else's).
    """
    home = account.pw_dir
    try:
        info = os.lstat(home)
    except (FileNotFoundError, TypeError):
        return []
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != account.pw_uid or not info.st_mode & 0o077:
        return []
    os.chmod(home, 0o700, follow_symlinks=False)
    return [f"home {home} of {account.pw_name} was {oct(stat.S_IMODE(info.st_mode))}, now 0o700"]


def hub_accounts(prefix: str = "", min_uid: int = 1000) -> list[pwd.struct_passwd]:
    """The OS accounts the spawner made for hub users (by their comment), uid >= ``min_uid``."""
    return sorted(
        (
            a
            for a in pwd.getpwall()
            if a.pw_gecos.startswith(HUB_ACCOUNT_COMMENT)
            and a.pw_name.startswith(prefix)
            and a.pw_uid >= min_uid
            and a.pw_uid != 0
        ),
        key=lambda a: a.pw_name,
    )


class SpawnRefused(RuntimeError):
    """A server that must not start, with the reason for the user and the admins."""


class HCDCSystemUserSpawner(LocalProcessSpawner):
    """Run each user's server as their own unprivileged OS account."""

    system_user_prefix = Unicode("", config=True, help="OS account name = prefix + hub user name.")
    create_system_users = Bool(True, config=True, help="Create the OS account on first spawn (useradd).")
    min_uid = Integer(1000, config=True, help="Never run a server as an account below this uid.")
    starter_files = List(
        Unicode(),
        [str(TUTORIALS / "reduction_panel.py"), str(TUTORIALS / "PI_GUIDE.md")],
        config=True,
        help="Files put into each user's ~/<starter_folder> when missing (jupytext .py notebooks become .ipynb).",
    )
    starter_folder = Unicode("hcdc-tutorials", config=True, help="Folder of the home that gets starter_files.")
    warm_start_socket = Unicode(
        "",
        config=True,
        help="Unix socket of the pre-warmed server zygote (hcdc.warmstart); servers are forked from it when it "
        "answers, else started the ordinary way. Empty: always the ordinary way.",
    )
    warm_kernels = Bool(
        True,
        config=True,
        help="Kernels of a warm-started server are forks of the PI's own kernel zygote (else fresh interpreters).",
    )
    warm_start_wait = Integer(
        30,
        config=True,
        help="Seconds a spawn waits for a zygote that is still importing (just after the hub started) before "
        "it starts the server the ordinary way.",
    )

    @property
    def system_username(self) -> str:
        return self.system_user_prefix + self.user.name

    def _account(self) -> pwd.struct_passwd:
        name = self.system_username
        if not SYSTEM_NAME.match(name):
            raise SpawnRefused(
                f"hub user {self.user.name!r} cannot be mapped to an OS account ({name!r} is not a "
                f"valid account name: lower-case letters, digits, '-' and '_', at most 32)"
            )
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            if not self.create_system_users:
                raise SpawnRefused(
                    f"no OS account {name!r} for hub user {self.user.name!r}; ask the admins to "
                    f"create it (create_system_users is off)"
                ) from None
            self.log.info("creating OS account %s for hub user %s", name, self.user.name)
            result = subprocess.run(
                [
                    "useradd",
                    "--create-home",
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                    "-K",
                    "HOME_MODE=0700",
                    "--comment",
                    f"{HUB_ACCOUNT_COMMENT} {self.user.name}",
                    name,
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                raise SpawnRefused(f"cannot create OS account {name!r}: {result.stderr.strip()}") from None
            account = pwd.getpwnam(name)
        if account.pw_uid < self.min_uid or account.pw_uid == 0:
            raise SpawnRefused(
                f"refusing to run {self.user.name!r}'s server as OS account {name!r} "
                f"(uid {account.pw_uid} < {self.min_uid}: root or a system account)"
            )
        for change in private_home(account):  # also homes made before homes were private
            self.log.warning("HC-DC: %s", change)
        return account

    def make_preexec_fn(self, name):
        become = set_user_setuid(self.system_username)

        def preexec() -> None:
            become()
            # what the server, its kernels and terminals create is the user's alone (files 0600, folders 0700)
            os.umask(PRIVATE_UMASK)

        return preexec

    def user_env(self, env):
        account = pwd.getpwnam(self.system_username)
        env["USER"] = account.pw_name
        env["HOME"] = account.pw_dir
        env["SHELL"] = "/bin/bash"
        return env

    def _install_starters(self, account: pwd.struct_passwd) -> list[Path]:
        """Copy the starter files into the user's home (existing files are left alone).

        Runs as root in the user's home: the folder and files are opened without following symbolic
        links and created exclusively, so a user cannot redirect the copy elsewhere.
        """
        if not self.starter_files or not account.pw_dir or not os.path.isdir(account.pw_dir):
            return []
        folder = Path(account.pw_dir) / self.starter_folder
        written = []
        try:
            if not os.path.lexists(folder):
                os.mkdir(folder, 0o700)
                os.chown(folder, account.pw_uid, account.pw_gid)
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            self.log.warning("no starter notebooks for %s: %s", self.user.name, exc)
            return []
        try:
            for source in map(Path, self.starter_files):
                if not source.is_file():
                    self.log.warning("starter file %s is missing", source)
                    continue
                if source.suffix == ".py":  # a jupytext notebook
                    import jupytext

                    notebook = jupytext.read(source)
                    notebook.metadata.pop("jupytext", None)  # a plain notebook, not paired with a .py
                    name, content = source.stem + ".ipynb", jupytext.writes(notebook, fmt="ipynb").encode()
                else:
                    name, content = source.name, source.read_bytes()
                try:
                    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content)
                    os.fchown(handle.fileno(), account.pw_uid, account.pw_gid)
                written.append(folder / name)
        except Exception as exc:  # a missing tutorial must not stop the server
            self.log.warning("could not install the starter notebooks for %s: %s", self.user.name, exc)
        finally:
            os.close(dir_fd)
        return written

    async def start(self):
        account = await asyncio.to_thread(self._account)
        await asyncio.to_thread(self._install_starters, account)
        if self.warm_start_socket and await self._warm_zygote_ready():
            try:
                return await self._warm_start(account)
            except (OSError, ValueError, KeyError) as exc:
                self.log.warning(
                    "HC-DC: warm start of %s's server failed (%s); starting it the ordinary way", self.user.name, exc
                )
        return await super().start()

    async def _warm_zygote_ready(self) -> bool:
        """Whether the zygote answers; while it is still importing (a hub just started), wait for it."""
        socket_path = Path(self.warm_start_socket)
        deadline = asyncio.get_running_loop().time() + self.warm_start_wait
        while not socket_path.exists():
            try:
                pid = int((socket_path.parent / "zygote.pid").read_text())
                os.kill(pid, 0)
            except (OSError, ValueError):  # no zygote, or it has ended: the ordinary way
                return False
            if asyncio.get_running_loop().time() > deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def _warm_start(self, account: pwd.struct_passwd):
        """Fork the server from the pre-warmed zygote (same command, environment, account and umask)."""
        from jupyterhub.utils import random_port

        from hcdc import warmstart

        if self.port == 0:
            self.port = random_port()
        request = {
            "user": self.system_username,
            "argv": [*self.cmd, *self.get_args()],
            "env": self.get_env(),
            "umask": PRIVATE_UMASK,
            "cwd": account.pw_dir,
            "kernels": self.warm_kernels,
        }
        self.pid = await asyncio.to_thread(warmstart.spawn, self.warm_start_socket, request)
        self.proc = None
        self.log.info("HC-DC: %s's server forked from the warm zygote (pid %d)", self.user.name, self.pid)
        return (self.ip or "127.0.0.1", self.port)

    async def move_certs(self, paths):  # pragma: no cover - internal SSL only
        raise SpawnRefused("internal SSL is not supported by the HC-DC system-user spawner")


class _NoStatsd:
    """Stands in for the statsd client JupyterHub 6 removed (jupyterhub PR 5407)."""

    def timer(self, *args, **kwargs) -> "_NoStatsd":
        return self

    def start(self) -> "_NoStatsd":
        return self

    def stop(self, *args, **kwargs) -> None:
        return None

    def incr(self, *args, **kwargs) -> None:
        return None


class _LoginHandler(NativeLoginHandler):
    """nativeauthenticator 1.3.0's login page, working on JupyterHub 6 (no ``self.statsd`` there)."""

    statsd = _NoStatsd()


class HCDCNativeAuthenticator(NativeAuthenticator):
    """NativeAuthenticator plus accounts queued by ``hcdc hub start --demo-users``.

    Also replaces nativeauthenticator 1.3.0's login handler, which calls
    ``self.statsd`` that JupyterHub 6 no longer has (every login would be a 500).
    """

    seed_accounts_file = Unicode(
        "",
        config=True,
        help="JSON list of {username, password_bcrypt, admin}: approved accounts to "
        "create or reset at start; the file is removed once applied.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._apply_seed_accounts()

    def get_handlers(self, app):
        return [
            (url, _LoginHandler if handler is NativeLoginHandler else handler)
            for url, handler in super().get_handlers(app)
        ]

    def _apply_seed_accounts(self) -> None:
        if not self.seed_accounts_file:
            return
        path = Path(self.seed_accounts_file)
        if not path.is_file():
            return
        rows = json.loads(path.read_text())
        for row in rows:
            username = self.normalize_username(row["username"])
            password = row["password_bcrypt"].encode()
            info = UserInfo.find(self.db, username)
            if info is None:
                self.db.add(UserInfo(username=username, password=password, is_authorized=True))
            else:
                info.password = password
                info.is_authorized = True
        self.db.commit()
        os.unlink(path)
        self.log.info("HC-DC: %d approved account(s) created or reset", len(rows))
