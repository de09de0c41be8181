"""Outbound HTTP to configured addresses (webhooks, pulls) reaches public addresses only, checked per connection."""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpcore
import httpx
import pytest

from governance import outbound

SETTING = "WEBHOOK_ALLOW_PRIVATE_NETWORKS"


@pytest.fixture
def server() -> Iterator[tuple[int, list[str]]]:
    """A loopback HTTP server: (its port, the paths it was asked for)."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the http.server API)
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1], asked
    httpd.shutdown()
    httpd.server_close()


def resolving(monkeypatch, *answers: list[str]) -> list[str]:
    """Makes every name resolve to the next of `answers` (the last repeats); returns the names asked for."""
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        asked.append(host)
        addresses = answers[min(len(asked), len(answers)) - 1]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),  # the cloud's metadata service
        ("0.0.0.0", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", False),  # IPv4-compatible (deprecated), as in http://[::127.0.0.1]/
        ("::8.8.8.8", False),  # ... of any address
        ("::", False),
        ("::ffff:0:a9fe:a9fe", False),  # IPv4-translated 169.254.169.254
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 of 10.0.0.1
    ],
)
def test_public_addresses(address, expected):
    assert outbound.public(ipaddress.ip_address(address)) is expected


def test_an_address_inside_our_network_is_refused_before_anything_is_sent(server, settings):
    port, asked = server
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with outbound.client(allow_setting=SETTING) as http, pytest.raises(outbound.Refused) as caught:
        http.get(f"http://127.0.0.1:{port}/secret")
    assert str(caught.value) == f"127.0.0.1 resolves to 127.0.0.1, a private or local address ({SETTING} is off)"
    assert asked == []


def test_an_ipv4_compatible_loopback_address_is_refused(server, settings):
    port, asked = server
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with outbound.client(allow_setting=SETTING) as http, pytest.raises(outbound.Refused, match="::7f00:1, a priv"):
        http.get(f"http://[::127.0.0.1]:{port}/secret")
    assert asked == []


def test_a_name_with_one_private_address_among_public_ones_is_refused(server, settings, monkeypatch):
    port, asked = server
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    resolving(monkeypatch, ["93.184.216.34", "127.0.0.1"])
    with outbound.client(allow_setting=SETTING) as http, pytest.raises(outbound.Refused, match="127.0.0.1, a priv"):
        http.get(f"http://hooks.example:{port}/")
    assert asked == []


def test_the_connection_goes_to_the_address_that_was_checked(server, settings, monkeypatch):
    """DNS rebinding: the name is public when checked and loopback a moment later. Only one answer is used."""
    port, asked = server
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    names = resolving(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    connected: list[str] = []

    def connect_tcp(self, host, port, *args, **kwargs):
        connected.append(host)
        raise httpcore.ConnectError("no internet in tests")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    with outbound.client(allow_setting=SETTING) as http, pytest.raises(httpx.ConnectError):
        http.get(f"http://rebind.example:{port}/")
    assert (names, connected, asked) == (["rebind.example"], ["93.184.216.34"], [])


def test_when_an_address_does_not_answer_the_next_one_is_tried(server, settings, monkeypatch):
    port, asked = server
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    monkeypatch.setattr(outbound, "public", lambda address: True)  # loopback stands in for two public addresses
    resolving(monkeypatch, ["127.0.0.2", "127.0.0.1"])  # nothing listens on 127.0.0.2
    with outbound.client(allow_setting=SETTING) as http:
        assert http.get(f"http://two.example:{port}/metrics").status_code == 200
    assert asked == ["/metrics"]


def test_an_unresolvable_name_is_refused_with_the_reason(settings, monkeypatch):
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = False

    def getaddrinfo(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with outbound.client(allow_setting=SETTING) as http, pytest.raises(outbound.Refused) as caught:
        http.get("https://nowhere.example/")
    assert str(caught.value) == "cannot resolve nowhere.example: Name or service not known"


def test_with_the_setting_on_private_addresses_are_reached(server, settings):
    port, asked = server
    settings.WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    with outbound.client(allow_setting=SETTING) as http:
        assert http.get(f"http://127.0.0.1:{port}/internal").status_code == 200
    assert asked == ["/internal"]
