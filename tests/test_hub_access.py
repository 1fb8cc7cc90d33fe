"""A real HC-DC hub: login, spawn, PI kernels, and access rights enforced outside the kernels.

Starts JupyterHub with configurable-http-proxy and the catalog service from a
validated hub YAML (profile ``local``: NativeAuthenticator, one OS account per
PI), logs two PIs in with their passwords, starts their servers through the
REST API and runs code in their ``hcdc`` kernels through the Jupyter server
REST + websocket API. Each PI sees their own proprietary observation and the
public one, and gets a permission error — never data — for the other's, also
when opening files or the catalog database directly.

Needs root (servers run as OS accounts of their own, created and removed here)
and ``configurable-http-proxy`` on PATH (``npm install -g configurable-http-proxy``).
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from hcdc.client import AuthenticationError, CatalogClient, NotFound

from .access_world import build_world
from .hubtest import ServerNotReady, launch_hub, stop_hub, wait_for_server, write_hub_config
from .isolation.attacker import kill_processes_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORDS = {"alice": secrets.token_urlsafe(12), "bob": secrets.token_urlsafe(12), "nobody": secrets.token_urlsafe(12)}
ADMIN_TOKEN = secrets.token_hex(24)


def _skip_reason(config) -> str | None:
    from hcdc.hub import preflight

    if shutil.which("configurable-http-proxy") is None:
        return "configurable-http-proxy not on PATH (npm install -g configurable-http-proxy)"
    if os.geteuid() != 0:
        return "the system-users spawner needs root (it runs each PI as an OS account of their own)"
    if shutil.which("useradd") is None:
        return "useradd not available"
    problems = preflight(config)
    return "; ".join(problems) if problems else None


class Hub:
    def __init__(
        self, root: Path, url: str, process: subprocess.Popen, log: Path, world, data_dir: Path, prefix: str, config
    ):
        self.root, self.url, self.process, self.log = root, url, process, log
        self.world, self.data_dir, self.prefix, self.config = world, data_dir, prefix, config
        self.service_url = f"{url}services/hcdc-catalog/"

    def admin(self, method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, f"{self.url}hub/api/{path}", timeout=30, headers={"Authorization": f"token {ADMIN_TOKEN}"}, **kwargs
        )

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def hub():
    from hcdc.catalog import Catalog
    from hcdc.hub import load_hub_config, write_seed_accounts

    root = Path(tempfile.mkdtemp(prefix="hcdc-hubtest-"))
    os.chmod(root, 0o755)  # deliberately open: the hub itself must make the data private
    data_dir = root / "data"
    data_dir.mkdir()
    catalog_url = f"sqlite:///{data_dir / 'catalog.sqlite'}"
    prefix = f"hct{uuid.uuid4().hex[:4]}-"
    config_file, ports = write_hub_config(
        root,
        catalog={"catalog_url": catalog_url, "data_dir": str(data_dir), "token_cache_seconds": 0},
        spawner={"kind": "system-users", "system_user_prefix": prefix, "start_timeout": 90, "http_timeout": 90},
        test_admin=True,
    )
    config = load_hub_config(config_file)
    reason = _skip_reason(config)
    if reason:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"real-hub test skipped: {reason}")

    catalog = Catalog(catalog_url)
    world = build_world(catalog, data_dir, data_dir)  # raw archive and products both under the data dir
    catalog.dispose()
    write_seed_accounts(config, PASSWORDS)

    url = f"http://127.0.0.1:{ports['port']}/"
    process, log = launch_hub(
        root,
        config_file,
        [f"{url}services/hcdc-catalog/api/health"],
        cwd=root / "state",
        env={"HCDC_TEST_ADMIN_TOKEN": ADMIN_TOKEN},
        timeout=60,
    )
    instance = Hub(root, url, process, log, world, data_dir, prefix, config)
    try:
        yield instance
    finally:
        _stop(instance)


def _stop(hub: Hub) -> None:
    stop_hub(hub.process)
    for name in ("alice", "bob", "nobody"):
        account = hub.prefix + name
        try:
            uid = pwd.getpwnam(account).pw_uid
        except KeyError:
            continue
        kill_processes_of(uid)  # the servers of this test's accounts, if the hub left any
        subprocess.run(["userdel", "--remove", account], capture_output=True)
    if os.environ.get("HCDC_HUB_TEST_LOG"):  # keep the hub's log for debugging
        shutil.copy(hub.log, os.environ["HCDC_HUB_TEST_LOG"])
    shutil.rmtree(hub.root, ignore_errors=True)


# --- a browser-like login and the Jupyter server API ---------------------------------------------


class Login:
    """A user logged in with their password: cookies, xsrf, a token for the APIs."""

    def __init__(self, hub: Hub, username: str, password: str):
        self.hub, self.username = hub, username
        self.http = requests.Session()
        self.http.get(f"{hub.url}hub/login", timeout=30)
        self.response = self.http.post(
            f"{hub.url}hub/login",
            timeout=30,
            allow_redirects=False,
            data={"username": username, "password": password, "_xsrf": self.http.cookies.get("_xsrf", "")},
        )
        self.ok = self.response.status_code == 302

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        xsrf = self.http.cookies.get("_xsrf", path="/hub/") or self.http.cookies.get("_xsrf")
        return self.http.request(
            method,
            f"{self.hub.url}hub/api/{path}",
            timeout=30,
            headers={"X-XSRFToken": xsrf, "Referer": f"{self.hub.url}hub/home"},
            **kwargs,
        )

    def new_token(self, expires_in: int | None = None) -> str:
        body = {"note": "hcdc test", "expires_in": expires_in} if expires_in else {"note": "hcdc test"}
        response = self.api("POST", f"users/{self.username}/tokens", json=body)
        assert response.status_code == 201, response.text
        return response.json()["token"]


class Kernel:
    """A kernel in a user's server, driven through the Jupyter server REST + websocket API."""

    def __init__(self, hub: Hub, username: str, token: str):
        import websocket

        self.base = f"{hub.url}user/{username}/"
        self.headers = {"Authorization": f"token {token}"}
        response = requests.post(self.base + "api/kernels", json={"name": "hcdc"}, headers=self.headers, timeout=60)
        assert response.status_code == 201, response.text
        self.id = response.json()["id"]
        ws_url = self.base.replace("http://", "ws://") + f"api/kernels/{self.id}/channels"
        self.ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=90)
        self.session = uuid.uuid4().hex

    def _send(self, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        self.ws.send(
            json.dumps(
                {
                    "header": {
                        "msg_id": msg_id,
                        "username": "test",
                        "session": self.session,
                        "msg_type": msg_type,
                        "version": "5.3",
                        "date": datetime.now(timezone.utc).isoformat(),
                    },
                    "parent_header": {},
                    "metadata": {},
                    "content": content,
                    "channel": "shell",
                    "buffers": [],
                }
            )
        )
        return msg_id

    def wait_ready(self) -> None:
        msg_id = self._send("kernel_info_request", {})
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == "kernel_info_reply":
                return

    def execute(self, code: str) -> tuple[str, list[dict]]:
        """(stdout, errors) of ``code``; every iopub message of the cell is kept in ``self.seen``."""
        msg_id = self._send(
            "execute_request",
            {
                "code": code,
                "silent": False,
                "store_history": False,
                "user_expressions": {},
                "allow_stdin": False,
                "stop_on_error": True,
            },
        )
        out, errors, self.seen = [], [], []
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            self.seen.append(msg)
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                errors.append(msg["content"])
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out), errors

    def close(self) -> None:
        self.ws.close()


