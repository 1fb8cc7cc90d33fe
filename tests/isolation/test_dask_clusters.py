"""A campaign's dask cluster runs code for the pipeline's account only (issue 12, route 3).

While ``hcdc reprocess --executor local|slurm`` runs, its scheduler, workers and
nannies listen on TCP ports that every local account can reach. Before campaign
clusters used TLS with per-campaign credentials, any account connected a plain
``distributed.Client`` to the scheduler and ran functions as the pipeline's
account (root here), reading every proprietary file and the catalog. Here a
fresh unprivileged account tries every listening address of a real campaign
cluster, over ``tcp://`` and over ``tls://`` with credentials of its own, as a
client and with the workers' ``run`` handler directly: every attempt must be
refused, while the pipeline's own client still runs its tasks.
"""

from __future__ import annotations

import os
import stat

import pytest

from hcdc.pipeline.campaign import make_cluster
from hcdc.settings import Settings

from .attacker import Attacker, skip_reason

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: run as the attacker: every address, both schemes, as a Client and through the raw 'run' handler
DASK_ATTACK = r"""
import asyncio, os, pickle
from concurrent.futures import ThreadPoolExecutor
from distributed import Client
from distributed.core import rpc
from distributed.security import Security

def client_attempt(url):
    outcome = {}
    security = Security.temporary() if url.startswith("tls") else None
    try:
        with Client(url, timeout="3s", security=security) as client:
            outcome["client"] = "CONNECTED"
            for name, call in (("run_on_scheduler", lambda: client.run_on_scheduler(os.getuid)),
                               ("run", lambda: client.run(os.getuid)),
                               ("submit", lambda: client.submit(os.getuid, pure=False).result(timeout=5))):
                try:
                    outcome[name] = call()
                except Exception as exc:
                    outcome[name] = f"refused: {type(exc).__name__}"
    except Exception as exc:
        outcome["client"] = f"refused: {type(exc).__name__}: {str(exc)[:120]}"
    return outcome

def rpc_attempt(url):
    security = Security.temporary() if url.startswith("tls") else Security()
    async def call():
        remote = rpc(url, connection_args=security.get_connection_args("client"), timeout=3)
        try:
            return await remote.run(function=pickle.dumps(os.getuid))
        finally:
            await remote.close_rpc()
    try:
        return asyncio.run(asyncio.wait_for(call(), 8))
    except BaseException as exc:
        return f"refused: {type(exc).__name__}: {str(exc)[:120]}"

urls = [f"{scheme}://{address}" for address in P["addresses"] for scheme in ("tcp", "tls")]
with ThreadPoolExecutor(min(16, len(urls))) as pool:
    clients = dict(zip(urls, pool.map(client_attempt, urls)))
    rpcs = dict(zip(urls, pool.map(rpc_attempt, urls)))
R["attempts"] = {url: {**clients[url], "rpc_run": rpcs[url]} for url in urls}
"""


#: run as the attacker: dask's HTTP pages on every HTTP port of the cluster (they would show the
#: workers' logs and the tasks' names, and proxy requests to the workers)
DASK_HTTP_ATTACK = r"""
import urllib.request, urllib.error
R["pages"] = {}
for port in P["ports"]:
    for path in ("/status", "/json/identity.json", "/info/main/workers.html", "/health", "/metrics",
                 "/proxy/8786/127.0.0.1/status", "/individual-plots.json"):
        url = f"http://127.0.0.1:{port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                R["pages"][url] = f"{response.status} {response.read(200)!r}"
        except urllib.error.HTTPError as exc:
            R["pages"][url] = f"refused: {exc.code}"
        except Exception as exc:
            R["pages"][url] = f"refused: {type(exc).__name__}"
"""


@pytest.fixture(scope="module")
def attacker():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    account = Attacker()
    yield account
    account.remove()


def _addresses(client) -> list[str]:
    """host:port of the scheduler, every worker and every nanny of the cluster."""
    info = client.scheduler_info()
    urls = [client.scheduler.address] + list(info["workers"])
    urls += [worker["nanny"] for worker in info["workers"].values() if worker.get("nanny")]
    return sorted({url.split("://", 1)[1] for url in urls})


