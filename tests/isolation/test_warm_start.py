"""The pre-warmed interpreter (``hcdc.warmstart``) tried as an attacker.

PIs' servers and kernels are forks of one root process (the server zygote) that imported the
Jupyter server, the kernel and the science once. A fork shares memory, so this is where a PI could
find what belongs to the hub or to another PI. Tried from alice's own kernel, after bob's server and
kernel were started from the same zygote:

* the zygote's socket is root's alone: alice cannot connect to it (nor reach its folder);
* alice's server and kernel were really forked (the test fails if the spawner fell back to the
  ordinary start, which would make the rest vacuous), run as her account with her groups only, and
  cannot become root again;
* the memory of every process of alice's (server, kernel zygote, kernel) is read back from
  ``/proc/<pid>/mem`` and holds neither bob's hub token nor the hub's secrets (the cookie secret,
  the test's admin token); their environments hold nothing of the hub's. The same scan finds
  alice's own token where it must be (the control that the scan can see a secret).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ..test_hub_access import ADMIN_TOKEN, hub, login_spawn_kernel  # noqa: F401 - the real-hub fixture

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

#: run by alice's kernel as a fresh process of hers (so that the secrets it looks for, which it decodes,
#: are in no process it scans): her processes, what they are, whether the secrets are in their memory
SCAN = r"""
import json, os, socket, sys
P = json.loads(sys.stdin.read())
needles = {name: bytes.fromhex(value) for name, value in P["needles"].items()}
me = os.getuid()
report = {"uid": me, "groups": sorted(os.getgroups()), "kernel_pid": os.getppid(), "processes": {}}
try:
    os.setuid(0)
    report["setuid0"] = "became root"
except PermissionError as exc:
    report["setuid0"] = f"refused: {exc}"
try:
    s = socket.socket(socket.AF_UNIX); s.connect(P["zygote"]); report["zygote"] = "CONNECTED"
except OSError as exc:
    report["zygote"] = f"{type(exc).__name__}: {exc}"
for pid in [p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]:
    try:
        if os.stat(f"/proc/{pid}").st_uid != me:
            continue
        cmdline = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        environ = open(f"/proc/{pid}/environ", "rb").read()
        status = dict(l.split(":\t", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":\t" in l)
    except OSError:
        continue
    found, scanned, errors = set(), 0, 0
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except (OSError, OverflowError, ValueError):
                errors += 1
                continue
            scanned += len(data)
            found.update(name for name, needle in needles.items() if needle in data)
    report["processes"][pid] = {
        "cmdline": cmdline[:200], "ppid": int(status.get("PPid", "0")), "scanned_mb": scanned / 2**20,
        "unreadable_regions": errors, "found": sorted(found),
        "environ_found": sorted(name for name, needle in needles.items() if needle in environ),
    }
print(json.dumps(report))
"""


def test_a_pi_finds_nothing_of_the_hub_or_of_another_pi_in_her_forked_processes(hub):  # noqa: F811
    _bob_login, bob_kernel, _ = login_spawn_kernel(hub, "bob")  # (a spawn waits for the zygote's imports)
    _alice_login, alice_kernel, _ = login_spawn_kernel(hub, "alice")
    try:
        state = next(Path(hub.root).rglob("warm/zygote.sock"), None)
        assert state is not None, "the hub has no warm-start zygote"
        sock_info, folder_info = os.stat(state), os.stat(state.parent)
        assert sock_info.st_uid == 0 and stat.S_IMODE(sock_info.st_mode) == 0o600
        assert folder_info.st_uid == 0 and stat.S_IMODE(folder_info.st_mode) == 0o700
        out, errors = bob_kernel.execute("import os; print(os.environ['JUPYTERHUB_API_TOKEN'])")
        assert not errors, errors
        bob_token = out.strip()
        assert len(bob_token) >= 16
        out, errors = alice_kernel.execute("import os; print(os.environ['JUPYTERHUB_API_TOKEN'])")
        assert not errors, errors
        alice_token = out.strip()
        cookie_secret = next(Path(hub.root).rglob("jupyterhub_cookie_secret")).read_bytes().strip()
        needles = {
            "bob's hub token": bob_token.encode().hex(),
            "the hub's admin token": ADMIN_TOKEN.encode().hex(),
            "the hub's cookie secret": cookie_secret.hex(),
            "alice's own token": alice_token.encode().hex(),  # the control: it must be found
        }
        code = (  # the kernel holds the secrets only hex-encoded; the scanner decodes them
            "import json, subprocess, sys\n"
            f"done = subprocess.run([sys.executable, '-c', {SCAN!r}], capture_output=True, text=True, "
            f"input={json.dumps({'needles': needles, 'zygote': str(state)})!r})\n"
            "print(done.stderr[-2000:] if done.returncode else done.stdout)\n"
        )
        out, errors = alice_kernel.execute(code)
        assert not errors, errors
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        alice_kernel.close()
        bob_kernel.close()

    import pwd

    account = pwd.getpwnam(hub.prefix + "alice")
    assert report["uid"] == account.pw_uid
    assert report["groups"] == sorted(os.getgrouplist(account.pw_name, account.pw_gid))
    assert report["setuid0"].startswith("refused"), report["setuid0"]
    assert report["zygote"].startswith("PermissionError"), report["zygote"]

    processes = report["processes"]
    kernel = processes[str(report["kernel_pid"])]
    # forked, not exec'd: the kernel's command line is the zygote's, its parent the kernel zygote, whose
    # parent is alice's server
    assert "hcdc.warmstart" in kernel["cmdline"], kernel
    kernel_zygote = processes[str(kernel["ppid"])]
    server = processes[str(kernel_zygote["ppid"])]
    assert "hcdc.warmstart" in server["cmdline"] and "hcdc.warmstart" in kernel_zygote["cmdline"]
    # the scan finds what is there: alice's own token, in her server's and her kernel's memory
    for process in (server, kernel):
        assert "alice's own token" in process["found"], process
    for pid, process in processes.items():
        assert process["scanned_mb"] > 10, (pid, process)  # the memory was really read
        assert set(process["found"]) <= {"alice's own token"}, (pid, process)
        # /proc/<pid>/environ of a fork is the zygote's clean start-up environment (os.environ is set in memory)
        assert process["environ_found"] == [], (pid, process)
