"""A mixed read workload on the catalog service through the hub, and the hub's latency meanwhile.

``clients`` threads, each with its own HTTP session and a PI's token, issue for ``seconds``:
listings of their observations (40 %), one observation's details (25 %), a product file download
(20 %, checked against its SHA-256), an observation's raw files, products, detections or limits
(10 %), and another PI's
observation (5 %, which must be refused with 403/404). Any other status, a wrong checksum, a
timeout or a connection error is an error. A probe thread times ``GET /hub/api/`` every 0.5 s.

Used by ``tests/test_service_load.py`` (scaled down, in CI) and ``bench/bench_service_load.py``.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import requests


@dataclass(frozen=True)
class ClientPlan:
    """What one PI may read and what she may not."""

    token: str
    own_observations: tuple[int, ...]
    own_products: tuple[tuple[int, str], ...]  # (product id, sha256)
    foreign_observations: tuple[int, ...]


@dataclass
class LoadReport:
    clients: int
    seconds: float
    requests: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    hub_latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)

    @staticmethod
    def _quantiles(values: list[float]) -> dict[str, float]:
        if not values:
            return {"n": 0}
        array = np.asarray(values)
        return {
            "n": int(array.size),
            "p50": float(np.percentile(array, 50)),
            "p95": float(np.percentile(array, 95)),
            "p99": float(np.percentile(array, 99)),
            "max": float(array.max()),
        }

    def summary(self) -> dict:
        every = [v for values in self.latencies_ms.values() for v in values]
        return {
            "clients": self.clients,
            "seconds": self.seconds,
            "requests": self.requests,
            "requests_per_second": self.requests / self.seconds if self.seconds else 0.0,
            "errors": len(self.errors),
            "first_errors": self.errors[:5],
            "statuses": dict(self.statuses),
            "all_ms": self._quantiles(every),
            "by_kind_ms": {kind: self._quantiles(values) for kind, values in sorted(self.latencies_ms.items())},
            "hub_api_ms": self._quantiles(self.hub_latencies_ms),
        }


KINDS = (("list", 0.40), ("detail", 0.25), ("file", 0.20), ("children", 0.10), ("foreign", 0.05))


def run_load(hub_url: str, service_url: str, plans: list[ClientPlan], seconds: float, seed: int = 0) -> LoadReport:
    """Run ``len(plans)`` clients for ``seconds``; returns the report (errors listed, never raised)."""
    report = LoadReport(clients=len(plans), seconds=seconds)
    lock = threading.Lock()
    stop = threading.Event()
    kinds, weights = zip(*KINDS)

    def record(kind: str, ms: float, status: int | None, error: str | None) -> None:
        with lock:
            report.requests += 1
            report.latencies_ms.setdefault(kind, []).append(ms)
            report.statuses[str(status)] += 1
            if error:
                report.errors.append(error)

    def client(index: int, plan: ClientPlan) -> None:
        rng = random.Random(seed * 1000 + index)
        http = requests.Session()
        http.headers["Authorization"] = f"token {plan.token}"
        while not stop.is_set():
            kind = rng.choices(kinds, weights)[0]
            if kind == "list":
                path, allowed = "api/observations", {200}
            elif kind == "detail":
                path, allowed = f"api/observations/{rng.choice(plan.own_observations)}", {200}
            elif kind == "children":
                child = rng.choice(("raw_files", "products", "detections", "detection_limits"))
                path, allowed = f"api/observations/{rng.choice(plan.own_observations)}/{child}", {200}
            elif kind == "file":
                product, sha = rng.choice(plan.own_products)
                path, allowed = f"api/products/{product}/file", {200}
            else:
                path, allowed = f"api/observations/{rng.choice(plan.foreign_observations)}", {403, 404}
            started = time.perf_counter()
            status, error = None, None
            try:
                response = http.get(service_url + path, timeout=30)
                status = response.status_code
                if status not in allowed:
                    error = f"{kind} {path}: HTTP {status} {response.text[:120]}"
                elif kind == "file" and hashlib.sha256(response.content).hexdigest() != sha:
                    error = f"{kind} {path}: content differs from its SHA-256"
            except requests.RequestException as exc:
                error = f"{kind} {path}: {type(exc).__name__}: {exc}"
            record(kind, 1000 * (time.perf_counter() - started), status, error)

    def hub_probe() -> None:
        while not stop.wait(0.5):
            started = time.perf_counter()
            try:
                requests.get(f"{hub_url}hub/api/", timeout=30).raise_for_status()
                report.hub_latencies_ms.append(1000 * (time.perf_counter() - started))
            except requests.RequestException as exc:
                with lock:
                    report.errors.append(f"hub api: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=client, args=(i, plan), daemon=True) for i, plan in enumerate(plans)]
    threads.append(threading.Thread(target=hub_probe, daemon=True))
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    return report
