"""Kernels forked from a pre-warmed kernel zygote (``hcdc.warmstart``) behave as ordinary kernels.

A fresh interpreter plays the PI's server as the server zygote's child does: it preloads the
modules, forks the kernel zygote, and starts kernels of the ``hcdc`` kernel spec through
jupyter_client (the spec's provisioner, ``hcdc-warm``, asks the zygote). Checked there:

* the kernel is a fork (its parent is the kernel zygote, not the "server");
* ipywidgets' comm target is registered (a browser's widget manager needs it; imported before
  any kernel existed, ipywidgets had not registered it — the bug this guards against);
* two forked kernels do not share numpy's random stream;
* an interrupt reaches the running cell, and a shut-down kernel is gone;
* without a kernel zygote the same provisioner launches an ordinary kernel.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SERVER = r"""
import json, os, sys, time, threading
from hcdc import warmstart
missing = warmstart.preload()
from jupyter_client.manager import KernelManager

class _NoConnection:
    def close(self):
        pass

report = {"missing": missing}
# as in a forked server: the socket reaches the provisioner's module through the environment only
zygote_socket = warmstart._start_kernel_zygote(_NoConnection())
os.environ[warmstart.KERNELS_FD] = str(zygote_socket.fileno())
assert warmstart._kernels_socket is None
zygote_pid = None

def start():
    km = KernelManager(kernel_name="hcdc")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    return km, kc

def run(kc, code, timeout=60):
    reply = kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: outputs.append(m))
    return reply["content"]

outputs = []
kernels = [start(), start()]
for i, (km, kc) in enumerate(kernels):
    pid = km.provisioner.pid
    stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    outputs.clear()
    content = run(kc, "import numpy, json\n"
        "from IPython import get_ipython\n"
        "print(json.dumps({'targets': sorted(get_ipython().kernel.comm_manager.targets),"
        " 'random': numpy.random.random(3).tolist(), 'pid': __import__('os').getpid()}))")
    text = "".join(m["content"].get("text", "") for m in outputs if m["msg_type"] == "stream")
    report[f"kernel{i}"] = {"provisioner": type(km.provisioner).__name__, "pid": pid, "ppid": int(stat[1]),
                            "status": content["status"], **json.loads(text.strip().splitlines()[-1])}
km, kc = kernels[0]
timer = threading.Timer(2.0, km.interrupt_kernel)
timer.start()
content = run(kc, "import time\ntime.sleep(30)")
report["interrupt"] = content.get("ename")
for km, kc in kernels:
    kc.stop_channels()
    km.shutdown_kernel(now=False)
time.sleep(0.5)
report["gone"] = [not os.path.exists(f"/proc/{report[f'kernel{i}']['pid']}") for i in range(2)]
report["server_pid"] = os.getpid()
os.environ.pop(warmstart.KERNELS_FD)
km, kc = start()
ppid = int(open(f"/proc/{km.provisioner.pid}/stat").read().rsplit(")", 1)[1].split()[1])
report["ordinary"] = {"provisioner": type(km.provisioner).__name__, "ppid_is_server": ppid == os.getpid()}
kc.stop_channels()
km.shutdown_kernel(now=True)
print("REPORT" + json.dumps(report))
"""


def test_forked_kernels_are_ordinary_kernels():
    done = subprocess.run([sys.executable, "-c", SERVER], capture_output=True, text=True, timeout=300)
    assert "REPORT" in done.stdout, done.stderr[-3000:]
    report = json.loads(done.stdout.rsplit("REPORT", 1)[1])
    assert report["missing"] == []
    first, second = report["kernel0"], report["kernel1"]
    for kernel in (first, second):
        assert kernel["provisioner"] == "WarmProvisioner" and kernel["status"] == "ok"
        assert kernel["ppid"] != report["server_pid"], "the kernel was not forked by the kernel zygote"
        assert "jupyter.widget.control" in kernel["targets"] and "jupyter.widget" in kernel["targets"]
    assert first["ppid"] == second["ppid"]  # the same kernel zygote
    assert first["random"] != second["random"]
    assert report["interrupt"] == "KeyboardInterrupt"
    assert report["gone"] == [True, True]
    assert report["ordinary"] == {"provisioner": "WarmProvisioner", "ppid_is_server": True}
