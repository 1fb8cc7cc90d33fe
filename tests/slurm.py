"""Start and stop a real one-node SLURM cluster (slurmctld + slurmd + munged) for the tests.

Debian's slurm-wlm and munge must be installed (CI installs them); otherwise the
tests that need SLURM skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = """\
ClusterName=hcdc-test
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MpiDefault=none
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=hcdc Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why SLURM cannot run here (None when it can)."""
    for tool in ("slurmctld", "slurmd", "munged", "sbatch", "sinfo"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"{tool} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd needs root"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """A one-node SLURM; ``start()`` returns when the node is idle."""

    def __init__(self):
        self.state = Path(tempfile.mkdtemp(prefix="hcdc-slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.state / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self.processes: list[subprocess.Popen] = []

    def _munge(self) -> None:
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
            return
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["/usr/sbin/mungekey", "--create"], check=False, capture_output=True)
            subprocess.run(["chown", "munge:munge", str(key)], check=False)
        for folder in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(folder).mkdir(parents=True, exist_ok=True)
            subprocess.run(["chown", "-R", "munge:munge", folder], check=False)
        subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, capture_output=True)

    def start(self, timeout: float = 60.0) -> "SlurmCluster":
        self._munge()
        (self.state / "ctld").mkdir()
        (self.state / "d").mkdir()
        memory = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
        self.conf.write_text(
            CONF.format(
                host=self.host,
                state=self.state,
                ctld_port=_free_port(),
                d_port=_free_port(),
                cpus=os.cpu_count() or 1,
                memory=memory,
            )
        )
        self.processes.append(
            subprocess.Popen(
                ["slurmctld", "-D", "-f", str(self.conf)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        time.sleep(1.0)
        self.processes.append(
            subprocess.Popen(
                ["slurmd", "-D", "-f", str(self.conf)],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip() in ("idle", "mixed"):
                return self
            time.sleep(0.5)
        logs = "\n".join(p.read_text()[-2000:] for p in self.state.glob("*.log"))
        self.stop()
        raise RuntimeError(f"SLURM did not come up in {timeout:.0f} s:\n{logs}")

    def stop(self) -> None:
        subprocess.run(["scancel", "--user=root"], env=self.env, capture_output=True)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        shutil.rmtree(self.state, ignore_errors=True)
