"""The catalog service under a mixed read load through a real hub: no error, latencies reported.

50 concurrent clients (alice's and bob's tokens) for ``HCDC_LOAD_SECONDS`` (10 s here; the
benchmark ``bench/bench_service_load.py`` runs 60 s); the hub's own API is timed meanwhile.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .load import ClientPlan, run_load
from .test_hub_access import PASSWORDS, Login, hub  # noqa: F401 - the module-scoped real-hub fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_fifty_clients_read_the_catalog_without_one_error(hub):  # noqa: F811
    clients = int(os.environ.get("HCDC_LOAD_CLIENTS", "50"))
    seconds = float(os.environ.get("HCDC_LOAD_SECONDS", "10"))
    world = hub.world
    plans = []
    for name, own, foreign in (("alice", "A", "B"), ("bob", "B", "A")):
        login = Login(hub, name, PASSWORDS[name])
        assert login.ok, login.response.status_code
        token = login.new_token()
        plans.append(
            ClientPlan(
                token=token,
                own_observations=(world.observation[own], world.observation["C"]),  # C is public
                own_products=(
                    (world.product[own], world.product_sha256[own]),
                    (world.product["C"], world.product_sha256["C"]),
                ),
                foreign_observations=(world.observation[foreign],),
            )
        )
    report = run_load(hub.url, hub.service_url, [plans[i % 2] for i in range(clients)], seconds)
    summary = report.summary()
    print(
        "\nservice load:",
        json.dumps({k: summary[k] for k in ("requests", "requests_per_second", "all_ms", "hub_api_ms")}),
    )
    if os.environ.get("HCDC_LOAD_REPORT"):
        Path(os.environ["HCDC_LOAD_REPORT"]).write_text(json.dumps(summary, indent=1))
    assert summary["errors"] == 0, summary["first_errors"]
    assert summary["requests"] >= clients, summary  # every client was served, more than once on average
    assert set(summary["by_kind_ms"]) == {"list", "detail", "file", "children", "foreign"}
    assert summary["hub_api_ms"]["n"] >= seconds / 2  # the hub answered all along (probed every 0.5 s)
    assert summary["hub_api_ms"]["p95"] < 2000, summary["hub_api_ms"]  # and stayed responsive
