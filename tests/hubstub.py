"""A stub of the hub's ``/hub/api/user`` for services tested without a hub: known tokens -> user models.

Known tokens (``TOKENS``) get a user model with the catalog service's scope; anything else gets the
403 the hub answers for an expired or unknown token.
"""

from __future__ import annotations

import asyncio
import threading

TOKENS = {"tok-alice": "alice", "tok-bob": "bob", "tok-nobody": "nobody", "tok-carol": "carol"}
SCOPE = "access:services!service=hcdc-catalog"


def hub_user_handler():
    """The tornado handler class of ``/hub/api/user``."""
    from tornado import web

    class HubUser(web.RequestHandler):
        def get(self):
            token = self.request.headers.get("Authorization", "").removeprefix("token ").strip()
            if token not in TOKENS:
                self.set_status(403)
                self.finish({"status": 403, "message": "token invalid or expired"})
                return
            self.finish(
                {"kind": "user", "name": TOKENS[token], "admin": False, "groups": [], "scopes": [SCOPE, "self"]}
            )

    return HubUser


def serve_hub_stub(port: int) -> None:
    """Serve the stub on 127.0.0.1:``port`` in a daemon thread (returns once it listens)."""
    from tornado import web

    ready = threading.Event()

    def serve():
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        web.Application([(r"/hub/api/user", hub_user_handler())]).listen(port, "127.0.0.1")
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(10)
