"""The workers' metrics endpoint: Steerco's gauges (config.operations.collector) over HTTP, behind METRICS_TOKEN.

The worker's main process starts it (config/celery.py, worker_init) when METRICS_PORT is set; Prometheus scrapes
it on the internal network. prometheus_client renders the exposition; this only adds the bearer token check.
"""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from config.operations.access import metrics_enabled, scraper_authorized


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # one line per scrape would drown the worker's log
        pass


def metrics_app():
    from config.operations.collector import SteercoCollector

    registry = CollectorRegistry()
    registry.register(SteercoCollector())
    exposition = make_wsgi_app(registry)

    def app(environ, start_response):
        if not scraper_authorized(environ.get("HTTP_AUTHORIZATION", "")):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"), ("WWW-Authenticate", "Bearer")])
            return [b"A bearer token (METRICS_TOKEN) is required.\n"]
        return exposition(environ, start_response)

    return app


def serve(*, address: str, port: int) -> WSGIServer:
    """Serves in a daemon thread and returns the server (its `server_port` is the port when 0 was asked)."""
    if not metrics_enabled():
        raise ValueError("METRICS_PORT is set but METRICS_TOKEN is not: the metrics would be open to anyone.")
    server = make_server(address, port, metrics_app(), handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="steerco-metrics", daemon=True).start()
    return server