def login_spawn_kernel(hub: Hub, username: str) -> tuple[Login, Kernel, dict[str, float]]:
    """Log in, start the server through the REST API, start a kernel; seconds of each phase."""
    t0 = time.perf_counter()
    login = Login(hub, username, PASSWORDS[username])
    t_login = time.perf_counter()
    assert login.ok, f"login of {username} failed: {login.response.status_code}\n{hub.tail()}"
    response = login.api("POST", f"users/{username}/server")
    assert response.status_code in (201, 202), response.text
    try:
        wait_for_server(lambda: hub.admin("GET", f"users/{username}").json(), username, 90)
    except ServerNotReady as exc:
        pytest.fail(f"{exc}:\n{hub.tail()}")
    t_server = time.perf_counter()
    kernel = Kernel(hub, username, login.new_token())
    kernel.wait_ready()
    t_kernel = time.perf_counter()
    return (
        login,
        kernel,
        {"login": t_login - t0, "server": t_server - t_login, "kernel": t_kernel - t_server, "total": t_kernel - t0},
    )


PROBE = r"""
import hashlib, json, os, sqlite3
from hcdc.client import CatalogClient
c = CatalogClient()
r = {"uid": os.getuid(), "catalog_url": os.environ.get("HCDC_CATALOG_URL"), "whoami": c.whoami(),
     "keys": sorted(o["key"] for o in c.observations()),
     "mine": sorted(o["key"] for o in c.observations(mine=True))}
def attempt(f):
    try:
        f()
        return "GOT DATA"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
OTHER, OTHER_PRODUCT = P["other"], P["other_product"]
r["other"] = {name: attempt(f) for name, f in {
    "observation": lambda: c.observation(OTHER), "raw_files": lambda: c.raw_files(OTHER),
    "products": lambda: c.products(OTHER), "detections": lambda: c.detections(OTHER),
    "detection_limits": lambda: c.detection_limits(OTHER), "product": lambda: c.product(OTHER_PRODUCT),
    "product_file": lambda: c.product_bytes(OTHER_PRODUCT)}.items()}
r["missing"] = attempt(lambda: c.observation(987654))
r["own_product_sha256"] = hashlib.sha256(c.product_bytes(P["own_product"])).hexdigest()
r["own_detections"] = len(c.detections(P["own"]))
r["own_limits"] = [len(x["points"]) for x in c.detection_limits(P["own"])]
r["public"] = c.observation(P["public"])["key"]
r["public_product_sha256"] = hashlib.sha256(c.product_bytes(P["public_product"])).hexdigest()
def opening(path):
    try:
        open(path, "rb").read(16)
        return "READ"
    except Exception as e:
        return type(e).__name__
r["direct"] = {"other_product": opening(P["other_path"]), "own_product": opening(P["own_path"]),
               "catalog": opening(P["catalog"]), "other_raw": opening(P["other_raw"]),
               "sqlite": attempt(lambda: sqlite3.connect(f"file:{P['catalog']}?mode=ro", uri=True)
                                  .execute("select key from observations").fetchall())}
print("RESULT" + json.dumps(r))
"""


