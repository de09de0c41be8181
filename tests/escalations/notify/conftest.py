"""A small HTTP server on 127.0.0.1 standing in for a chat service's webhook endpoint: it records every POST and
answers what the test scripts (a status and headers per request, the last answer repeating)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Remote:
    answers: list[tuple[int, dict]] = field(default_factory=lambda: [(200, {})])
    requests: list[dict] = field(default_factory=list)
    url: str = ""

    def answer(self) -> tuple[int, dict]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]

    @property
    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.requests]


@pytest.fixture
def remote(settings) -> Iterator[Remote]:
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # it listens on loopback
    settings.WEBHOOK_READ_TIMEOUT = settings.WEBHOOK_CONNECT_TIMEOUT = 2
    state = Remote()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (the http.server API)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status, headers = state.answer()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(b"1" if status < 300 else b"slow down" if status == 429 else b"broken")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/webhookb2/abc/IncomingWebhook/def"
    yield state
    server.shutdown()
    server.server_close()
