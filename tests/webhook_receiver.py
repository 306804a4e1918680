"""A real HTTP webhook receiver on 127.0.0.1 for the alerting tests (imported as ``webhook_receiver``).

apprise's ``json://127.0.0.1:PORT/path`` URLs POST ``{"title", "message", "type", ...}`` here; every request body is
kept, in order, so a test can assert exactly how many notifications arrived.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    def url(self, path: str = "alerts") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"


@contextmanager
def webhook_receiver() -> Iterator[Receiver]:
    """A receiver on a free port, shut down (and its port released) when the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = Receiver(port=server.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            receiver.received.append({"path": self.path, **json.loads(body or b"{}")})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