def _raw_file_of(hub: Hub, letter: str) -> str:
    from sqlalchemy import select

    from hcdc.catalog import Catalog
    from hcdc.catalog.models import RawFile

    catalog = Catalog(f"sqlite:///{hub.data_dir / 'catalog.sqlite'}", migrate=False)
    with catalog.session() as session:
        path = session.scalar(
            select(RawFile.path)
            .where(RawFile.observation_id == hub.world.observation[letter], RawFile.kind == "science")
            .limit(1)
        )
    catalog.dispose()
    return path


# --- the tests ------------------------------------------------------------------------------------


def test_two_pis_see_their_own_and_public_data_only(hub):
    world = hub.world
    together = not os.environ.get("HCDC_HUB_TEST_SERIAL")  # =1: one PI after the other, for timing
    with ThreadPoolExecutor(2 if together else 1) as pool:
        sessions = dict(zip(("alice", "bob"), pool.map(lambda u: login_spawn_kernel(hub, u), ("alice", "bob"))))
    for user, (_login, _kernel, seconds) in sessions.items():
        print(
            f"\n{user}: login -> ready kernel {seconds['total']:.1f} s (login {seconds['login']:.1f} s, server "
            f"{seconds['server']:.1f} s, kernel {seconds['kernel']:.1f} s; "
            f"{'both PIs at once' if together else 'one PI at a time'})"
        )
    mine_other = {"alice": ("A", "B"), "bob": ("B", "A")}
    for user, (_login, kernel, _s) in sessions.items():
        own, other = mine_other[user]
        parameters = dict(
            other=world.observation[other],
            other_product=world.product[other],
            own=world.observation[own],
            own_product=world.product[own],
            public=world.observation["C"],
            public_product=world.product["C"],
            other_path=str(world.product_path[other]),
            own_path=str(world.product_path[own]),
            catalog=str(hub.data_dir / "catalog.sqlite"),
            other_raw=_raw_file_of(hub, other),
        )
        code = f"import json\nP = json.loads({json.dumps(parameters)!r})\n" + PROBE
        out, errors = kernel.execute(code)
        assert not errors, errors
        result = json.loads(out.split("RESULT", 1)[1])
        # the kernel runs as the PI's own unprivileged OS account and has no database URL
        assert result["uid"] == pwd.getpwnam(hub.prefix + user).pw_uid != 0
        assert not result["catalog_url"]
        assert [p["prog_id"] for p in result["whoami"]["programmes"]] == [
            {"A": "0111.C-0001(A)", "B": "0111.C-0002(B)"}[own]
        ]
        assert result["keys"] == sorted([world.key[own], world.key["C"]])
        assert result["mine"] == [world.key[own]]
        for name, outcome in result["other"].items():
            assert outcome.startswith("PermissionDenied:") and "proprietary" in outcome, (user, name, outcome)
        assert result["missing"].startswith("NotFound:") and "does not exist" in result["missing"]
        assert result["own_product_sha256"] == world.product_sha256[own]
        assert result["public_product_sha256"] == world.product_sha256["C"]
        assert result["own_detections"] == 1 and result["own_limits"] == [2]
        assert result["public"] == world.key["C"]
        # around the service: files and database are out of reach of the PI's OS account
        direct = result["direct"]
        assert direct["other_product"] == direct["own_product"] == direct["catalog"] == "PermissionError"
        assert direct["other_raw"] == "PermissionError"
        assert direct["sqlite"].startswith("OperationalError")
        # nothing of the other PI's proprietary data reached this kernel
        seen = json.dumps([m for m in kernel.seen if m["msg_type"] != "execute_input"])  # not our own code
        for secret in (
            world.key[other],
            world.target[other],
            world.product_sha256[other],
            world.product_path[other].name,
        ):
            assert secret not in seen, (user, secret)

        # a refusal prints as one clear line in the notebook, not as a traceback
        _out, errors = kernel.execute(f"CatalogClient().observation({world.observation[other]})")
        assert len(errors) == 1 and errors[0]["ename"] == "PermissionDenied"
        assert len(errors[0]["traceback"]) == 1 and "proprietary" in errors[0]["traceback"][0]
    # the data directory was made private by the hub (its parent is open on purpose)
    assert hub.data_dir.stat().st_mode & 0o077 == 0
    # the escape hatch (config_d) ran: its service exists
    names = {s["name"] for s in hub.admin("GET", "services").json().values()}
    assert {"hcdc-catalog", "test-admin"} <= names
    for _login, kernel, _s in sessions.values():
        kernel.close()


