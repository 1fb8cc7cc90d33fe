"""PI A against PI B on a running deployment: every door A has, tried with B's ids and paths (issue 12).

A real hub (configurable-http-proxy, NativeAuthenticator, the system-users spawner: one OS account
per PI), the catalog and dashboards services as the unprivileged service account, a catalog with
both PIs' proprietary observations, reductions, products, executed notebooks, and a campaign's dask
cluster running as the pipeline's account. PI alice (A) then attacks, from her own kernel and with
her own hub token, PI bob's (B) proprietary programme, whose target name carries a marker string:

* every catalog-service endpoint with B's ids, huge ids and forged provenance paths;
* the dashboards: every page, the reduction file handler with B's ids, with forged and linked paths;
* files: B's home (a downloaded cube, saved JSON, IPython history), /tmp, the data directory, the
  catalog file, the raw archive, the reports, ``/proc`` of the services;
* every TCP port the platform opened on the machine (hub, proxy, services, both PIs' kernels, the
  dashboards' kernels, the campaign's scheduler, workers and nannies): dask over tcp:// and tls://,
  unsigned and self-signed kernel messages, kernel creation over HTTP (``ports.py``); the campaign
  cluster alone, local and SLURM, is attacked in ``test_dask_clusters.py``;
* the hub API with A's token (B's user model, server, tokens).

Each route asserts that B's marker never reaches A, and that A still sees A's own proprietary rows.
Set ``HCDC_ISOLATION_REPORT=FILE`` to keep the routes tried and the processes' accounts as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from astropy.io import fits
from sqlalchemy import select

from ..access_world import build_world
from ..hubtest import free_ports, launch_hub, write_hub_config
from ..test_hub_access import ADMIN_TOKEN, PASSWORDS, Hub, Login, _stop, login_spawn_kernel
from .attacker import skip_reason

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SERVICE_USER = "hcdc-service"
MARKER = f"BSECRET{secrets.token_hex(4).upper()}"
REPORT: dict = {"routes": {}, "processes": []}


def _route(name: str, answer) -> None:
    REPORT["routes"][name] = answer


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request):
    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Product, Reduction, Target
    from hcdc.hub import load_hub_config, preflight, write_seed_accounts
    from hcdc.reports import reduction_file

    reason = skip_reason() or (
        None if shutil.which("configurable-http-proxy") else "configurable-http-proxy not on PATH"
    )
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="hcdc-isolation-"))
    os.chmod(root, 0o755)  # deliberately open: the platform must make its data private itself
    data_dir = root / "data"
    data_dir.mkdir()
    cluster = None
    if request.param == "postgresql":  # the project's own cluster: scram-sha-256, owned by the service account
        from hcdc.accounts import ensure_service_account
        from hcdc.pgcluster import ClusterError, ProjectCluster

        ensure_service_account(SERVICE_USER)
        cluster = ProjectCluster.for_data_dir(data_dir, port=free_ports(1)[0], owner=SERVICE_USER)
        try:
            cluster.start()
        except ClusterError as exc:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"cannot start the project's PostgreSQL cluster: {exc}")
        catalog_url, secret_file = cluster.url(), cluster.passfile
    else:
        catalog_url, secret_file = f"sqlite:///{data_dir / 'catalog.sqlite'}", data_dir / "catalog.sqlite"
    prefix = f"hci{uuid.uuid4().hex[:4]}-"
    config_file, ports = write_hub_config(
        root,
        catalog={
            "catalog_url": catalog_url,
            "data_dir": str(data_dir),
            "token_cache_seconds": 0,
            "service_user": SERVICE_USER,
        },
        spawner={"kind": "system-users", "system_user_prefix": prefix, "start_timeout": 120, "http_timeout": 120},
        dashboards=True,
        test_admin=True,
        state_dir=data_dir / "hub",
    )
    config = load_hub_config(config_file)
    problems = preflight(config)
    if problems:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip("; ".join(problems))

    catalog = Catalog(catalog_url)
    world = build_world(catalog, data_dir, data_dir)
    with catalog.session() as session:
        # sources across epochs: each programme's detection becomes a source (bob's is proprietary)
        from hcdc.catalog.models import Detection
        from hcdc.sources import link_sources

        link_sources(session)
        session.flush()
        world.source = {
            letter: session.scalar(
                select(Detection.source_id).where(Detection.observation_id == world.observation[letter])
            )
            for letter in ("A", "B")
        }
        assert all(world.source.values()), world.source
        target = session.scalar(select(Target).where(Target.name == world.target["B"]))
        target.name = f"{world.target['B']} {MARKER}"  # the marker: it must never reach alice
        world.target["B"] = target.name
        files = {}
        for letter in ("A", "B"):
            reduction = session.scalar(select(Reduction).where(Reduction.observation_id == world.observation[letter]))
            # an executed notebook and a report where the pipeline writes them
            for kind, text in (
                (
                    "notebook",
                    json.dumps(
                        {
                            "cells": [
                                {"cell_type": "markdown", "metadata": {}, "source": f"run of {world.target[letter]}"}
                            ],
                            "metadata": {},
                            "nbformat": 4,
                            "nbformat_minor": 5,
                        }
                    ),
                ),
                ("report", f"<html><body>report of {world.target[letter]}</body></html>"),
            ):
                path = reduction_file(data_dir, reduction, kind)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
                setattr(reduction, f"{kind}_path", str(path))
            files[letter] = reduction.id
            # the calibrated products a PI's interactive reduction starts from
            for kind, array in (
                ("cube", np.zeros((4, 8, 8), np.float32)),
                ("angles", np.arange(4, dtype=np.float32)),
                ("psf", np.ones((5, 5), np.float32)),
            ):
                path = data_dir / "products" / f"obs{world.observation[letter]}" / f"{kind}.fits"
                fits.PrimaryHDU(array).writeto(path, overwrite=True)
                data = path.read_bytes()
                session.add(
                    Product(
                        reduction_id=reduction.id,
                        observation_id=world.observation[letter],
                        kind=kind,
                        path=str(path),
                        sha256=hashlib.sha256(data).hexdigest(),
                        size_bytes=len(data),
                        release_date=reduction.release_date,
                    )
                )
        world.reduction = files
    catalog.dispose()
    write_seed_accounts(config, {**PASSWORDS, "sam": PASSWORDS["nobody"]})

    from .attacker import listening_ports

    baseline = listening_ports()  # the machine's own services: the platform's ports are the new ones
    url = f"http://127.0.0.1:{ports['port']}/"
    try:
        process, log = launch_hub(
            root,
            config_file,
            [f"{url}services/hcdc-catalog/api/health", f"{url}services/hcdc-dashboards/hcdc/health"],
            env={"HCDC_TEST_ADMIN_TOKEN": ADMIN_TOKEN},
        )
    except BaseException:
        if cluster is not None:
            cluster.stop()
        raise
    hub = Hub(root, url, process, log, world, data_dir, prefix, config)
    hub.baseline = baseline
    hub.backend, hub.catalog_url, hub.secret_file, hub.pg_cluster = request.param, catalog_url, secret_file, cluster
    campaign = None
    try:
        campaign = _start_campaign_cluster(data_dir)
        hub.campaign = campaign
        sessions = {user: login_spawn_kernel(hub, user) for user in ("alice", "bob")}
        hub.sessions = sessions
        yield hub
    finally:
        if campaign is not None:
            campaign["process"].kill()
            campaign["process"].wait(10)
        REPORT["processes"] = REPORT["processes"] or _process_accounts(hub)
        if os.environ.get("HCDC_ISOLATION_REPORT"):  # one section per catalog backend
            report = Path(os.environ["HCDC_ISOLATION_REPORT"])
            sections = json.loads(report.read_text()) if report.is_file() else {}
            sections[request.param] = dict(REPORT)
            report.write_text(json.dumps(sections, indent=1, default=str))
        REPORT.update({"routes": {}, "processes": []})
        _stop(hub)
        if cluster is not None:
            cluster.stop()
        subprocess.run(["userdel", "--remove", prefix + "sam"], capture_output=True)


CAMPAIGN = r"""
import os, sys, time
from distributed import Client
from hcdc.pipeline.campaign import make_cluster
from hcdc.settings import Settings
cluster = make_cluster("local", Settings(data_dir=sys.argv[1], local_workers=1))
client = Client(cluster)
info = client.scheduler_info()
addresses = [client.scheduler.address] + list(info["workers"]) + [w["nanny"] for w in info["workers"].values()]
print("ADDRESSES " + " ".join(a.split("://", 1)[1] for a in addresses), flush=True)
print("UID", client.submit(os.getuid, pure=False).result(), flush=True)
time.sleep(3600)
"""


def _start_campaign_cluster(data_dir: Path) -> dict:
    """A campaign's local dask cluster, run as the pipeline's account (the service account)."""
    from hcdc.accounts import PRIVATE_UMASK, run_as

    owner = pwd.getpwnam(SERVICE_USER)

    process = subprocess.Popen(
        [sys.executable, "-c", CAMPAIGN, str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=run_as(owner, PRIVATE_UMASK),
        cwd=owner.pw_dir,
        env={**os.environ, "HOME": owner.pw_dir},
        start_new_session=True,
    )
    addresses = process.stdout.readline().split()[1:]
    uid = process.stdout.readline().split()
    assert addresses and uid == ["UID", str(owner.pw_uid)], (addresses, uid)
    return {"process": process, "addresses": addresses}


def _process_accounts(hub: Hub) -> list[str]:
    """``ps -o user,cmd`` of the hub's processes, the services, PI servers, kernels and the campaign."""
    out = subprocess.run(
        ["ps", "-ww", "-eo", "user:20,pid,args", "--no-headers"], capture_output=True, text=True
    ).stdout
    keep = (
        "jupyterhub",
        "configurable-http-proxy",
        "hcdc.service",
        "hcdc.dashboards",
        "ipykernel",
        "distributed",
        "multiprocessing",
        "from hcdc.pipeline.campaign",
        f"postgres -D {hub.data_dir}",
        "hcdc.warmstart",  # the warm-start zygote (root) and the PIs' servers and kernels forked from it
    )
    return [line[:240] for line in out.splitlines() if any(k in line for k in keep) and "pytest" not in line]


