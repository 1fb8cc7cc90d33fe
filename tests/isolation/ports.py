"""Attack scripts for every TCP port the platform listens on (run as a PI, from their kernel).

:data:`PORT_SWEEP` runs in a child of PI A's kernel. For each port it starts
:data:`PORT_ATTACK` in a process of its own, bounded by a hard timeout (a port that
speaks another protocol may never answer a handshake: it must not stall the sweep),
several ports at a time. Each attempt, if it succeeded, would create
``/tmp/hcdc-pwned-<token>-<port>-<how>`` as the account of whatever process runs it, so the
test decides from the files (and their owners) that appeared, not only from the
answers the script saw:

* dask: a ``distributed.Client`` over ``tcp://`` and over ``tls://`` with credentials of
  its own, then ``run``/``run_on_scheduler``/``submit``; and the raw ``run`` handler
  through ``distributed.core.rpc`` (workers and nannies answer it without a scheduler);
* Jupyter kernels (ZMQ): an ``execute_request`` unsigned, and one signed with a key of
  its own, sent to every port that greets with the ZMTP signature;
* HTTP: ``POST api/kernels`` at the root, under ``/user/<B>/`` and under the services'
  prefixes with A's own token; the proxy's ``GET /api/routes``; dask's HTTP pages (scheduler
  JSON, worker logs, metrics, its proxy to the workers).
"""

