"""Where the backend may download task images from (a guard against server-side request
forgery: a Label Studio user who can create tasks must not make the backend fetch internal
addresses). Allowed: Label Studio's own origin (scheme, host and port: other ports of its
host are not), entries of CRACKAL_ALLOWED_HOSTS (a host name, `host:port`, an address or a
network), and hosts whose every address is public. Every redirect hop is checked again.

The check resolves the name itself, so a name whose DNS answer changes between the check
and the connection (DNS rebinding) is not covered; CRACKAL_ALLOWED_HOSTS plus a resolver
that refuses private answers is the defence for that.
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
    if (scheme, host, port) == origin(settings.label_studio_url):
        return None
    if host in settings.allowed_hosts or f"{host}:{port}" in settings.allowed_hosts:
        return None
    networks = allowed_networks(settings.allowed_hosts)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError):
        return f"cannot resolve host {host!r}"
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if any(address in net for net in networks):
            continue
        if not address.is_global or address.is_multicast:
            return (
                f"host {host!r} is at {address}, a private or reserved address "
                "(CRACKAL_ALLOWED_HOSTS allows it)"
            )
    return None
