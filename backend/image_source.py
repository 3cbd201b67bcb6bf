"""Fetching a task's image bytes from where Label Studio says it is.

- relative Label Studio URLs (`/data/upload/...`, `/data/local-files/?d=...`, and the
  `/tasks/<id>/resolve/?fileuri=...` links its task listing gives for cloud storage):
  downloaded from LABEL_STUDIO_URL with the backend's own credentials;
- cloud storage URIs (`s3://`, `gs://`, `azure-blob://`): through Label Studio's presign
  route for the task, which redirects to a presigned URL or proxies the bytes;
- http(s) URLs: credentials go only to Label Studio's own origin (scheme, host and port)
  and only for paths without dot segments; other hosts get none; private addresses are
  refused unless allowed (backend/address_guard.py), at every redirect hop, and the
  connection goes to the address that was checked (backend/guarded_connection.py), never
  through a proxy;
- `data:` URLs (base64);
- local paths, only inside CRACKAL_LOCAL_FILES_ROOT.
Anything else is refused with a clear reason.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import requests

from backend.address_guard import origin, refusal
from backend.guarded_connection import guard_session, is_guarded, refusal_of
from backend.label_studio import CLOUD_SCHEMES, LabelStudio
from backend.settings import Settings

# First path segments of Label Studio's own file routes, as task URLs carry them relative:
# uploads and local files (/data/...), cloud URIs it resolved (/tasks/<id>/resolve/?fileuri=,
# /tasks/<id>/presign/...), project-level resolving and its storage proxy.
LS_ROUTE = re.compile(r"/(data/|storage-data/|tasks/\d+/|projects/\d+/)")


class ImageFetchError(ValueError):
    """A task image that could not be fetched; the message says why."""


def fetch_image_bytes(
    url: str,
    settings: Settings,
    session: requests.Session,
    label_studio: LabelStudio,
    task_id: int | None = None,
) -> bytes:
    """The bytes of the image at `url` of task `task_id` (see the module docstring)."""
    if not isinstance(url, str) or not url:
        raise ImageFetchError("task has no image URL")
    if url.startswith("data:"):
        return _data_url(url, settings.max_image_bytes)
    parsed = urlparse(url)
    if parsed.scheme in CLOUD_SCHEMES:
        if task_id is None:
            raise ImageFetchError("a cloud storage URI needs the task id to be presigned")
        presigned = label_studio.presign_url(task_id, url)
        return _download(presigned, settings, session, label_studio.auth_header())
    if parsed.scheme in ("http", "https"):
        auth = label_studio.auth_header() if own_route(url, settings) else {}
        return _download(url, settings, session, auth)
    if parsed.scheme == "" and LS_ROUTE.match(url):
        full = settings.label_studio_url + url
        auth = label_studio.auth_header() if own_route(full, settings) else {}
        return _download(full, settings, session, auth)
    if parsed.scheme in ("", "file"):
        return _local(unquote(parsed.path if parsed.scheme == "file" else url), settings)
    raise ImageFetchError(f"unsupported image URL scheme {parsed.scheme!r}: {url[:80]}")


def _data_url(url: str, limit: int) -> bytes:
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise ImageFetchError("data URL is not base64-encoded")
    if len(payload) * 3 // 4 > limit:
        raise ImageFetchError(f"image is larger than {limit} bytes")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageFetchError(f"data URL is not valid base64 ({exc})") from None


def own_route(url: str, settings: Settings) -> bool:
    """True when `url` is on Label Studio's own origin and its path has no dot segments
    (`/data/../api/users` would reach the API with our credentials)."""
    same_origin = origin(url) == origin(settings.label_studio_url)
    segments = unquote(urlparse(url).path).replace("\\", "/").split("/")
    return same_origin and not any(seg in (".", "..") for seg in segments)


MAX_REDIRECTS = 5


def _download(
    url: str, settings: Settings, session: requests.Session, headers: dict[str, str]
) -> bytes:
    """GET `url` following at most MAX_REDIRECTS redirects, each hop checked by the address
    guard and connected through its adapter (mounted on `session`); credentials stay only
    while the hop is one of Label Studio's own routes; the whole download must end within
    CRACKAL_FETCH_DEADLINE."""
    start = time.monotonic()
    guard_session(session, settings)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            reason = refusal(url, settings)
            if not reason and not is_guarded(session, url):
                reason = "the session sends it through an adapter of its own"
            if reason:
                raise ImageFetchError(f"refused {url[:80]}: {reason}")
            with session.get(
                url,
                headers=headers,
                timeout=settings.request_timeout,
                stream=True,
                allow_redirects=False,
            ) as resp:
                if resp.is_redirect:
                    url = urljoin(url, resp.headers["Location"])
                    if not own_route(url, settings):
                        headers = {}
                    continue
                return _body(resp, url, settings, headers, start)
        raise ImageFetchError(f"more than {MAX_REDIRECTS} redirects from {url[:80]}")
    except requests.RequestException as exc:
        reason = refusal_of(exc)
        if reason:
            raise ImageFetchError(f"refused {url[:80]}: {reason}") from None
        raise ImageFetchError(f"cannot download {url[:80]}: {exc.__class__.__name__}") from None


def _body(
    resp: requests.Response, url: str, settings: Settings, headers: dict[str, str], start: float
) -> bytes:
    if resp.status_code in (401, 403):
        raise ImageFetchError(
            f"{resp.status_code} from {url[:80]}"
            + (": check LABEL_STUDIO_API_KEY" if headers else "")
        )
    if resp.status_code != 200:
        raise ImageFetchError(f"HTTP {resp.status_code} from {url[:80]}")
    chunks, size = [], 0
    while chunk := resp.raw.read1(1 << 16, decode_content=True):  # what arrived: the deadline
        size += len(chunk)  # is checked even when a server drip-feeds bytes
        if size > settings.max_image_bytes:
            raise ImageFetchError(f"image is larger than {settings.max_image_bytes} bytes")
        if time.monotonic() - start > settings.fetch_deadline:
            raise ImageFetchError(
                f"download of {url[:80]} took longer than {settings.fetch_deadline:g} s"
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _local(path: str, settings: Settings) -> bytes:
    if settings.local_files_root is None:
        raise ImageFetchError("local image paths are disabled (set CRACKAL_LOCAL_FILES_ROOT)")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(settings.local_files_root.resolve()):
        raise ImageFetchError(f"{path} is outside CRACKAL_LOCAL_FILES_ROOT")
    try:
        if not resolved.is_file():  # a FIFO or device would block or never end
            raise ImageFetchError(f"{path} is not a regular file")
        if resolved.stat().st_size > settings.max_image_bytes:
            raise ImageFetchError(f"image is larger than {settings.max_image_bytes} bytes")
        return resolved.read_bytes()
    except OSError as exc:
        raise ImageFetchError(f"cannot read {path}: {exc.strerror or exc}") from None
