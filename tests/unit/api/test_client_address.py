"""Who counts as "this machine" (issue 16, item 1): forged proxy headers never make a caller local;
a trusted proxy's header names the client, read from the right."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_network

import pytest

from margin.api.client_address import forwarded_hops, is_loopback, listed_hops, resolve_client
from margin.config.model import ServerConfig

NONE: list[IPv4Network | IPv6Network] = []
LOCAL_PROXY = [ip_network("127.0.0.1"), ip_network("::1")]


def h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.encode()) for name, value in pairs]


def test_a_loopback_peer_without_proxy_headers_is_local() -> None:
    for peer in ("127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"):
        client = resolve_client(peer, h(("host", "x"), ("user-agent", "curl")), NONE)
        assert client.local and not client.forwarded and client.host == peer
    assert not resolve_client("203.0.113.9", [], NONE).local
    assert not resolve_client("", [], NONE).local  # no peer at all (a unix socket, a test transport)


@pytest.mark.parametrize(
    "header",
    [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-for", "127.0.0.1"),  # even a header that claims loopback
        ("forwarded", "for=203.0.113.9;proto=https"),
        ("forwarded", "for=127.0.0.1"),
        ("x-real-ip", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("via", "1.1 nginx"),
        ("true-client-ip", "203.0.113.9"),
        ("X-Forwarded-For", "203.0.113.9"),  # ASGI lower-cases names; a raw upper-case one still counts below
    ],
)
def test_any_proxy_header_from_an_untrusted_peer_is_never_local(header: tuple[str, str]) -> None:
    name, value = header
    client = resolve_client("127.0.0.1", [(name.lower().encode(), value.encode())], NONE)
    assert not client.local and client.forwarded and not client.trusted_proxy
    assert client.host == "127.0.0.1"  # the peer: an untrusted header names nobody


def test_a_trusted_proxy_names_the_client_from_the_right() -> None:
    # The proxy appends the address it saw; what the client sent sits to its left and is ignored.
    forged = h(("x-forwarded-for", "127.0.0.1, 203.0.113.9"))
    client = resolve_client("127.0.0.1", forged, LOCAL_PROXY)
    assert client.host == "203.0.113.9" and not client.local and client.trusted_proxy
    local = resolve_client("127.0.0.1", h(("x-forwarded-for", "127.0.0.5")), LOCAL_PROXY)
    assert local.host == "127.0.0.5" and local.local


def test_chained_trusted_proxies_are_skipped() -> None:
    trusted = [*LOCAL_PROXY, ip_network("10.0.0.0/8")]
    chain = h(("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.1.2.3"), ("x-forwarded-for", "10.4.5.6"))
    assert resolve_client("127.0.0.1", chain, trusted).host == "203.0.113.9"
    # Every hop trusted: the leftmost is the client (a request made by the proxies' own machines).
    assert resolve_client("127.0.0.1", h(("x-forwarded-for", "10.0.0.1, 10.0.0.2")), trusted).host == "10.0.0.1"


def test_a_peer_outside_the_trusted_list_is_not_trusted() -> None:
    client = resolve_client("127.0.0.2", h(("x-forwarded-for", "127.0.0.1")), [ip_network("127.0.0.1")])
    assert not client.local and not client.trusted_proxy


def test_a_trusted_proxy_without_the_configured_header_leaves_the_client_unknown() -> None:
    # Some proxy header is there, but not the one the proxy is said to set: nobody is named, and a
    # client-written X-Real-IP must not stand in for it.
    client = resolve_client("127.0.0.1", h(("x-real-ip", "127.0.0.1")), LOCAL_PROXY, "x-forwarded-for")
    assert not client.local and client.trusted_proxy


def test_forwarded_and_x_real_ip_dialects() -> None:
    forwarded = h(("forwarded", 'for=127.0.0.1, for="[2001:db8:cafe::17]:4711";proto=https'))
    client = resolve_client("::1", forwarded, LOCAL_PROXY, "forwarded")
    assert client.host == "2001:db8:cafe::17" and not client.local
    hidden = resolve_client("::1", h(("forwarded", "for=_hidden")), LOCAL_PROXY, "forwarded")
    assert hidden.host == "_hidden" and not hidden.local
    real = resolve_client("127.0.0.1", h(("x-real-ip", "203.0.113.9")), LOCAL_PROXY, "x-real-ip")
    assert real.host == "203.0.113.9" and not real.local


def test_hop_parsing() -> None:
    assert listed_hops(["1.2.3.4:80, [::1]:8080", " ::1 ,", "unknown"]) == ["1.2.3.4", "::1", "::1", "unknown"]
    assert forwarded_hops(["proto=https;by=10.0.0.1", 'For="1.2.3.4:99"']) == ["unknown", "1.2.3.4"]
    assert is_loopback("::ffff:127.0.0.1") and is_loopback("fe80::1%lo") is False and not is_loopback("localhost")


def test_trusted_proxies_are_validated_networks() -> None:
    server = ServerConfig(trusted_proxies=["127.0.0.1", "10.0.0.0/8", "::1"])
    assert server.trusted_proxies == [ip_network("127.0.0.1"), ip_network("10.0.0.0/8"), ip_network("::1")]
    for bad in ("nginx", "10.0.0.1/8", "300.1.1.1"):
        with pytest.raises(ValueError, match="trusted_proxies"):
            ServerConfig(trusted_proxies=[bad])
