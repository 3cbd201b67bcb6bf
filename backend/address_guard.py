"""Where the backend may download task images from (a guard against server-side request
forgery: a Label Studio user who can create tasks must not make the backend fetch internal
addresses). Allowed: Label Studio's own origin (scheme, host and port: other ports of its
host are not), entries of CRACKAL_ALLOWED_HOSTS (a host name, `host:port`, an address or a
network), and hosts whose every address is public. Every redirect hop is checked again.

`refusal` checks a URL before its request, for a clear reason; the connection itself
(backend/guarded_connection.py) resolves the name once more, applies the same rule to that
answer with `connect_refusal`, and connects only to the addresses it checked, so a DNS
answer that changes between the two (DNS rebinding) cannot reach a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlparse

from backend.settings import Settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host in lower case, port with the scheme's default filled in)."""
    parsed = urlparse(url)
    default = {"http": 80, "https": 443}.get(parsed.scheme)
    try:
        port = parsed.port or default
    except ValueError:
        port = None
    return parsed.scheme, (parsed.hostname or "").rstrip(".").lower(), port


def allowed_networks(entries: tuple[str, ...]) -> list[Network]:
    """The entries of CRACKAL_ALLOWED_HOSTS that are IP addresses or networks."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            continue  # a host name
    return networks


def name_allowed(scheme: str, host: str, port: int | None, settings: Settings) -> bool:
    """True when the origin is Label Studio's own or CRACKAL_ALLOWED_HOSTS names `host` or
    `host:port`: then any address the name resolves to may be connected to."""
    host = host.strip("[]").rstrip(".").lower()
    if (scheme, host, port) == origin(settings.label_studio_url):
        return True
    return host in settings.allowed_hosts or f"{host}:{port}" in settings.allowed_hosts


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def embedded_ipv4(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, IPv4-compatible), if any."""
    if ip.version != 6:
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    low = int(ip) & 0xFFFFFFFF
    if ip in NAT64 or (int(ip) >> 32 == 0 and low > 1):  # ::a.b.c.d, not :: or ::1
        return ipaddress.IPv4Address(low)
    return None


def address_refusal(host: str, address: str, settings: Settings) -> str | None:
    """Why `host`, resolved to `address`, may not be connected to, or None when it may: the
    address is public or inside a network of CRACKAL_ALLOWED_HOSTS."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if any(ip in net for net in allowed_networks(settings.allowed_hosts)):
        return None
    inner = embedded_ipv4(ip)
    if inner is not None and (not inner.is_global or inner.is_multicast):
        return f"host {host!r} is at {ip}, which carries the private or reserved address {inner}"
    if not ip.is_global or ip.is_multicast:
        return (
            f"host {host!r} is at {ip}, a private or reserved address "
            "(list it in CRACKAL_ALLOWED_HOSTS if it is a host of yours)"
        )
    return None


def connect_refusal(
    scheme: str, host: str, port: int | None, address: str, settings: Settings
) -> str | None:
    """Why a connection to `address`, resolved for `scheme://host:port`, is refused, or None."""
    if name_allowed(scheme, host, port, settings):
        return None
    return address_refusal(host.strip("[]").rstrip(".").lower(), address, settings)


def refusal(url: str, settings: Settings) -> str | None:
    """Why `url` may not be fetched, or None when it may."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https"):
        return f"scheme {parsed.scheme!r} is not fetched over the network"
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        return "URL has an invalid port"
    if not host:
        return "URL has no host"
    scheme, host, port = origin(url)
    if name_allowed(scheme, host, port, settings):
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return f"cannot resolve host {host!r}"
    for info in infos:
        reason = address_refusal(host, str(info[4][0]), settings)
        if reason:
            return reason
    return None