#: one port: argv = port, token, other user's hub name, A's API token (may be empty)
PORT_ATTACK = r"""
import asyncio, faulthandler, json, os, socket, sys, uuid
faulthandler.dump_traceback_later(45, exit=True)  # a hang shows where it hangs, then the sweep goes on
port, token, other, api_token = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
address = f"127.0.0.1:{port}"
R = {}

def pwn_path(how):
    return f"/tmp/hcdc-pwned-{token}-{port}-{how}"

def payload(how):
    path = pwn_path(how)
    def pwn():
        import os
        with open(path, "w") as handle:
            handle.write(str(os.getuid()))
        return os.getuid()
    return pwn

# what does the port speak? ZMQ greets at once with its signature; HTTP answers a request; dask
# (tcp or tls) answers neither
def probe(request, wait=5.0):
    # a loaded machine may send a ZMQ greeting late: waiting too little would take a kernel's port
    # for a dask one, and a dask client against a ZMQ peer can hang past its timeouts
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as connection:
            connection.settimeout(wait)
            if request:
                connection.sendall(request)
            received = b""
            try:
                while len(received) < 10:  # the ZMTP signature is 10 bytes; HTTP answers more
                    chunk = connection.recv(16)
                    if not chunk:
                        break
                    received += chunk
            except (socket.timeout, ConnectionError):
                pass
            return received
    except OSError as exc:
        R["connect"] = f"refused: {type(exc).__name__}"
        return None
greeting = probe(b"")
if greeting == b"":  # silent: a dask server, or a ZMQ peer on a loaded machine greeting late
    greeting = probe(b"", wait=20.0)
R["zmq"] = bool(greeting) and greeting[:1] == b"\xff" and greeting[9:10] == b"\x7f"
R["http"] = not R["zmq"] and greeting is not None and (probe(b"GET / HTTP/1.0\r\n\r\n") or b"").startswith(b"HTTP/")

if R["zmq"]:
    import zmq
    from jupyter_client.session import Session
    context = zmq.Context()
    for how, key in (("unsigned", b""), ("ownkey", uuid.uuid4().hex.encode())):
        session = Session(key=key, username="attacker")
        code = f"open({pwn_path('zmq-' + how)!r}, 'w').write(str(__import__('os').getuid()))"
        message = session.msg("execute_request", {"code": code, "silent": False, "store_history": False,
                                                  "user_expressions": {}, "allow_stdin": False,
                                                  "stop_on_error": True})
        sock = context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # a DEALER's send blocks until a peer is connected: a port whose ZMTP handshake never completes
        # (another account's kernel) hung the probe for its 45 s; undeliverable within 5 s is a refusal
        sock.setsockopt(zmq.SNDTIMEO, 5000)
        sock.connect(f"tcp://{address}")
        try:
            session.send(sock, message)
            answered = sock.poll(1500)
            R[f"zmq_{how}"] = "answered" if answered else "no answer"
        except Exception as exc:
            R[f"zmq_{how}"] = f"refused: {type(exc).__name__}"
        finally:
            sock.close(0)
    context.term()
elif greeting is not None and not R["http"]:
    from distributed import Client
    from distributed.core import rpc
    from distributed.protocol.pickle import dumps as pickle_dumps
    from distributed.security import Security
    for scheme in ("tcp", "tls"):
        security = Security.temporary() if scheme == "tls" else None
        try:
            with Client(f"{scheme}://{address}", timeout="3s", security=security) as client:
                R[f"dask_{scheme}"] = "CONNECTED"
                for name, call in (("run_on_scheduler", lambda: client.run_on_scheduler(payload(scheme + "-sched"))),
                                   ("run", lambda: client.run(payload(scheme + "-run"))),
                                   ("submit", lambda: client.submit(payload(scheme + "-submit"), pure=False)
                                    .result(timeout=5))):
                    try:
                        R[f"dask_{scheme}_{name}"] = call()
                    except Exception as exc:
                        R[f"dask_{scheme}_{name}"] = f"refused: {type(exc).__name__}"
        except Exception as exc:
            R[f"dask_{scheme}"] = f"refused: {type(exc).__name__}"

        async def raw_run():
            args = (security or Security()).get_connection_args("client")
            remote = rpc(f"{scheme}://{address}", connection_args=args, timeout=3)
            try:
                return await remote.run(function=pickle_dumps(payload(scheme + "-rpc")))
            finally:
                await remote.close_rpc()
        try:
            R[f"rpc_{scheme}"] = str(asyncio.run(asyncio.wait_for(raw_run(), 6)))[:120]
        except BaseException as exc:
            R[f"rpc_{scheme}"] = f"refused: {type(exc).__name__}"

if R["http"]:
    import requests
    headers = {"Authorization": f"token {api_token}"} if api_token else {}
    for base in ("/", f"/user/{other}/", "/services/hcdc-catalog/", "/services/hcdc-dashboards/"):
        try:
            response = requests.post(f"http://{address}{base}api/kernels", headers=headers, json={}, timeout=4,
                                     allow_redirects=False)
            R[f"http_kernels{base}"] = response.status_code
            if response.status_code == 201:  # a kernel of someone else's: the test fails on this
                R[f"http_kernels{base}_body"] = response.text[:200]
        except Exception as exc:
            R[f"http_kernels{base}"] = f"refused: {type(exc).__name__}"
    # the proxy's routing table, and the dask HTTP pages (workers' logs, task names, a proxy to the workers)
    for path in ("/api/routes", "/json/identity.json", "/info/main/workers.html", "/metrics", "/proxy/8786/127.0.0.1/"):
        try:
            R[f"http_get{path}"] = requests.get(f"http://{address}{path}", timeout=4, allow_redirects=False).status_code
        except Exception as exc:
            R[f"http_get{path}"] = f"refused: {type(exc).__name__}"
print("PORT" + json.dumps(R, default=str))
"""

#: in a child of A's kernel: every port, in parallel, each bounded (P: ports, token, other, attack)
PORT_SWEEP = r"""
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor

def attack(port):
    try:
        done = subprocess.run([sys.executable, "-c", P["attack"], str(port), P["token"], P["other"],
                               os.environ.get("JUPYTERHUB_API_TOKEN", "")],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as exc:
        return {"timeout": "no answer within 60 s (killed)", "stderr": (exc.stderr or b"")[-1500:]}
    if "PORT" not in done.stdout:
        return {"failed": done.stderr[-1500:]}
    return json.loads(done.stdout.rsplit("PORT", 1)[1])

with ThreadPoolExecutor(6) as pool:
    R["ports"] = dict(zip([str(p) for p in P["ports"]], pool.map(attack, P["ports"])))
"""