def _assert_refused(result: dict) -> None:
    assert result["attempts"], "no address was tried"
    for url, outcome in result["attempts"].items():
        for what, answer in outcome.items():
            assert isinstance(answer, str) and answer.startswith("refused"), (
                f"the attacker got through {url} ({what}): {answer!r}"
            )


def _assert_private(attacker: Attacker, data_dir) -> None:
    """What the campaign cluster wrote under the data dir (work space, credentials) is closed to others."""
    assert not stat.S_IMODE(data_dir.stat().st_mode) & 0o077
    for root, _dirs, files in os.walk(data_dir):
        for name in files:
            if name.startswith(".dask-jobqueue"):  # the campaign's TLS key and certificates
                assert stat.S_IMODE(os.lstat(os.path.join(root, name)).st_mode) == 0o600
    seen = attacker.run(
        "import os\nR['walk'] = [[r, d, f] for r, d, f in os.walk(P['dir'])]\n"
        "try:\n    os.listdir(P['dir'])\n    R['listdir'] = 'LISTED'\n"
        "except OSError as exc:\n    R['listdir'] = type(exc).__name__\n",
        {"dir": str(data_dir)},
    )
    assert seen == {"walk": [], "listdir": "PermissionError"}


def _http_ports(cluster, client) -> list[int]:
    """The HTTP ports of the scheduler and of every worker (dask starts them even without a dashboard)."""
    ports = [cluster.scheduler.http_server.port]
    for worker in client.scheduler_info()["workers"].values():
        ports += [port for port in worker.get("services", {}).values() if isinstance(port, int)]
    return sorted(set(ports))


def _assert_no_pages(attacker: Attacker, ports: list[int]) -> None:
    pages = attacker.run(DASK_HTTP_ATTACK, {"ports": ports})["pages"]
    served = {url: answer for url, answer in pages.items() if not answer.startswith("refused")}
    assert pages and not served, served


def _run_campaign_tasks(client, n: int) -> list[int]:
    return client.gather([client.submit(os.getuid, pure=False, key=f"probe-{i}") for i in range(n)])


def test_local_campaign_cluster_runs_code_for_the_pipeline_only(attacker, tmp_path):
    from distributed import Client

    settings = Settings(data_dir=tmp_path / "data", local_workers=2)
    cluster = make_cluster("local", settings)
    try:
        with Client(cluster) as client:
            assert _run_campaign_tasks(client, 4) == [os.getuid()] * 4  # the pipeline itself is served
            addresses = _addresses(client)
            assert len(addresses) == 5, addresses  # scheduler, 2 workers, 2 nannies
            result = attacker.run(DASK_ATTACK, {"addresses": addresses})
            _assert_refused(result)
            _assert_no_pages(attacker, _http_ports(cluster, client))
            assert _run_campaign_tasks(client, 2) == [os.getuid()] * 2  # and still is after the attack
        assert cluster.scheduler_address.startswith("tls://")
    finally:
        cluster.close()
    _assert_private(attacker, settings.data_dir)


def test_slurm_campaign_cluster_runs_code_for_the_pipeline_only(attacker, tmp_path, slurm_cluster):
    from distributed import Client

    settings = Settings(
        data_dir=tmp_path / "data",
        slurm_jobs=1,
        slurm_cores=1,
        slurm_memory="2GB",
        slurm_walltime="00:10:00",
        slurm_queue="hcdc",
    )
    cluster = make_cluster("slurm", settings)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=120)
            assert _run_campaign_tasks(client, 2) == [os.getuid()] * 2
            addresses = _addresses(client)
            assert len(addresses) >= 2, addresses  # the scheduler here, a worker in the SLURM job
            result = attacker.run(DASK_ATTACK, {"addresses": addresses})
            _assert_refused(result)
            _assert_no_pages(attacker, _http_ports(cluster, client))
        assert cluster.scheduler_address.startswith("tls://")
    finally:
        cluster.close()
    _assert_private(attacker, settings.data_dir)
