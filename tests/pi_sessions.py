"""Many PIs at once on one real hub while a campaign runs (issue 17 item 1).

Each PI, in a thread of their own and all starting together (a proposal deadline):

1. logs in with their password (the hub's login form, as a browser does);
2. starts their server through the hub's REST API (the system-users spawner: an OS account of their own);
3. starts an ``hcdc`` kernel (Jupyter server REST + websocket API);
4. builds the reduction panel (``ReductionPanel()``: the widgets and the science imported, their
   observations listed through the catalog service) — from the login to here is
   *login-to-usable-panel*, the figure the issue bounds;
5. loads their proprietary observation, runs the panel's default reduction and saves it;
6. tries another PI's observation, which must be refused.

The driver measures each phase from outside (wall clock) and the kernel reports the in-kernel
seconds of the panel, load, run and save. A sampler records the machine's used memory
(``MemTotal - MemAvailable``) every 0.5 s, and at the end of each session the memory of the PI's
processes (server and kernel: RSS and PSS, summed over the PI's uid) is read from ``/proc``.

Used by ``tests/test_pi_sessions.py`` (four PIs, in CI) and ``bench/bench_pi_sessions.py`` (ten).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .hubtest import wait_for_server

#: phases timed from outside, in order; ``usable`` is login-to-usable-panel
PHASES = ("login", "server", "kernel", "panel", "usable", "load", "run", "save", "total")

#: the cells a PI runs (``OBS`` their observation, ``OTHER`` another PI's proprietary one)
PANEL_CELL = r"""
import json, time
_t0 = time.perf_counter()
from hcdc_widgets import ReductionPanel
panel = ReductionPanel()
_panel_s = time.perf_counter() - _t0
print(json.dumps({"panel_s": _panel_s, "status": panel.message,
                  "mine": [value for _label, value in panel.observation.options]}))
"""

WORK_CELL = r"""
import json, time
_r = {}
_t = time.perf_counter(); panel.load(__OBS__); _r["load_s"] = time.perf_counter() - _t; _r["load"] = panel.message
_t = time.perf_counter(); panel.run(); _r["run_s"] = time.perf_counter() - _t; _r["run"] = panel.message
_t = time.perf_counter(); _saved = panel.save(); _r["save_s"] = time.perf_counter() - _t; _r["save"] = panel.message
_r["saved"] = {k: _saved[k] for k in ("reduction_id", "n_detections", "n_limits")} if _saved else None
_r["visible"] = sorted(o["id"] for o in panel.session.client.observations())
panel.load(__OTHER__); _r["other"] = panel.message
print(json.dumps(_r))
"""


@dataclass
class SessionResult:
    """One PI's session: seconds of each phase (outside), the kernel's report, memory, errors."""

    user: str
    seconds: dict[str, float] = field(default_factory=dict)
    kernel: dict = field(default_factory=dict)
    memory_mb: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class MemorySampler(threading.Thread):
    """The machine's used memory (MiB) every ``interval`` seconds until stopped."""

    def __init__(self, interval: float = 0.5):
        super().__init__(daemon=True)
        self.interval, self.samples, self._stop_event = interval, [], threading.Event()

    @staticmethod
    def used_mb() -> float:
        fields = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, value = line.split(":", 1)
            fields[name] = float(value.split()[0])
        return (fields["MemTotal"] - fields["MemAvailable"]) / 1024

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.samples.append(self.used_mb())
            self._stop_event.wait(self.interval)

    def stop(self) -> list[float]:
        self._stop_event.set()
        self.join(5)
        return self.samples


def memory_of_uid(uid: int) -> dict[str, float]:
    """RSS and PSS (MiB) summed over the processes of ``uid``, and how many there are."""
    rss = pss = 0.0
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            rollup = Path(f"/proc/{entry}/smaps_rollup").read_text()
        except OSError:  # the process ended meanwhile
            continue
        count += 1
        for line in rollup.splitlines():
            if line.startswith("Rss:"):
                rss += float(line.split()[1]) / 1024
            elif line.startswith("Pss:"):
                pss += float(line.split()[1]) / 1024
    return {"rss": rss, "pss": pss, "processes": count}


