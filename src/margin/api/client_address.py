"""Who is asking: the client's address, and whether it is this machine.

Behind a reverse proxy on the same host (nginx, Caddy, a sidecar) every connection comes from
loopback, so the peer address alone cannot say "local". A request that carries any proxy header is
therefore local only when its peer is a proxy the operator trusts (`server.trusted_proxies`) and the
client that proxy names is itself on loopback. The client named is the rightmost address in the
forwarding header that is not a trusted proxy: everything to its left was written by the client
and can be forged. A proxy that adds no header at all cannot be told apart from a local caller,
which is why docs/security.md asks for `server.admin_key` whenever a proxy is in front.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from starlette.requests import Request

from margin.api.state import state_of

IPNetwork = IPv4Network | IPv6Network

# Headers that say "a proxy forwarded this" in any of their common dialects. Seeing one from an
# untrusted peer means the request cannot be taken for a local one, whatever its value.
PROXY_HEADERS = frozenset(
    {
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-forwarded-port",
        b"x-forwarded-server",
        b"x-original-forwarded-for",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
        b"via",
    }
)


@dataclass(frozen=True, slots=True)
class ClientAddress:
    host: str  # the client as resolved: an IP, or the token a proxy gave ("unknown", "_hidden")
    local: bool  # this machine: loopback, reached directly or through a trusted proxy
    forwarded: bool  # the request carried a proxy header
    trusted_proxy: bool  # ...and its peer is a trusted proxy, so `host` comes from the header


def parse_ip(text: str) -> IPv4Address | IPv6Address | None:
    """An address as sockets and proxies write it, or None: IPv4-mapped IPv6 counts as IPv4."""
    try:
        address = ip_address(text.split("%", 1)[0])  # an IPv6 zone id says nothing about the host
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback(text: str) -> bool:
    address = parse_ip(text)
    return address is not None and address.is_loopback


def is_trusted(text: str, trusted: Sequence[IPNetwork]) -> bool:
    address = parse_ip(text)
    return address is not None and any(address.version == net.version and address in net for net in trusted)


def resolve_client(
    peer: str,
    headers: Iterable[tuple[bytes, bytes]],
    trusted: Sequence[IPNetwork],
    header: str = "x-forwarded-for",
) -> ClientAddress:
    """The client of a request that came from `peer` with these (lower-case, ASGI) headers."""
    headers = list(headers)
    if not any(name in PROXY_HEADERS for name, _ in headers):
        return ClientAddress(peer, is_loopback(peer), forwarded=False, trusted_proxy=False)
    if not is_trusted(peer, trusted):
        return ClientAddress(peer, local=False, forwarded=True, trusted_proxy=False)
    wanted = header.encode()
    values = [value.decode("latin-1") for name, value in headers if name == wanted]
    hops = forwarded_hops(values) if header == "forwarded" else listed_hops(values)
    if not hops:
        # Proxied (some proxy header is there) but not through the header the proxy is said to set:
        # the client is unknown, so it is not this machine.
        return ClientAddress(peer, local=False, forwarded=True, trusted_proxy=True)
    client = next((hop for hop in reversed(hops) if not is_trusted(hop, trusted)), hops[0])
    return ClientAddress(client, is_loopback(client), forwarded=True, trusted_proxy=True)


def listed_hops(values: Sequence[str]) -> list[str]:
    """X-Forwarded-For (and X-Real-IP): comma-separated addresses, the client first; several header
    lines count as one list in their order."""
    return [_host_of(item) for value in values for item in value.split(",") if item.strip()]


def forwarded_hops(values: Sequence[str]) -> list[str]:
    """RFC 7239 `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::17]:4711"`: the `for` of each
    element; an element without one is a hop that did not say ("unknown")."""
    hops = []
    for value in values:
        for element in value.split(","):
            if not element.strip():
                continue
            pairs = (pair.partition("=") for pair in element.split(";"))
            named = {key.strip().lower(): raw.strip().strip('"') for key, _, raw in pairs}
            hops.append(_host_of(named.get("for", "unknown")))
    return hops


def _host_of(item: str) -> str:
    """`1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1` -> the address alone."""
    item = item.strip().strip('"')
    if item.startswith("["):
        return item[1 : item.find("]")] if "]" in item else item[1:]
    if item.count(":") == 1:
        return item.split(":", 1)[0]
    return item


def client_of(request: Request) -> ClientAddress:
    server = state_of(request).config.server
    peer = request.client.host if request.client else ""
    headers: list[tuple[bytes, bytes]] = request.scope.get("headers", [])
    return resolve_client(peer, headers, server.trusted_proxies, server.forwarded_header)
