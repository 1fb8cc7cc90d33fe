"""One way to start a real JupyterHub for the tests: its YAML, the process, readiness, the stop.

Used by the hub, widgets, dashboards and isolation suites, which differ only in what they put
in the catalog and in the YAML (spawner, dashboards, catalog backend).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

#: an escape-hatch file giving the tests an admin service with a known token (env HCDC_TEST_ADMIN_TOKEN)
TEST_ADMIN_SERVICE = (
    "import os\n"
    "c.JupyterHub.services.append({'name': 'test-admin', 'api_token': os.environ['HCDC_TEST_ADMIN_TOKEN']})\n"
    "c.JupyterHub.load_roles.append({'name': 'test-admin', 'services': ['test-admin'], 'scopes': "
    "['admin:users', 'admin:servers', 'list:services', 'read:services']})\n"
)


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together while they are chosen)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def write_hub_config(
    root: Path,
    *,
    catalog: dict,
    spawner: dict,
    dashboards: bool = False,
    test_admin: bool = False,
    state_dir: Path | None = None,
) -> tuple[Path, dict[str, int]]:
    """The hub YAML under ``root`` (profile ``local``, 127.0.0.1, free ports); (path, ports)."""
    names = ["port", "proxy_api_port", "hub_port", "service_port"] + (["dashboards_port"] if dashboards else [])
    ports = dict(zip(names, free_ports(len(names))))
    config_d = [str(REPO / "hub_config" / "jupyterhub_config.d")]
    if test_admin:
        extra = root / "config.d"
        extra.mkdir(exist_ok=True)
        (extra / "50-test-admin.py").write_text(TEST_ADMIN_SERVICE)
        config_d.append(str(extra))
    data = {
        "profile": "local",
        "hub": {
            "ip": "127.0.0.1",
            "port": ports["port"],
            "proxy_api_port": ports["proxy_api_port"],
            "hub_port": ports["hub_port"],
            "state_dir": str(state_dir or root / "state"),
            "admin_users": ["hcdc-admin"],
            "log_level": "INFO",
            "config_d": config_d,
        },
        "catalog": {"service_port": ports["service_port"], **catalog},
        "local": {"spawner": spawner},
    }
    if dashboards:
        data["dashboards"] = {"service_port": ports["dashboards_port"]}
    else:
        data["dashboards"] = {"enabled": False}
    path = root / "hcdc_hub.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, ports


def launch_hub(
    root: Path,
    config_file: Path,
    ready: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 90,
) -> tuple[subprocess.Popen, Path]:
    """Start ``jupyterhub`` on ``config_file``; return once every URL in ``ready`` answers 2xx.

    Fails the test with the end of the hub's log if the hub exits or is not ready in time.
    """
    log = root / "hub.log"
    environment = {**os.environ, "HCDC_HUB_CONFIG": str(config_file), "HCDC_HUB_PROFILE": "local", **(env or {})}
    environment.pop("HCDC_CATALOG_URL", None)  # the YAML names the catalog
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(BIN / "jupyterhub"), "-f", str(REPO / "hub_config" / "jupyterhub_config.py")],
            cwd=cwd or root,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    waiting = list(ready)
    while waiting:
        if process.poll() is not None:
            pytest.fail(f"the hub exited ({process.returncode}):\n{tail(log)}")
        try:
            if requests.get(waiting[0], timeout=2).ok:
                waiting.pop(0)
                continue
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            stop_hub(process)
            pytest.fail(f"{waiting[0]} not up after {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.3)
    return process, log


def stop_hub(process: subprocess.Popen) -> None:
    """SIGTERM the hub (it stops the proxy, the services and the servers), then SIGKILL its group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(45)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def tail(log: Path, n: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-n:])


class ServerNotReady(RuntimeError):
    """A PI's server failed to start, or was not ready in time."""


def wait_for_server(user_model, username: str, timeout_s: float, poll_s: float = 0.25) -> None:
    """Poll the hub until ``username``'s default server is ready.

    ``user_model()`` returns the hub's model of the user (``GET users/<name>``, with whichever token the
    caller holds). Raises :class:`ServerNotReady` when the spawn ended without a server (it failed) or
    after ``timeout_s``; the callers add the hub's log tail to the failure.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        model = user_model()
        server = model.get("servers", {}).get("")
        if server and server.get("ready"):
            return
        if not model.get("pending") and not server:
            raise ServerNotReady(f"{username}'s server failed to start")
        if time.monotonic() > deadline:
            raise ServerNotReady(f"{username}'s server not ready after {timeout_s:.0f} s")
        time.sleep(poll_s)
