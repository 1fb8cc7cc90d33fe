"""The catalog service killed while a PI saves a reduction (issue 17, item 3).

The service runs as it does under the hub (``python -m hcdc.service``, its own process, a real
``HubAuth`` against a stub of the hub's ``/hub/api/user``) and is killed with SIGKILL at random moments
of a save, then started again. Whatever the moment, the save is recorded whole (the reduction, every
detection, limit and image product, the files with their sha256) or not at all, never twice, and the
PI's client says which: ``already_saved`` when the first attempt had committed before the answer was lost.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from sqlalchemy import func, select

from hcdc.catalog import Catalog
from hcdc.catalog.models import Detection, DetectionLimit, Product, Reduction
from hcdc.client import CatalogClient, ServiceUnavailable
from hcdc.service import INTERACTIVE_STEP

from .access_world import build_world
from .hubstub import serve_hub_stub
from .test_widgets import _add_calibrated, _port

pytestmark = [pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[1]
PREFIX = "/services/hcdc-catalog/"


class ServiceProcess:
    """``python -m hcdc.service`` as the hub starts it; ``kill()`` is SIGKILL, ``start()`` waits for health."""

    def __init__(self, catalog_url: str, data_dir: Path, hub_port: int, log: Path):
        self.port = _port()
        self.url = f"http://127.0.0.1:{self.port}{PREFIX}"
        self.log = log
        self.env = dict(
            os.environ,
            JUPYTERHUB_API_URL=f"http://127.0.0.1:{hub_port}/hub/api",
            JUPYTERHUB_API_TOKEN="service-token",
            JUPYTERHUB_SERVICE_NAME="hcdc-catalog",
            JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{self.port}",
            JUPYTERHUB_SERVICE_PREFIX=PREFIX,
            HCDC_CATALOG_URL=catalog_url,
            HCDC_DATA_DIR=str(data_dir),
            HCDC_SERVICE_TOKEN_CACHE_SECONDS="0",
            PYTHONPATH=str(REPO),
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hcdc.service"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "api/health", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            assert self.process.poll() is None, self.log.read_text()[-2000:]
            time.sleep(0.1)
        raise AssertionError("the catalog service did not start: " + self.log.read_text()[-2000:])

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def world(request, tmp_path_factory):
    from .conftest import _reset_postgres

    root = tmp_path_factory.mktemp("save-faults")
    data_dir = root / "data"
    data_dir.mkdir()
    if request.param == "sqlite":
        url = f"sqlite:///{data_dir / 'catalog.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_database")
        _reset_postgres(url)
    catalog = Catalog(url)
    world = build_world(catalog, root, data_dir)
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(8, 31, 31))
    calibrated = _add_calibrated(
        catalog, world.observation["A"], data_dir / "products" / "calA", cube, np.linspace(0, 40, 8), np.ones((9, 9))
    )
    hub_port = _port()
    serve_hub_stub(hub_port)
    service = ServiceProcess(url, data_dir, hub_port, root / "service.log")
    service.start()
    yield catalog, world, calibrated, service
    service.kill()
    catalog.dispose()


def _payload(world, calibrated: dict[str, int], catalog, n_detections: int, seed: int) -> dict:
    """A save as the widgets send it: inputs with their sha256, detections, a limit, two images."""
    with catalog.session() as session:
        inputs = [
            {"product_id": pid, "sha256": session.get(Product, pid).sha256} for pid in sorted(calibrated.values())
        ]
    rng = np.random.default_rng(seed)
    image = rng.normal(size=(1500, 1500)).astype("<f4")  # 9 MB each: writing them takes long enough to be hit
    encoded = {"shape": list(image.shape), "data": base64.b64encode(image.tobytes()).decode()}
    return {
        "parameters": {},
        "inputs": inputs,
        "detections": [
            {"x_px": 10.0 + k, "y_px": 12.0, "sep_arcsec": 0.1 + 0.01 * k, "pa_deg": 30.0 * k, "snr": 6.0 + k}
            for k in range(n_detections)
        ],
        "limits": [{"sigma": 5.0, "algorithm": "pca", "points": [{"sep_arcsec": 0.2, "contrast": 1e-4}]}],
        "images": {"residuals": encoded, "snrmap": encoded},
    }


def _unrecorded_folders(catalog, data_dir: Path) -> list[Path]:
    """Interactive product folders holding files but no recorded reduction (a save not committed)."""
    with catalog.session() as session:
        ids = set(session.scalars(select(Reduction.id).where(Reduction.step == INTERACTIVE_STEP)))
    return [
        p
        for p in (data_dir / "products").glob("obs*/interactive-r*")
        if any(p.iterdir()) and int(p.name.removeprefix("interactive-r")) not in ids
    ]


def _recorded(catalog, key: str) -> list[dict]:
    """Every reduction recorded under ``key``, with its rows and whether its files match their sha256."""
    out = []
    with catalog.session() as session:
        for reduction in session.scalars(select(Reduction).where(Reduction.save_key == key)):
            products = list(session.scalars(select(Product).where(Product.reduction_id == reduction.id)))
            out.append(
                {
                    "id": reduction.id,
                    "detections": session.scalar(
                        select(func.count(Detection.id)).where(Detection.reduction_id == reduction.id)
                    ),
                    "limits": session.scalar(
                        select(func.count(DetectionLimit.id)).where(DetectionLimit.reduction_id == reduction.id)
                    ),
                    "products": len(products),
                    "files_ok": all(
                        Path(p.path).is_file() and hashlib.sha256(Path(p.path).read_bytes()).hexdigest() == p.sha256
                        for p in products
                    ),
                }
            )
    return out


def test_a_save_survives_the_service_killed_at_any_moment_and_is_recorded_once(world):
    catalog, w, calibrated, service = world
    observation = w.observation["A"]
    client = CatalogClient(service.url, token="tok-alice")
    # how long one save takes here (warm: the first one imports the science), to spread the kills over it
    durations = []
    for k in range(3):
        started = time.monotonic()
        first = client.save_reduction(observation, _payload(w, calibrated, catalog, 2, k) | {"save_key": f"timing-{k}"})
        durations.append(time.monotonic() - started)
        assert first["already_saved"] is False and first["n_detections"] == 2 and len(first["products"]) == 2
    duration = min(durations[1:])
    outcomes, moments = [], []
    # kills spread over a save; if none fell while its files were written (timing differs from machine to
    # machine), more at random moments inside it, up to 12
    fractions = [0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0, 1.5]
    search = np.random.default_rng(3)
    trial = -1
    while True:
        trial += 1
        if trial >= len(fractions):
            if "killed writing its files" in moments or trial >= len(fractions) + 12:
                break
            fractions.append(float(search.uniform(0.3, 1.1)))
        key = f"killed-save-{trial:02d}"
        n = 1 + trial % 3
        payload = _payload(w, calibrated, catalog, n, trial + 1) | {"save_key": key}
        holder: dict = {}

        def save(payload=payload, holder=holder):
            try:
                holder["answer"] = client.save_reduction(observation, payload, retry_seconds=90)
            except Exception as exc:  # reported below
                holder["error"] = exc

        thread = threading.Thread(target=save)
        thread.start()
        time.sleep(fractions[trial] * duration)  # before, during or after the transaction
        service.kill()
        answered, committed = "answer" in holder, len(_recorded(catalog, key))
        writing = bool(_unrecorded_folders(catalog, Path(service.env["HCDC_DATA_DIR"])))
        moments.append(
            "answered"
            if answered
            else "committed, answer lost"
            if committed
            else "killed writing its files"
            if writing
            else "killed before writing"
        )
        time.sleep(0.3)
        service.start()
        thread.join(120)
        assert not thread.is_alive()
        assert "error" not in holder, holder.get("error")
        answer = holder["answer"]
        outcomes.append(answer["already_saved"])
        recorded = _recorded(catalog, key)
        # exactly one, whole: its rows and its files
        assert len(recorded) == 1, recorded
        assert recorded[0] == {
            "id": answer["reduction_id"],
            "detections": n,
            "limits": 1,
            "products": 2,
            "files_ok": True,
        }
        assert answer["n_detections"] == n and answer["n_limits"] == 1 and len(answer["products"]) == 2
        # and saying it again changes nothing
        again = client.save_reduction(observation, payload)
        assert again["already_saved"] is True and again["reduction_id"] == answer["reduction_id"]
        assert len(_recorded(catalog, key)) == 1
    # nothing else was recorded: one interactive reduction per key, none half-made, no orphan folder
    with catalog.session() as session:
        rows = list(session.scalars(select(Reduction).where(Reduction.step == INTERACTIVE_STEP)))
        keys = [r.save_key for r in rows if r.save_key]
        assert len(keys) == len(set(keys))
        interactive_ids = {r.id for r in rows}
    # the files of a save killed before its commit are removed when the service starts again
    assert not _unrecorded_folders(catalog, Path(service.env["HCDC_DATA_DIR"])), interactive_ids
    print(f"saves took {[round(d, 3) for d in durations]} s; at the kills: {moments}; already_saved={outcomes}")
    # some kills fell inside a save's transaction (else nothing here was tried); the retries recorded them
    assert "killed writing its files" in moments, moments


def test_a_save_while_the_service_is_down_says_it_is_not_confirmed_and_a_later_save_records_it_once(world):
    catalog, w, calibrated, service = world
    observation = w.observation["A"]
    client = CatalogClient(service.url, token="tok-alice")
    payload = _payload(w, calibrated, catalog, 3, 99) | {"save_key": "down-save-01"}
    service.kill()
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            client.save_reduction(observation, payload, retry_seconds=1.5)
        message = caught.value.message
        assert "not confirmed" in message and "down-save-01" in message and "never recorded twice" in message
    finally:
        service.start()
    assert _recorded(catalog, "down-save-01") == []
    answer = client.save_reduction(observation, payload)
    assert answer["already_saved"] is False
    assert _recorded(catalog, "down-save-01") == [
        {"id": answer["reduction_id"], "detections": 3, "limits": 1, "products": 2, "files_ok": True}
    ]


def test_save_keys_are_checked_and_are_per_owner(world):
    catalog, w, calibrated, service = world
    alice = CatalogClient(service.url, token="tok-alice")
    from hcdc.client import BadRequest

    payload = _payload(w, calibrated, catalog, 1, 5)
    with pytest.raises(BadRequest, match="save_key must be"):
        alice.save_reduction(w.observation["A"], payload | {"save_key": "../../etc"})
    with pytest.raises(BadRequest, match="save_key must be"):
        alice.save_reduction(w.observation["A"], payload | {"save_key": 12345678})
    # another PI cannot learn of (or reach) alice's save by sending her key: bob may not save into A at all
    first = alice.save_reduction(w.observation["A"], payload | {"save_key": "shared-key-1"})
    bob = CatalogClient(service.url, token="tok-bob")
    with pytest.raises(Exception, match="proprietary"):
        bob.save_reduction(w.observation["A"], payload | {"save_key": "shared-key-1"})
    assert [r["id"] for r in _recorded(catalog, "shared-key-1")] == [first["reduction_id"]]