def _kernel(hub: Hub, user: str):
    return hub.sessions[user][1]


def _run_apart(kernel, code: str, parameters: dict, timeout: float = 150) -> dict:
    """Run an attack in a child process of ``kernel`` (the same account), bounded by ``timeout``."""
    child_code = "\n".join(
        [
            "import json, sys",
            "P = json.loads(sys.stdin.read())",
            "R = {}",
            code,
            "print(chr(82) + chr(61) + json.dumps(R, default=str))",
        ]
    )
    wrapper = (
        f"import subprocess, sys, json\n"
        f"child = subprocess.run([sys.executable, '-c', {child_code!r}], "
        f"input=json.dumps(P), capture_output=True, text=True, timeout={timeout})\n"
        f"R = json.loads(child.stdout.rsplit('R=', 1)[1]) if 'R=' in child.stdout else "
        f"{{'failed': child.stderr[-3000:]}}\n"
    )
    result = _run(kernel, wrapper, parameters)
    assert "failed" not in result, result["failed"]
    return result


def _run(kernel, code: str, parameters: dict) -> dict:
    out, errors = kernel.execute(
        f"import json\nP = json.loads({json.dumps(parameters)!r})\nR = {{}}\n"
        + code
        + "\nprint('RESULT' + json.dumps(R, default=str))"
    )
    assert not errors, errors
    return json.loads(out.rsplit("RESULT", 1)[1])