def test_wrong_password_is_refused_with_a_message(hub):
    login = Login(hub, "alice", "not-" + PASSWORDS["alice"])
    assert not login.ok and login.response.status_code == 200
    assert "Invalid username or password" in login.response.text
    assert "Traceback" not in login.response.text


def test_unapproved_signup_cannot_log_in(hub):
    http = requests.Session()
    http.get(f"{hub.url}hub/signup", timeout=30)
    password = secrets.token_urlsafe(12)
    response = http.post(
        f"{hub.url}hub/signup",
        timeout=30,
        data={
            "username": "mallory",
            "signup_password": password,
            "signup_password_confirmation": password,
            "_xsrf": http.cookies.get("_xsrf", ""),
        },
    )
    assert response.status_code == 200
    login = Login(hub, "mallory", password)
    assert not login.ok and "has not been authorized by an administrator yet" in login.response.text


def test_expired_and_invalid_tokens_get_a_clear_message(hub):
    login = Login(hub, "nobody", PASSWORDS["nobody"])
    assert login.ok
    short = login.new_token(expires_in=1)
    time.sleep(2.5)
    for token in (short, "not-a-token-" + secrets.token_hex(8)):
        with pytest.raises(AuthenticationError, match="invalid or has expired"):
            CatalogClient(hub.service_url, token=token).observations()
    response = requests.get(hub.service_url + "api/observations", timeout=30)  # no token at all
    assert response.status_code == 401 and "no hub token" in response.json()["message"]
    assert "Traceback" not in response.text


def test_user_without_programme_sees_public_data_and_is_told_why(hub):
    login = Login(hub, "nobody", PASSWORDS["nobody"])
    assert login.ok
    client = CatalogClient(hub.service_url, token=login.new_token())
    who = client.whoami()
    assert who["programmes"] == [] and "not PI or co-I of any programme" in who["message"]
    assert [o["key"] for o in client.observations()] == [hub.world.key["C"]]
    with pytest.raises(NotFound, match="not PI or co-I of any programme"):
        client.observations(mine=True)
    with pytest.raises(NotFound, match="observation 987654 does not exist"):
        client.observation(987654)
