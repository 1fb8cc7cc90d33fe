"""Pre-warmed interpreters for PIs' servers and kernels (issue 17 item 1: ten PIs at once).

A PI's first minute used to be spent importing: the Jupyter server (~2.3 s of CPU), the kernel
(~1 s) and the widgets with the science (~2.5 s) — about 6 s of CPU per PI, 60 s for ten PIs on
two cores. Here they are imported **once**, by a *zygote*, and every PI's server and kernel is a
``fork()`` of it: the imported modules are shared copy-on-write, and a server or kernel starts in
a fraction of a second of CPU.

Two levels:

``serve`` — the **server zygote**, run as root by the hub (it must become any PI). It imports
:data:`PRELOAD`, then listens on a Unix socket in the hub's 0700 state folder; it accepts only
root (``SO_PEERCRED``). For each connection it forks at once and **never reads the request
itself**: a PI's token and environment are read by the child, after the fork, so they are never
in the memory the next PI's process inherits. The child reads the request, checks the account
(an existing OS account, uid >= ``min_uid``, never root), becomes it exactly as JupyterHub's
``set_user_setuid`` does (groups, gid, uid; a check that root cannot be regained), takes the
spawner's environment *in place of* the zygote's, the private umask and the home as working
folder, answers with its pid and runs ``jupyterhub-singleuser``. The zygote's own environment is
a clean one made by the hub (no secret), so ``/proc/<pid>/environ`` of a forked server shows
nothing of the hub's.

**kernel zygote** — before it starts the server, the PI's child forks once more: a process of
the PI's own, holding the same imports, that forks the PI's kernels on request
(:class:`WarmProvisioner`, a ``jupyter_client`` kernel provisioner named ``hcdc-warm``, asks it
over a socket pair). A kernel started anywhere else (papermill, the dashboards, a server not
started by the zygote) is launched the ordinary way by the same provisioner.

Anything that does not fit falls back to the ordinary path: no zygote socket (not started yet,
or ``warm_start: false``) → the spawner's ``Popen``; a kernel command that is not
``python -m ipykernel_launcher`` → ``exec`` of that command in the forked child.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import struct
import sys
import threading
from pathlib import Path
from typing import Any

#: what the server zygote imports before it forks (the Jupyter server, JupyterLab, the kernel,
#: the widgets and the science behind the reduction panel)
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyterlab",
    "jupyter_server.serverapp",
    "notebook",
    "jupyter_lsp",
    "jupyter_server_terminals",
    "jupyterlab_jupytext",
    "voila.server_extension",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "hcdc_widgets",
    "hcdc.client",
    "reduction.postproc.pipeline",
)
#: environment variable naming, in a server forked by the zygote, the socket of its kernel zygote. The
#: zygote runs as ``python -m hcdc.warmstart``: what it sets is ``__main__``'s, while the provisioner
#: imports ``hcdc.warmstart`` anew, so the socket reaches :func:`fork_kernel` through its number here
#: (a module global alone left every kernel to the ordinary launch; the isolation suite caught it).
KERNELS_FD = "HCDC_WARM_KERNELS_FD"
#: the provisioner's name (entry point ``jupyter_client.kernel_provisioners``)
PROVISIONER = "hcdc-warm"

_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4


# --- framing: a 4-byte length, then JSON --------------------------------------------------------


def send_message(sock: socket.socket, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def recv_message(sock: socket.socket) -> dict[str, Any]:
    head = _recv_exactly(sock, 4)
    (size,) = struct.unpack("!I", head)
    if size > 16 * 1024 * 1024:
        raise ValueError(f"message of {size} bytes refused")
    return json.loads(_recv_exactly(sock, size))


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = sock.recv(left)
        if not chunk:
            raise ConnectionError("the other end closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _prctl(option: int, value: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: nothing to do
        pass


def _reap(_signum=None, _frame=None) -> None:
    """Collect every finished child (the zygotes' SIGCHLD handler): no zombie is left."""
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _detach_stdin() -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


# --- the server zygote (root) --------------------------------------------------------------------


def preload(modules=PRELOAD) -> list[str]:
    """Import ``modules``; returns those that could not be imported (logged, not fatal)."""
    import importlib

    missing = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional extension missing costs only its warm start
            missing.append(f"{name}: {type(exc).__name__}: {exc}")
    return missing


def serve(socket_path: str | Path, min_uid: int = 1000) -> None:
    """Run the server zygote: preload, listen on ``socket_path``, fork a server per connection."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # dies with the hub
    os.umask(0o077)
    missing = preload()
    if missing:
        print(f"HC-DC warm start: not preloaded: {'; '.join(missing)}", file=sys.stderr, flush=True)
    import gc

    gc.collect()
    gc.freeze()  # the preloaded objects stay out of the children's collections (their pages stay shared)
    path = Path(socket_path)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path) + ".new")
    os.chmod(str(path) + ".new", 0o600)
    listener.listen(64)
    os.rename(str(path) + ".new", path)  # the socket appears only once the zygote is ready
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGTERM, lambda *_: (path.unlink(missing_ok=True), os._exit(0)))
    print(f"HC-DC warm start: server zygote ready on {path}", file=sys.stderr, flush=True)
    while True:
        connection, _ = listener.accept()
        pid = os.fork()
        if pid == 0:
            listener.close()
            code = 1
            try:
                code = _serve_one(connection, min_uid)
            except BaseException as exc:  # the child must never return into the zygote's loop
                print(f"HC-DC warm start: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            finally:
                os._exit(code if isinstance(code, int) else 1)
        connection.close()  # the parent never reads a request (see module docstring)


def _peer_uid(connection: socket.socket) -> int:
    creds = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def become(username: str, min_uid: int) -> tuple[int, int, str]:
    """Drop every privilege for OS account ``username`` (as ``jupyterhub.spawner.set_user_setuid``).

    Refuses root, system accounts (uid < ``min_uid``) and unknown accounts; checks afterwards that
    root cannot be regained. Returns (uid, gid, home).
    """
    import pwd

    from hcdc.accounts import _switch

    account = pwd.getpwnam(username)
    uid, gid = account.pw_uid, account.pw_gid
    if uid == 0 or uid < min_uid:
        raise PermissionError(f"refusing to become {username!r} (uid {uid} < {min_uid})")
    _switch(account, os.getgrouplist(username, gid))  # the platform's one way to drop to an account
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise PermissionError(f"could not become {username!r}")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PermissionError("root could be regained after dropping privileges")
    _prctl(_PR_SET_DUMPABLE, 1)  # as after exec: the PI may inspect their own processes
    return uid, gid, account.pw_dir


def _serve_one(connection: socket.socket, min_uid: int) -> int:
    """In the forked child: read the request, become the PI, start the kernel zygote, run the server."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if _peer_uid(connection) != 0:
        connection.close()
        return 1
    request = recv_message(connection)
    os.setsid()
    _detach_stdin()
    _uid, _gid, home = become(request["user"], min_uid)
    os.umask(int(request.get("umask", 0o077)))
    os.chdir(request.get("cwd") or home)
    os.environ.clear()
    os.environ.update(request["env"])
    argv = list(request["argv"])
    _after_fork()
    if request.get("kernels", True):
        global _kernels_socket
        _kernels_socket = _start_kernel_zygote(connection)
        os.environ[KERNELS_FD] = str(_kernels_socket.fileno())
    send_message(connection, {"pid": os.getpid()})
    connection.close()
    sys.argv = argv
    from jupyterhub.singleuser import main

    result = main()
    return result if isinstance(result, int) else 0


# --- the kernel zygote (the PI's own) ------------------------------------------------------------


def _start_kernel_zygote(connection: socket.socket) -> socket.socket:
    """Fork the PI's kernel zygote; returns the server's end of their socket pair."""
    server_end, zygote_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        server_end.close()
        connection.close()
        code = 0
        try:
            _kernel_zygote(zygote_end)
        except BaseException:  # the server went away: the zygote ends
            code = 0
        finally:
            os._exit(code)
    zygote_end.close()
    return server_end


def _kernel_zygote(sock: socket.socket) -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # ends with its server
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        try:
            request = recv_message(sock)
        except ConnectionError:
            return
        pid = os.fork()
        if pid == 0:
            sock.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                code = _run_kernel(request)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0
            except BaseException as exc:
                print(f"HC-DC warm kernel: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        send_message(sock, {"pid": pid})


def is_ipykernel(argv: list[str]) -> bool:
    """Whether ``argv`` is ``<python> -m ipykernel_launcher ...`` (what the zygote may run in place)."""
    return len(argv) >= 3 and argv[1:3] == ["-m", "ipykernel_launcher"] and "python" in Path(argv[0]).name


def _after_fork() -> None:
    """What a fork shares but must not: numpy's global random state (``random`` reseeds itself)."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed()


def _run_kernel(request: dict[str, Any]) -> int:
    os.setsid()
    _detach_stdin()
    _after_fork()
    env, argv = request["env"], list(request["argv"])
    if request.get("cwd"):
        os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(env)
    if not is_ipykernel(argv):
        os.execvpe(argv[0], argv, env)
    sys.argv = [argv[0], *argv[3:]]
    from ipykernel import kernelapp

    app = kernelapp.IPKernelApp.instance()
    app.initialize(sys.argv[1:])
    _kernel_hooks()
    app.start()
    return 0


def _kernel_hooks() -> None:
    """What preloaded modules do at import only when a kernel already exists, done now that one does.

    ipywidgets registers its comm target (``jupyter.widget.control``) on import inside a kernel; imported
    by the zygote, before any kernel, it did not, and a browser's widget manager would wait for it forever.
    """
    widgets = sys.modules.get("ipywidgets")
    if widgets is not None:
        widgets._handle_ipython()


class ForkedProcess:
    """A ``Popen``-like handle on a kernel the kernel zygote forked (its child, not ours)."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                self.returncode = 0  # reaped by the kernel zygote; its status is not ours to read
            except PermissionError:  # pid reused by another account: ours is gone
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"kernel {self.pid} still running")
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


_kernels_lock = threading.Lock()
_kernels_socket: socket.socket | None = None


def fork_kernel(argv: list[str], env: dict[str, str], cwd: str | None) -> ForkedProcess | None:
    """Ask this server's kernel zygote for a kernel; ``None`` when there is none (ordinary launch)."""
    global _kernels_socket
    fd = os.environ.get(KERNELS_FD)
    if not fd:
        return None
    env = {k: v for k, v in env.items() if k != KERNELS_FD}
    with _kernels_lock:
        if _kernels_socket is None:
            _kernels_socket = socket.socket(fileno=int(fd))
        send_message(_kernels_socket, {"argv": argv, "env": env, "cwd": cwd})
        reply = recv_message(_kernels_socket)
    return ForkedProcess(int(reply["pid"]))


def _provisioner_class():
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    class WarmProvisioner(LocalProvisioner):
        """``LocalProvisioner`` that takes kernels from the server's kernel zygote when it has one."""

        async def launch_kernel(self, cmd: list[str], **kwargs: Any):
            import asyncio

            env = kwargs.get("env") or dict(os.environ)
            cwd = kwargs.get("cwd")
            try:
                process = await asyncio.to_thread(fork_kernel, list(cmd), dict(env), str(cwd) if cwd else None)
            except (OSError, ConnectionError, ValueError) as exc:
                self.log.warning("HC-DC warm kernel unavailable (%s): launching the ordinary way", exc)
                process = None
            if process is None:
                return await super().launch_kernel(cmd, **kwargs)
            self.process, self.pid, self.pgid = process, process.pid, process.pid
            self.cwd = cwd
            return self.connection_info

    return WarmProvisioner


def __getattr__(name: str):  # WarmProvisioner imports jupyter_client only when asked for
    if name == "WarmProvisioner":
        cls = _provisioner_class()
        globals()["WarmProvisioner"] = cls
        return cls
    raise AttributeError(name)


# --- the hub's side ------------------------------------------------------------------------------


def spawn(socket_path: str | Path, request: dict[str, Any], timeout: float = 30.0) -> int:
    """Ask the server zygote for a server (root only); returns its pid."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        send_message(sock, request)
        reply = recv_message(sock)
    return int(reply["pid"])


def clean_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The zygote's environment: nothing of the hub's (no token, no secret), only what imports need."""
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(extra or {})
    return env


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m hcdc.warmstart", description=__doc__.splitlines()[0])
    parser.add_argument("socket", help="Unix socket to listen on (in a 0700 folder of root's)")
    parser.add_argument("--min-uid", type=int, default=1000)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("the server zygote must run as root (it becomes each PI)")
    serve(args.socket, args.min_uid)


if __name__ == "__main__":
    main()
