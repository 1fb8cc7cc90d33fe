"""An unprivileged local account that runs attack scripts: the attacker of the isolation tests.

Creates a throw-away OS account (``useradd``, no login shell, uid >= 1000) and runs
Python code as that account with this test environment's interpreter, exactly as a
PI's kernel (or any other local user) could. Needs root.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

PYTHON = sys.executable


def skip_reason() -> str | None:
    """Why an attacker account cannot be made here (None when it can)."""
    if os.geteuid() != 0:
        return "creating an unprivileged attacker account needs root"
    if shutil.which("useradd") is None:
        return "useradd not available"
    return None


class Attacker:
    """A fresh unprivileged OS account; :meth:`run` executes Python code as it."""

    def __init__(self, prefix: str = "hcdcatk"):
        self.name = f"{prefix}{uuid.uuid4().hex[:6]}"
        subprocess.run(
            [
                "useradd",
                "--create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "HC-DC isolation test attacker",
                self.name,
            ],
            check=True,
            capture_output=True,
        )
        account = pwd.getpwnam(self.name)
        self.uid, self.gid, self.home = account.pw_uid, account.pw_gid, account.pw_dir

    def _preexec(self):
        from hcdc.accounts import run_as

        return run_as(pwd.getpwnam(self.name))

    def run(self, code: str, parameters: dict | None = None, timeout: float = 120) -> dict:
        """Run ``code`` as the attacker; it reads ``P`` (the parameters) and sets ``R`` (a JSON-able dict)."""
        script = (
            "import json, sys\nP = json.loads(sys.stdin.read())\nR = {}\n"
            + code
            + "\nprint('RESULT' + json.dumps(R, default=str))\n"
        )
        env = {"HOME": self.home, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        result = subprocess.run(
            [PYTHON, "-c", script],
            input=json.dumps(parameters or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=self._preexec(),
            cwd=self.home,
            env=env,
        )
        if "RESULT" not in result.stdout:
            raise AssertionError(f"the attack script failed to run ({result.returncode}):\n{result.stderr[-4000:]}")
        return json.loads(result.stdout.rsplit("RESULT", 1)[1])

    def remove(self) -> None:
        kill_processes_of(self.uid)
        subprocess.run(["userdel", "--remove", self.name], capture_output=True)


def kill_processes_of(uid: int, rounds: int = 50) -> None:
    """SIGKILL every process of ``uid`` until none is left (children started meanwhile included)."""
    for _ in range(rounds):
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit() and _owner(p) == uid]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def _owner(pid: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        return None


def listening_ports(host: str = "127.0.0.1") -> set[int]:
    """TCP ports listening on ``host`` (or every address), from /proc/net/tcp: what any local user sees."""
    ports = set()
    wanted = {"0100007F", "00000000"} if host == "127.0.0.1" else {"00000000"}
    for table in ("/proc/net/tcp",):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, state = fields[1], fields[3]
            ip, port = address.split(":")
            if state == "0A" and ip in wanted:  # LISTEN
                ports.add(int(port, 16))
    return ports


def port_owners() -> dict[int, str]:
    """Listening TCP port -> "user pid command" of its process (root's view, for failure messages)."""
    import re

    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    owners = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        port = int(fields[3].rsplit(":", 1)[1])
        found = re.search(r"pid=(\d+)", line)
        if found:
            pid = found.group(1)
            try:
                user = pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name
                command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
            except (FileNotFoundError, KeyError):
                continue
            owners[port] = f"{user} {pid} {command}"
    return owners
