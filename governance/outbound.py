"""HTTP to addresses that organizations configure (webhooks, data source pulls): public addresses only.

The address is checked where the connection is made, and the connection goes to the address that was checked.
Checking a name first and letting the client resolve it again would let a DNS answer change in between
(rebinding) and reach the cloud's metadata service or anything else inside our own network.
"""

from __future__ import annotations

import ipaddress
import socket

import httpcore
import httpx
from django.conf import settings

# IPv6 forms that carry an IPv4 address in their last 32 bits, which the address's own flags judge as IPv6 (a
# translator or the kernel may still deliver them to the IPv4 address inside): NAT64, its local-use prefix, and
# SIIT's IPv4-translated form. IPv4-mapped and 6to4 have their own accessors.
EMBEDDING = [ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96")]
# IPv4-compatible (::a.b.c.d, "[::127.0.0.1]"), deprecated since 2006: nothing public is reached that way.
COMPATIBLE = ipaddress.ip_network("::/96")


class Refused(OSError):
    """The address is inside our own network and its setting does not allow that."""


def client(*, allow_setting: str, **options) -> httpx.Client:
    """An httpx.Client that connects to public addresses only, unless the setting named `allow_setting` is on.

    Proxies from the environment are not used (the transport is given), so the check is never of a proxy."""
    if getattr(settings, allow_setting):
        return httpx.Client(**options)
    return httpx.Client(transport=_PublicTransport(allow_setting), **options)


def public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Reachable on the internet, including an IPv4 address written inside IPv6 (mapped, NAT64, translated, 6to4);
    never an IPv4-compatible one."""
    if isinstance(address, ipaddress.IPv6Address):
        if address in COMPATIBLE:
            return False
        inner = address.ipv4_mapped or address.sixtofour
        if inner is None and any(address in network for network in EMBEDDING):
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None and not inner.is_global:
            return False
    return address.is_global


class _PublicNetwork(httpcore.SyncBackend):
    def __init__(self, allow_setting: str) -> None:
        self.allow_setting = allow_setting

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise Refused(f"cannot resolve {host}: {e.strerror}") from None
        addresses = list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        for address in addresses:
            if not public(address):
                raise Refused(f"{host} resolves to {address}, a private or local address ({self.allow_setting} is off)")
        for address in addresses[:-1]:
            try:
                return super().connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError:
                continue  # the next address, as socket.create_connection would
        # TLS still checks the certificate against the name: httpcore passes the origin's host for it.
        return super().connect_tcp(str(addresses[-1]), port, timeout, local_address, socket_options)


class _PublicTransport(httpx.HTTPTransport):
    def __init__(self, allow_setting: str) -> None:
        super().__init__()
        # httpx 0.28 has no argument for the network backend (encode/httpx#3749), so the pool it built is
        # replaced by the same pool over ours; tests/governance/test_outbound.py fails if this stops working.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_PublicNetwork(allow_setting)
        )
