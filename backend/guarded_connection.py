"""A requests adapter whose connections connect only to addresses the address guard
checked (backend/address_guard.py): each new connection resolves its host once, refuses
the whole answer if any address of it is refused (as the per-URL check does), and connects
to those same addresses, never resolving the name again. HTTPS still sends the host name
as SNI and verifies the certificate against it.

Image downloads never go through a proxy, from the environment or the session: a proxy
would resolve the name itself, unchecked.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family

from backend.address_guard import connect_refusal
from backend.settings import Settings


class AddressRefusedError(NewConnectionError):
    """A connection refused by the address guard; `refusal` says why."""

    def __init__(self, conn: HTTPConnection, refusal: str) -> None:
        self.refusal = refusal
        super().__init__(conn, f"refused: {refusal}")


class _Guarded:
    """`_new_conn` of urllib3 2.x with one resolution, checked before any connect."""

    guard_scheme = "http"

    def __init__(self, *args: Any, settings: Settings, **kwargs: Any) -> None:
        self.guard_settings = settings
        super().__init__(*args, **kwargs)

    def _new_conn(self: Any) -> socket.socket:
        host = self._dns_host.strip("[]")
        try:
            infos = socket.getaddrinfo(host, self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise NameResolutionError(self.host, self, e) from e
        except UnicodeError as e:
            raise NewConnectionError(self, f"cannot resolve host {self.host!r}") from e
        for info in infos:
            reason = connect_refusal(
                self.guard_scheme, self.host, self.port, str(info[4][0]), self.guard_settings
            )
            if reason:
                raise AddressRefusedError(self, reason)
        try:
            sock = _connect_first(infos, self.timeout, self.source_address, self.socket_options)
        except TimeoutError as e:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from e
        except OSError as e:
            raise NewConnectionError(self, f"Failed to establish a new connection: {e}") from e
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock


def _connect_first(
    infos: list[tuple[Any, ...]],
    timeout: Any,
    source_address: tuple[str, int] | None,
    socket_options: list[tuple[int, int, int | bytes]] | None,
) -> socket.socket:
    """A socket connected to the first of `infos` (getaddrinfo's answer) that answers."""
    err: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = None
        try:
            sock = socket.socket(family, kind, proto)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, (int, float)):  # else: the default
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(address)
            return sock
        except OSError as e:
            err = e
            if sock is not None:
                sock.close()
    raise err or OSError("getaddrinfo returned no address")


class GuardedHTTPConnection(_Guarded, HTTPConnection):
    guard_scheme = "http"


class GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    guard_scheme = "https"


class _GuardedPoolManager(PoolManager):
    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard_settings = settings

    def _new_pool(
        self, scheme: str, host: str, port: int, request_context: dict[str, Any] | None = None
    ) -> HTTPConnectionPool:
        pool = super()._new_pool(scheme, host, port, request_context)
        pool.ConnectionCls = GuardedHTTPSConnection if scheme == "https" else GuardedHTTPConnection
        pool.conn_kw["settings"] = self.guard_settings
        return pool


class GuardedAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections go only to addresses the guard allows for
    `settings`; proxies are ignored (see the module docstring)."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        self.guard_settings = settings
        super().__init__(**kwargs)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        self.poolmanager = _GuardedPoolManager(
            self.guard_settings, num_pools=connections, maxsize=maxsize, block=block, **pool_kwargs
        )

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        kwargs["proxies"] = {}
        return super().send(request, *args, **kwargs)


def guard_key(settings: Settings) -> tuple[str, tuple[str, ...]]:
    """The settings the guard decides by."""
    return settings.label_studio_url, settings.allowed_hosts


def guard_session(session: requests.Session, settings: Settings) -> None:
    """Mount a GuardedAdapter for `settings` on `session` for http and https, unless one for
    the same Label Studio URL and allowed hosts is there already."""
    current = session.adapters.get("https://")
    if isinstance(current, GuardedAdapter) and guard_key(current.guard_settings) == guard_key(
        settings
    ):
        return
    adapter = GuardedAdapter(settings)
    session.mount("http://", adapter)
    session.mount("https://", adapter)


def is_guarded(session: requests.Session, url: str) -> bool:
    """True when `session` sends `url` through a GuardedAdapter."""
    try:
        return isinstance(session.get_adapter(url), GuardedAdapter)
    except requests.exceptions.InvalidSchema:
        return False


def refusal_of(exc: BaseException) -> str | None:
    """The guard's reason when `exc` (a requests error) comes from a refused connection."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, AddressRefusedError):
            return e.refusal
        if isinstance(e, BaseException):
            todo += [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
    return None
