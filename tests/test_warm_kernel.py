"""The pipeline's warm kernel: reused between notebooks, reset in between, replaced after a failure.

Real papermill executions in the project's ``hcdc`` kernel (no mock): the
notebooks report the kernel's process id and check that nothing of the
previous notebook survives the reset.
"""

from __future__ import annotations

import json
import os
import threading
import time

import nbformat
import pytest

from hcdc.pipeline import runner


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "hcdc", "display_name": "HC-DC", "language": "python"}
    parameters = nbformat.v4.new_code_cell("fail = False\nout = ''")
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


BODY = """
import json, os, sys
leftover = [name for name in ("marker",) if name in globals()]
marker = 1
open(out, "w").write(json.dumps({"pid": os.getpid(), "leftover": leftover,
                                 "numpy_already_imported": "numpy" in sys.modules}))
import numpy
if fail:
    raise RuntimeError("deliberate failure")
"""


@pytest.fixture
def fresh_kernel():
    kernel = runner.warm_kernel()
    kernel.shutdown()
    yield kernel
    kernel.shutdown()


def test_kernel_is_reused_reset_and_replaced(tmp_path, fresh_kernel, monkeypatch):
    source = _notebook(tmp_path / "probe.ipynb", BODY)

    def run(i, fail=False, key=("a",)):
        out = tmp_path / f"out{i}.json"
        error = runner.execute_notebook(
            source, tmp_path / f"executed{i}.ipynb", "hcdc", {"fail": fail, "out": str(out)}, key=key
        )
        return error, json.loads(out.read_text())

    error, first = run(1)
    assert error is None and first["leftover"] == [] and not first["numpy_already_imported"]
    error, second = run(2)
    assert error is None
    assert second["pid"] == first["pid"]  # the same kernel ...
    assert second["leftover"] == []  # ... with the previous notebook's names gone
    assert second["numpy_already_imported"]  # ... and its imports kept (the point)
    error, third = run(3, fail=True)
    assert error is not None and "deliberate failure" in error
    assert third["pid"] == first["pid"]
    error, fourth = run(4)
    assert error is None and fourth["pid"] != first["pid"]  # a failure replaces the kernel
    error, fifth = run(5, key=("another catalog",))
    assert error is None and fifth["pid"] != fourth["pid"]  # another environment, another kernel
    monkeypatch.setattr(runner, "KERNEL_REUSE", 2)
    _, sixth = run(6, key=("another catalog",))
    _, seventh = run(7, key=("another catalog",))
    assert sixth["pid"] == fifth["pid"] and seventh["pid"] != fifth["pid"]  # bounded reuse
    executed = nbformat.read(tmp_path / "executed2.ipynb", as_version=4)
    assert executed.cells[0].execution_count == 1  # a new session: numbering as in a fresh kernel


def _heartbeat_threads() -> int:
    from jupyter_client.channels import HBChannel

    return sum(1 for t in threading.enumerate() if isinstance(t, HBChannel) and t.is_alive())


def test_a_serial_run_in_a_short_lived_thread_leaves_no_kernel_behind(tmp_path):
    """The serial campaign's end (``release_warm_kernel``) stops the thread's kernel and its client's threads.

    A kernel left to a finished thread kept its heartbeat thread and ZeroMQ sockets alive
    until they were finalised from another thread: the test process died in the garbage
    collector (CI, twice).
    """
    source = _notebook(tmp_path / "probe.ipynb", BODY)
    before = _heartbeat_threads()
    seen: dict = {}

    def serial_run():
        out = tmp_path / "out.json"
        seen["error"] = runner.execute_notebook(source, tmp_path / "executed.ipynb", "hcdc", {"out": str(out)})
        seen["pid"] = json.loads(out.read_text())["pid"]
        seen["heartbeats while running"] = _heartbeat_threads()
        runner.release_warm_kernel()
        seen["kernel after release"] = getattr(runner._WARM, "kernel", None)

    thread = threading.Thread(target=serial_run)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive() and seen["error"] is None
    assert seen["heartbeats while running"] == before + 1  # the probe sees the client it must stop
    assert seen["kernel after release"] is None
    assert _heartbeat_threads() == before
    # every kernel call ran on the thread's own loop: no jupyter_core runner thread was started for it
    assert not [t.name for t in threading.enumerate() if t.name.startswith(f"{thread.name} - ")]
    deadline = time.monotonic() + 10
    while _alive(seen["pid"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(seen["pid"]), "the kernel process outlived the release"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