def run_session(hub, user: str, password: str, observation: int, other: int, *, login_cls, kernel_cls, uid_of):
    """One PI's session (see module docstring); never raises: errors go into the result."""
    result = SessionResult(user)
    marks = {"start": time.perf_counter()}
    kernel = None
    try:
        login = login_cls(hub, user, password)
        marks["login"] = time.perf_counter()
        if not login.ok:
            raise RuntimeError(f"login refused: {login.response.status_code}")
        response = login.api("POST", f"users/{user}/server")
        if response.status_code not in (201, 202):
            raise RuntimeError(f"server not started: {response.status_code} {response.text[:200]}")
        wait_for_server(lambda: login.api("GET", f"users/{user}").json(), user, 300)
        marks["server"] = time.perf_counter()
        kernel = kernel_cls(hub, user, login.new_token())
        kernel.wait_ready()
        marks["kernel"] = time.perf_counter()
        out, errors = kernel.execute(PANEL_CELL)
        marks["usable"] = time.perf_counter()
        if errors:
            raise RuntimeError(f"panel cell: {errors[0].get('ename')}: {errors[0].get('evalue')}")
        result.kernel.update(json.loads(out.strip().splitlines()[-1]))
        out, errors = kernel.execute(WORK_CELL.replace("__OBS__", str(observation)).replace("__OTHER__", str(other)))
        marks["end"] = time.perf_counter()
        if errors:
            raise RuntimeError(f"work cell: {errors[0].get('ename')}: {errors[0].get('evalue')}")
        result.kernel.update(json.loads(out.strip().splitlines()[-1]))
        result.memory_mb = memory_of_uid(uid_of(user))
    except Exception as exc:  # reported, never raised: one PI's failure must not hide the others'
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        if kernel is not None:
            kernel.close()
    order = ["start", "login", "server", "kernel", "usable", "end"]
    present = [m for m in order if m in marks]
    for previous, mark in zip(present, present[1:]):
        result.seconds[mark] = marks[mark] - marks[previous]
    if "usable" in marks:
        result.seconds["panel"] = result.seconds.pop("usable")
        result.seconds["usable"] = marks["usable"] - marks["start"]
    if "end" in marks:
        result.seconds.pop("end")
        for key in ("load", "run", "save"):
            result.seconds[key] = result.kernel.get(f"{key}_s", float("nan"))
        result.seconds["total"] = marks["end"] - marks["start"]
    return result


def quantiles(values: list[float]) -> dict[str, float]:
    array = np.asarray([v for v in values if v == v], dtype=float)
    if not array.size:
        return {"n": 0}
    return {
        "n": int(array.size),
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "max": float(array.max()),
    }


def summarise(results: list[SessionResult], memory_samples: list[float], baseline_mb: float) -> dict:
    """The report: per phase p50/p95/max over the sessions, memory per PI, the machine's peak."""
    ok = [r for r in results if r.error is None]
    return {
        "pis": len(results),
        "succeeded": len(ok),
        "errors": {r.user: r.error for r in results if r.error},
        "seconds": {phase: quantiles([r.seconds.get(phase, float("nan")) for r in ok]) for phase in PHASES},
        "panel_in_kernel_s": quantiles([r.kernel.get("panel_s", float("nan")) for r in ok]),
        "memory_per_pi_mb": {
            "rss": quantiles([r.memory_mb.get("rss", float("nan")) for r in ok]),
            "pss": quantiles([r.memory_mb.get("pss", float("nan")) for r in ok]),
        },
        "machine_used_mb": {
            "before": baseline_mb,
            "peak": max(memory_samples, default=baseline_mb),
            "peak_increase": max(memory_samples, default=baseline_mb) - baseline_mb,
        },
        "sessions": [
            {"user": r.user, "seconds": r.seconds, "memory_mb": r.memory_mb, "error": r.error} for r in results
        ],
    }


def run_all(hub, users: dict[str, tuple[str, int, int]], *, login_cls, kernel_cls, uid_of) -> tuple[list, dict]:
    """Every PI at once (a barrier releases them together); (results, summary)."""
    sampler = MemorySampler()
    baseline = MemorySampler.used_mb()
    sampler.start()
    barrier = threading.Barrier(len(users))
    results: dict[str, SessionResult] = {}

    def one(user: str, password: str, observation: int, other: int) -> None:
        barrier.wait()
        results[user] = run_session(
            hub, user, password, observation, other, login_cls=login_cls, kernel_cls=kernel_cls, uid_of=uid_of
        )

    threads = [threading.Thread(target=one, args=(u, *v), name=f"pi-{u}") for u, v in users.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    samples = sampler.stop()
    ordered = [results[u] for u in users]
    return ordered, summarise(ordered, samples, baseline)
