"""Fetching a task's image bytes from where Label Studio says it is.

- relative Label Studio URLs (`/data/upload/...`, `/data/local-files/?d=...`): downloaded
  from LABEL_STUDIO_URL with the backend's own API key;
- http(s) URLs (the Label Studio host gets the API key, other hosts do not);
- `data:` URLs (base64);
- local paths, only inside CRACKAL_LOCAL_FILES_ROOT.
Anything else (s3://, gs://, ...) is refused with a clear reason.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

from backend.settings import Settings


class ImageFetchError(ValueError):
    """A task image that could not be fetched; the message says why."""


def fetch_image_bytes(url: str, settings: Settings, session: requests.Session) -> bytes:
    """The bytes of the image at `url` (see module docstring for what is accepted)."""
    if not isinstance(url, str) or not url:
        raise ImageFetchError("task has no image URL")
    if url.startswith("data:"):
        return _data_url(url, settings.max_image_bytes)
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        own = urlparse(settings.label_studio_url)
        auth = parsed.netloc == own.netloc
        return _download(url, settings, session, with_token=auth)
    if parsed.scheme == "" and url.startswith("/data/"):
        return _download(settings.label_studio_url + url, settings, session, with_token=True)
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


def _download(url: str, settings: Settings, session: requests.Session, with_token: bool) -> bytes:
    headers = {}
    if with_token and settings.label_studio_api_key:
        headers["Authorization"] = f"Token {settings.label_studio_api_key}"
    try:
        with session.get(
            url, headers=headers, timeout=settings.request_timeout, stream=True
        ) as resp:
            if resp.status_code in (401, 403):
                raise ImageFetchError(
                    f"{resp.status_code} from {url[:80]}: check LABEL_STUDIO_API_KEY"
                )
            if resp.status_code != 200:
                raise ImageFetchError(f"HTTP {resp.status_code} from {url[:80]}")
            chunks, size = [], 0
            for chunk in resp.iter_content(1 << 16):
                size += len(chunk)
                if size > settings.max_image_bytes:
                    raise ImageFetchError(f"image is larger than {settings.max_image_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except requests.RequestException as exc:
        raise ImageFetchError(f"cannot download {url[:80]}: {exc.__class__.__name__}") from None


def _local(path: str, settings: Settings) -> bytes:
    if settings.local_files_root is None:
        raise ImageFetchError("local image paths are disabled (set CRACKAL_LOCAL_FILES_ROOT)")
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(settings.local_files_root.resolve()):
        raise ImageFetchError(f"{path} is outside CRACKAL_LOCAL_FILES_ROOT")
    try:
        if resolved.stat().st_size > settings.max_image_bytes:
            raise ImageFetchError(f"image is larger than {settings.max_image_bytes} bytes")
        return resolved.read_bytes()
    except OSError as exc:
        raise ImageFetchError(f"cannot read {path}: {exc.strerror or exc}") from None
