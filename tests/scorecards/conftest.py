from __future__ import annotations

import json
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest


@dataclass
class Answer:
    status: int = 200
    body: bytes = b"[]"
    content_type: str = "application/json"
    delay: float = 0.0  # seconds before the answer starts
    declare_length: bool = True  # False: no Content-Length, the body ends when the connection closes
    location: str = ""  # a redirect's target


@dataclass
class JsonServer:
    """A local HTTP server for the http_json and spreadsheet connectors: answers are set per path, requests are
    recorded."""

    port: int = 0
    answers: dict[str, Answer] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path with query, headers)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, path: str, document: object = None, **options) -> None:
        """`document` is sent as JSON; pass body=b"..." for anything else."""
        if document is not None:
            options["body"] = json.dumps(document).encode()
        self.answers[path] = Answer(**options)


@pytest.fixture
def json_server(settings):
    settings.PULL_ALLOW_PRIVATE_NETWORKS = True  # the server listens on loopback
    state = JsonServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            state.requests.append((self.path, dict(self.headers)))
            answer = state.answers.get(urlsplit(self.path).path, Answer(status=404, body=b"{}"))
            time.sleep(answer.delay)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            if answer.location:
                self.send_header("Location", answer.location)
            if answer.declare_length:
                self.send_header("Content-Length", str(len(answer.body)))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            # The client may stop reading (a size limit, a timeout): that is what the test wants.
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(answer.body)
            self.close_connection = True

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