def _no_marker(kernel, where: str) -> None:
    seen = json.dumps([m for m in kernel.seen if m["msg_type"] != "execute_input"])
    assert MARKER not in seen, f"B's marker reached alice through {where}"


def _dashboards(hub: Hub, user: str, password: str) -> requests.Session:
    """A browser-like session logged into the dashboards service through the hub's OAuth."""
    login = Login(hub, user, password)
    assert login.ok
    landing = login.http.get(f"{hub.url}services/hcdc-dashboards/", timeout=60)
    assert landing.ok and f"<b>{user}</b>" in landing.text, landing.text[:500]
    return login.http


# --- the routes -------------------------------------------------------------------------------------


def test_forged_provenance_paths_are_neither_stored_nor_served(deployment):
    """Route 1: a path sent with a saved reduction never becomes a file the dashboards serve."""
    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Product, Reduction
    from hcdc.client import CatalogClient

    hub, world = deployment, deployment.world
    alice = Login(hub, "alice", PASSWORDS["alice"])
    client = CatalogClient(hub.service_url, token=alice.new_token())
    catalog = Catalog(hub.catalog_url, migrate=False)
    with catalog.session() as session:
        inputs = [
            {"product_id": p.id, "sha256": p.sha256}
            for p in session.scalars(
                select(Product).where(
                    Product.observation_id == world.observation["A"], Product.kind.in_(("cube", "angles", "psf"))
                )
            )
        ]
    secret = hub.secret_file  # the catalog file, or the database's pass file
    secret_head = secret.read_bytes()[:15]
    forged = {
        "code_version": "forged",
        "git_commit": "f" * 40,
        "host": "forged-host",
        "notebook_path": str(secret),
        "report_path": str(secret),
        "log_path": "/etc/shadow",
        "started_at": "1999-01-01T00:00:00",
        "finished_at": "1999-01-01T00:00:00",
        "owner": "bob",
    }
    saved = client.save_reduction(
        world.observation["A"],
        {
            "parameters": {},
            "inputs": inputs,
            "detections": [],
            "limits": [],
            "provenance": forged,
            "notebook_path": str(secret),
        },
    )
    with catalog.session() as session:
        row = session.get(Reduction, saved["reduction_id"])
        stored = {
            k: getattr(row, k)
            for k in ("notebook_path", "report_path", "log_path", "host", "code_version", "git_commit", "started_at")
        }
        owner = row.owner_id
    catalog.dispose()
    _route("service: POST reductions with forged provenance paths", stored)
    assert stored["notebook_path"] is stored["report_path"] is stored["log_path"] is None
    assert stored["host"] != "forged-host" and stored["code_version"] != "forged" and stored["git_commit"] != "f" * 40
    assert stored["started_at"].year > 2000 and owner is not None
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the service (its own account, not the checkout's owner) still records the commit
        assert stored["git_commit"] == head.stdout.strip(), stored
    browser = _dashboards(hub, "alice", PASSWORDS["alice"])
    for what in ("notebook", "report", "log"):
        for query in ("", "?download=1"):
            response = browser.get(
                f"{hub.url}services/hcdc-dashboards/hcdc/reductions/{saved['reduction_id']}/{what}{query}", timeout=30
            )
            assert response.status_code == 404 and secret_head not in response.content, (what, query)
    _route("dashboards: file handler on the forged reduction", "404, nothing served")


def test_reduction_files_are_served_from_their_own_folder_only(deployment):
    """Route 1, the handler's side: a row pointing elsewhere, or a link in the folder, serves nothing."""
    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Reduction

    hub, world = deployment, deployment.world
    staff = _dashboards(hub, "sam", PASSWORDS["nobody"])
    alice = _dashboards(hub, "alice", PASSWORDS["alice"])
    url = f"{hub.url}services/hcdc-dashboards/hcdc/reductions/"
    own = alice.get(url + f"{world.reduction['A']}/notebook", timeout=30)
    assert own.ok and world.target["A"] in own.text  # alice opens her own executed notebook
    other = alice.get(url + f"{world.reduction['B']}/notebook?download=1", timeout=30)
    assert other.status_code == 403 and MARKER not in other.text
    huge = alice.get(url + f"{2**70}/notebook", timeout=30)
    assert huge.status_code == 404
    _route("dashboards: B's notebook / report / huge id as alice", [other.status_code, huge.status_code])
    catalog = Catalog(hub.catalog_url, migrate=False)
    with catalog.session() as session:  # a row that names the catalog (as the old service stored)
        row = session.get(Reduction, world.reduction["A"])
        row.log_path = str(hub.secret_file)
        report = Path(row.report_path)
    catalog.dispose()
    report.unlink()
    report.symlink_to(hub.secret_file)  # a link where the report belongs
    secret_head = hub.secret_file.read_bytes()[:15]
    for who in (staff, alice):
        for what in ("log", "report"):
            response = who.get(url + f"{world.reduction['A']}/{what}?download=1", timeout=30)
            assert response.status_code == 404 and secret_head not in response.content, what
    _route("dashboards: recorded path elsewhere / symlink in the reports folder", "404, nothing served")


def test_homes_tmp_and_platform_files_are_closed_to_another_pi(deployment):
    """Route 2: what B's kernel writes (home, /tmp, history) and the platform's files stay closed to A."""
    hub, world = deployment, deployment.world
    bob, alice = _kernel(hub, "bob"), _kernel(hub, "alice")
    written = _run(
        bob,
        r"""
import os, tempfile, json
from hcdc.client import CatalogClient
c = CatalogClient()
home = os.path.expanduser("~")
cube = os.path.join(home, "b_cube.fits")
open(cube, "wb").write(c.product_bytes(P["b_product"]))
saved = os.path.join(home, "b_reduction.json")
json.dump({"target": c.observation(P["b_obs"])["target"]}, open(saved, "w"))
fd, scratch = tempfile.mkstemp(prefix="b-scratch-")
os.write(fd, json.dumps(c.observation(P["b_obs"])).encode()); os.close(fd)
get_ipython().history_manager.store_output(1)
R = {"home": home, "files": [cube, saved, scratch], "mode": oct(os.stat(home).st_mode & 0o777),
     "modes": [oct(os.stat(f).st_mode & 0o777) for f in (cube, saved, scratch)], "umask": oct(os.umask(0o077)),
     "history": os.path.join(home, ".ipython", "profile_default", "history.sqlite")}
""",
        {"b_product": world.product["B"], "b_obs": world.observation["B"]},
    )
    assert written["mode"] == "0o700" and set(written["modes"]) == {"0o600"} and written["umask"] == "0o77"
    services = [
        line.split()[1]
        for line in subprocess.run(
            ["ps", "-eo", "user:20,pid,args", "--no-headers"], capture_output=True, text=True
        ).stdout.splitlines()
        if "hcdc.service" in line or "hcdc.dashboards" in line
    ]
    targets = written["files"] + [
        written["home"],
        written["history"],
        str(hub.data_dir),
        str(hub.secret_file),
        str(hub.data_dir / "archive"),
        str(hub.data_dir / "reports"),
        str(world.product_path["B"]),
        str(hub.data_dir / "hub" / "jupyterhub.sqlite"),
    ]
    targets += [f"/proc/{pid}/environ" for pid in services] + [f"/proc/{pid}/cwd/" for pid in services]
    tried = _run(
        alice,
        r"""
import os, glob
def attempt(path):
    try:
        if os.path.isdir(path):
            return "LISTED " + ",".join(os.listdir(path))[:200]
        with open(path, "rb") as handle:
            return "READ " + handle.read(64).decode("latin-1")
    except Exception as exc:
        return type(exc).__name__
R = {path: attempt(path) for path in P["targets"]}
R["tmp"] = {p: attempt(p) for p in glob.glob("/tmp/b-scratch-*")}
""",
        {"targets": targets},
    )
    _route("files: B's home, /tmp, data dir, catalog, archive, reports, hub db, /proc of services", tried)
    for path, answer in tried.items():
        if path == "tmp":
            assert answer and all(a == "PermissionError" for a in answer.values()), answer
            continue
        assert answer in ("PermissionError", "FileNotFoundError"), (path, answer)
    _no_marker(alice, "files")
    # and alice still reads her own proprietary rows through the service
    own = _run(
        alice,
        "from hcdc.client import CatalogClient\n"
        "R = {'keys': [o['key'] for o in CatalogClient().observations(mine=True)]}",
        {},
    )
    assert own["keys"] == [world.key["A"]]


def test_catalog_service_endpoints_with_the_other_pis_ids(deployment):
    """Every endpoint with B's ids answers the same refusal; huge ids are 404; alice still sees A.

    Sources across epochs (``api/sources``, ``api/sources/<id>/photometry``, ``.../plot.png``): bob's
    source is not listed and is answered exactly as a source that does not exist.
    """
    hub, world = deployment, deployment.world
    sources = _current_sources(hub)  # (earlier tests may have linked the sources again: ids change)
    alice = _kernel(hub, "alice")
    result = _run(
        alice,
        r"""
from hcdc.client import CatalogClient
import requests, os
c = CatalogClient()
def attempt(f):
    try:
        f()
        return "GOT DATA"
    except Exception as e:
        return f"{type(e).__name__}: {e}"
B = P["b_obs"]
R["other"] = {name: attempt(f) for name, f in {
    "observation": lambda: c.observation(B), "raw_files": lambda: c.raw_files(B),
    "products": lambda: c.products(B), "detections": lambda: c.detections(B),
    "detection_limits": lambda: c.detection_limits(B), "product": lambda: c.product(P["b_product"]),
    "product_file": lambda: c.product_bytes(P["b_product"]), "calibrated": lambda: c.calibrated(B),
    "save": lambda: c.save_reduction(B, {"parameters": {}, "inputs": []})}.items()}
base, headers = os.environ["HCDC_SERVICE_URL"], {"Authorization": "token " + os.environ["JUPYTERHUB_API_TOKEN"]}
R["huge"] = {path: requests.get(base + path, headers=headers, timeout=30).status_code for path in (
    f"api/observations/{2**70}", f"api/observations/{2**40}/products", f"api/products/{2**63}/file")}
R["own"] = [o["key"] for o in c.observations(mine=True)]
# sources across epochs: bob's source is answered exactly as a source that does not exist
def get(path):
    r = requests.get(base + path, headers=headers, timeout=60)
    return [r.status_code, r.headers.get("Content-Type", "").split(";")[0], r.text[:300]]
R["sources"] = {
    "list": sorted(s["source"] for s in requests.get(base + "api/sources", headers=headers, timeout=60).json()),
    "b photometry": get(f"api/sources/{P['b_source']}/photometry"),
    "b plot": get(f"api/sources/{P['b_source']}/plot.png"),
    "missing photometry": get(f"api/sources/{2**40}/photometry"),
    "missing plot": get(f"api/sources/{2**40}/plot.png"),
    "public photometry": get(f"api/sources/{P['c_source']}/photometry")[:2],
}
""",
        {
            "b_obs": world.observation["B"],
            "b_product": world.product["B"],
            "b_source": sources["B"],
            "c_source": sources["C"],
        },
    )
    _route("service: every endpoint with B's ids", result["other"])
    _route("service: huge ids", result["huge"])
    for name, answer in result["other"].items():
        assert answer.startswith("PermissionDenied") and "proprietary" in answer, (name, answer)
    assert set(result["huge"].values()) == {404}, result["huge"]
    assert result["own"] == [world.key["A"]]
    answers = result["sources"]
    _route("service: sources with B's source id", answers)
    # bob's source is not listed; the public one is (A's own may not be: an earlier test of this module saves a
    # newer reduction of A, whose detections are not linked yet, and sources follow the newest reductions)
    assert sources["B"] not in answers["list"] and sources["C"] in answers["list"], (sources, answers["list"])
    for kind in ("photometry", "plot"):
        refused, missing = answers[f"b {kind}"], answers[f"missing {kind}"]
        assert refused[0] == missing[0] == 404 and refused[1] == missing[1] == "application/json", (refused, missing)
        # the same sentence as for a source that does not exist, but for the id
        assert refused[2].replace(str(sources["B"]), "ID") == missing[2].replace(str(2**40), "ID"), answers
    assert answers["public photometry"] == [200, "application/json"], answers  # the control: a source she may see
    _no_marker(alice, "the catalog service")


def test_dashboards_pages_show_alice_her_rows_and_never_bobs(deployment):
    hub, world = deployment, deployment.world
    alice = _dashboards(hub, "alice", PASSWORDS["alice"])
    seen = {}
    for stem in ("browser", "monitoring", "pipeline"):
        page = alice.get(f"{hub.url}services/hcdc-dashboards/voila/render/{stem}.ipynb", timeout=180)
        seen[stem] = page.status_code
        assert page.ok and MARKER not in page.text and world.key["B"] not in page.text, stem
        assert "Traceback" not in page.text, stem
        assert _close_page(hub, alice, page.text) == 204  # as the browser does when the tab closes
    _route("dashboards: every page as alice", seen)


DASHBOARDS = "services/hcdc-dashboards/"


def _kernel_id(page_text: str) -> str:
    import re

    found = re.search(r'"kernelId":\s*"([0-9a-f-]{36})"', page_text)
    assert found, "no kernel id in the page"
    return found.group(1)


def _xsrf(browser: requests.Session) -> dict[str, str]:
    """The dashboards service's XSRF header (the hub sets an ``_xsrf`` cookie of its own too)."""
    values = [c.value for c in browser.cookies if c.name == "_xsrf" and c.path.startswith("/" + DASHBOARDS)]
    values = values or [c.value for c in browser.cookies if c.name == "_xsrf"]
    return {"X-XSRFToken": values[0] if values else ""}


def _close_page(hub: Hub, browser: requests.Session, page_text: str) -> int:
    """What Voilà's page sends on ``beforeunload``: shut its kernel down."""
    response = browser.post(
        f"{hub.url}{DASHBOARDS}voila/api/shutdown/{_kernel_id(page_text)}", headers=_xsrf(browser), timeout=30
    )
    return response.status_code


def test_dashboard_kernels_belong_to_their_page_owner_and_are_limited(deployment):
    """Bob, knowing the id of alice's dashboard kernel, can neither reach, stop nor watch it; each user
    has at most ``max_kernels_per_user`` pages open (429 with a plain message beyond, no traceback)."""
    import websocket

    hub = deployment
    limit = hub.config.dashboards.max_kernels_per_user
    alice = _dashboards(hub, "alice", PASSWORDS["alice"])
    bob = _dashboards(hub, "bob", PASSWORDS["bob"])
    page = alice.get(f"{hub.url}{DASHBOARDS}voila/render/pipeline.ipynb", timeout=180)
    assert page.ok
    kernel = _kernel_id(page.text)
    api = f"{hub.url}{DASHBOARDS}api/kernels/{kernel}"
    xsrf = _xsrf(bob)
    answers = {
        "GET api/kernels/<id>": bob.get(api, timeout=30).status_code,
        "DELETE api/kernels/<id>": bob.delete(api, headers=xsrf, timeout=30).status_code,
        "POST voila/api/shutdown/<id>": bob.post(
            f"{hub.url}{DASHBOARDS}voila/api/shutdown/{kernel}", headers=xsrf, timeout=30
        ).status_code,
    }
    cookies = "; ".join(f"{c.name}={c.value}" for c in bob.cookies)
    try:
        socket = websocket.create_connection(
            api.replace("http://", "ws://") + "/channels", header=[f"Cookie: {cookies}"], timeout=30
        )
        socket.close()
        answers["websocket channels"] = "CONNECTED"
    except websocket.WebSocketBadStatusException as exc:
        answers["websocket channels"] = exc.status_code
    _route("dashboards: bob on alice's dashboard kernel", answers)
    assert answers == {
        "GET api/kernels/<id>": 404,
        "DELETE api/kernels/<id>": 404,
        "POST voila/api/shutdown/<id>": 404,
        "websocket channels": 404,
    }, answers
    own = alice.get(api, timeout=30)  # still alive, and still alice's
    assert own.status_code == 200 and own.json()["id"] == kernel, own.text[:300]

    pages = [page.text]
    for _ in range(limit - 1):
        more = alice.get(f"{hub.url}{DASHBOARDS}voila/render/pipeline.ipynb", timeout=180)
        assert more.ok
        pages.append(more.text)
    refused = alice.get(f"{hub.url}{DASHBOARDS}voila/render/pipeline.ipynb", timeout=180)
    _route(f"dashboards: page {limit + 1} of alice's open at once", refused.status_code)
    assert refused.status_code == 429 and "Traceback" not in refused.text, refused.text[:500]
    assert bob.get(f"{hub.url}{DASHBOARDS}voila/render/pipeline.ipynb", timeout=180).ok  # bob's own quota
    assert _close_page(hub, alice, pages.pop()) == 204  # a tab closed frees a place at once
    again = alice.get(f"{hub.url}{DASHBOARDS}voila/render/pipeline.ipynb", timeout=180)
    assert again.ok
    for text in pages + [again.text]:
        _close_page(hub, alice, text)


def test_hub_api_with_alice_token(deployment):
    hub = deployment
    alice = Login(hub, "alice", PASSWORDS["alice"])
    headers = {"Authorization": f"token {alice.new_token()}"}
    answers = {}
    for method, path in (
        ("GET", "hub/api/users/bob"),
        ("GET", "hub/api/users"),
        ("POST", "hub/api/users/bob/tokens"),
        ("DELETE", "hub/api/users/bob/server"),
        ("GET", "user/bob/api/contents"),
        ("GET", "user/bob/api/kernels"),
        ("GET", "user/bob/files/b_cube.fits"),
    ):
        response = requests.request(method, hub.url + path, headers=headers, timeout=30, allow_redirects=False)
        answers[f"{method} {path}"] = response.status_code
        assert response.status_code in (302, 403, 404), (method, path, response.status_code)
        assert MARKER not in response.text
    _route("hub API and bob's server with alice's token", answers)


def test_every_platform_process_runs_unprivileged(deployment):
    hub = deployment
    lines = _process_accounts(hub)
    REPORT["processes"] = lines
    by_role = {}
    for line in lines:
        user = line.split()[0]
        for role, key in (
            ("catalog service", "hcdc.service"),
            ("dashboards service", "hcdc.dashboards"),
            ("campaign", "from hcdc.pipeline.campaign"),
        ):
            if key in line:
                by_role.setdefault(role, set()).add(user)
    assert by_role.get("catalog service") == {SERVICE_USER}, lines
    assert by_role.get("dashboards service") == {SERVICE_USER}, lines
    # the warm-start zygote keeps root as the hub does (it becomes each PI); everything forked from it is a PI's
    pi_accounts = {hub.prefix + user for user in ("alice", "bob", "nobody")}
    pi_uids = {str(pwd.getpwnam(a).pw_uid) for a in pi_accounts if _account_exists(a)}
    forked = [line for line in lines if "hcdc.warmstart" in line and str(hub.root) in line]
    zygotes = [line for line in forked if line.split()[0] == "root"]
    assert len(zygotes) == 1, lines
    assert {line.split()[0] for line in forked} - {"root"} <= pi_accounts | pi_uids, lines
    for user in ("alice", "bob"):
        servers = [
            line
            for line in lines
            if line.startswith(hub.prefix + user) or line.split()[0] == str(pwd.getpwnam(hub.prefix + user).pw_uid)
        ]
        assert servers, f"no process of {user}'s server in:\n" + "\n".join(lines)
    if hub.backend == "postgresql":
        servers = [line for line in lines if f"postgres -D {hub.data_dir}" in line]
        assert servers and {line.split()[0] for line in servers} == {SERVICE_USER}, lines
    owner = pwd.getpwnam(SERVICE_USER)
    assert hub.data_dir.stat().st_uid == owner.pw_uid and hub.data_dir.stat().st_mode & 0o077 == 0


def _current_sources(hub) -> dict[str, int]:
    """The source of each programme's detection, as the catalog has it now."""
    from hcdc.catalog import Catalog
    from hcdc.catalog.models import Detection

    catalog = Catalog(hub.catalog_url, migrate=False)
    try:
        with catalog.session() as session:
            ids = {
                letter: session.scalar(
                    select(Detection.source_id).where(Detection.observation_id == hub.world.observation[letter])
                )
                for letter in ("A", "B", "C")
            }
    finally:
        catalog.dispose()
    assert all(ids.values()), ids
    return ids


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _postgres_runs_here() -> bool:
    from hcdc.pgcluster import ClusterError, postgres_bin

    try:
        postgres_bin("initdb")
    except ClusterError:
        return False
    return True


def test_no_platform_port_runs_alices_code(deployment):
    """Every TCP port the platform opened (hub, proxy, services, PI servers, their kernels, the
    dashboards' kernels, the campaign's scheduler, workers and nannies), attacked from A's kernel."""
    from .attacker import listening_ports
    from .ports import PORT_ATTACK, PORT_SWEEP

    hub = deployment
    if hub.backend == "sqlite" and not os.environ.get("HCDC_ISOLATION_ALL_BACKENDS") and _postgres_runs_here():
        pytest.skip(
            "the SQLite deployment's ports are a subset of the PostgreSQL one's (the same hub, proxy, services, "
            "servers, kernels and campaign, without the cluster): swept once, there (CI time; "
            "HCDC_ISOLATION_ALL_BACKENDS=1 sweeps both)"
        )
    ports = sorted(listening_ports() - hub.baseline)
    campaign_ports = {int(a.rsplit(":", 1)[1]) for a in hub.campaign["addresses"]}
    assert campaign_ports <= set(ports), (campaign_ports, ports)  # the sweep covers the campaign
    token = secrets.token_hex(6)
    alice = _kernel(hub, "alice")
    result = _run_apart(
        alice, PORT_SWEEP, {"ports": ports, "token": token, "other": "bob", "attack": PORT_ATTACK}, timeout=280
    )
    pwned = {p.name: p.read_text() for p in Path("/tmp").glob(f"hcdc-pwned-{token}-*")}
    alice_uid = pwd.getpwnam(hub.prefix + "alice").pw_uid
    ran_elsewhere = {name: uid for name, uid in pwned.items() if uid.strip() != str(alice_uid)}
    _route("TCP ports of the platform, from alice's kernel", result["ports"])
    for path in Path("/tmp").glob(f"hcdc-pwned-{token}-*"):
        path.unlink()
    assert not ran_elsewhere, f"alice ran code as another account through: {ran_elsewhere}"
    zmq_ports = [p for p, answer in result["ports"].items() if answer.get("zmq")]
    assert len(zmq_ports) >= 10, result["ports"]  # both PIs' kernels (5 ports each) were among them
    from .attacker import port_owners

    owners = port_owners()
    for port, answer in result["ports"].items():
        answer["process"] = owners.get(int(port), "?")
    own = hub.prefix + "alice"
    for port, answer in result["ports"].items():
        if answer["process"].split(" ", 1)[0] == own and ("failed" in answer or "timeout" in answer):
            # a probe of her own kernel that hung (a late ZMQ greeting on a loaded machine taken for a
            # dask port): no other account's process is behind it, so nothing is left untried
            continue
        assert "failed" not in answer, (port, answer["process"], answer["failed"])
        assert answer.get("dask_tcp", "refused").startswith("refused"), (port, answer)
        assert "timeout" not in answer, (port, answer)
        assert answer.get("dask_tls", "refused").startswith("refused"), (port, answer)
        for key, status in answer.items():
            if key.startswith("http_kernels") and not key.endswith("_body"):
                assert status != 201, (port, key, answer)
            if key.startswith("http_get"):
                assert status != 200, (port, key, answer)
    _no_marker(alice, "the platform's TCP ports")


def test_postgresql_roles_need_passwords_alice_has_not(deployment):
    """On the project's PostgreSQL: every role, over TCP and the socket, without a password, from A's
    kernel; the pass file and the cluster's folder are closed to her (SQLite: the catalog file)."""
    hub = deployment
    if hub.backend != "postgresql":
        pytest.skip("the SQLite catalog is a file: its route is in test_homes_tmp_and_platform_files…")
    cluster = hub.pg_cluster
    alice = _kernel(hub, "alice")
    result = _run_apart(
        alice,
        r"""
import os, psycopg
R["roles"] = {}
for role in ("postgres", "hcdc", "hcdc_reader", os.environ.get("USER") or "alice", "template1"):
    for host in ("127.0.0.1", P["socket_dir"]):
        try:
            psycopg.connect(host=host, port=P["port"], dbname="hcdc", user=role, connect_timeout=5,
                            passfile="/nonexistent").close()
            R["roles"][f"{role}@{host}"] = "CONNECTED"
        except Exception as exc:
            R["roles"][f"{role}@{host}"] = "refused: " + str(exc).strip().splitlines()[0][-90:]
R["files"] = {}
for path in (P["passfile"], P["data"], P["data"] + "/pg_hba.conf", P["data"] + "/global/pg_control"):
    try:
        R["files"][path] = ("LISTED" if os.path.isdir(path) else "READ") if (os.listdir(path) if os.path.isdir(path)
                                                                              else open(path, "rb").read(1)) else "?"
    except Exception as exc:
        R["files"][path] = type(exc).__name__
""",
        {
            "port": cluster.port,
            "socket_dir": str(cluster.socket_dir),
            "passfile": str(cluster.passfile),
            "data": str(cluster.data),
        },
        timeout=60,
    )
    _route("PostgreSQL (project cluster): every role without a password, TCP and socket", result["roles"])
    _route("PostgreSQL (project cluster): pass file and cluster files", result["files"])
    assert result["roles"] and all(a.startswith("refused") for a in result["roles"].values()), result["roles"]
    assert all(a == "PermissionError" for a in result["files"].values()), result["files"]
    # and the server asks for a scram password: nothing else is accepted
    hba = (cluster.data / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and {rule[-1] for rule in rules} == {"scram-sha-256"}, hba
