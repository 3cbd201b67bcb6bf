"""A task's image, fetched and checked. Whatever goes wrong - a malformed URL, a refused
address, a broken or oversized file - becomes a `TaskImageError` naming the reason, so a
bad task costs only itself."""

from __future__ import annotations

import io
import logging
from typing import Any

import requests
from PIL import Image

from backend.image_source import fetch_image_bytes
from backend.label_config import BrushTarget
from backend.label_studio import LabelStudio, LabelStudioError
from backend.settings import Settings

log = logging.getLogger("crackal.backend")


class TaskImageError(ValueError):
    """A task whose image cannot be used; str() is the reason shown to users."""


def image_url(task: dict[str, Any], target: BrushTarget) -> str:
    data = task.get("data")
    if not isinstance(data, dict):
        raise TaskImageError("task has no data object")
    url = data.get(target.image_key)
    if not isinstance(url, str) or not url:
        raise TaskImageError(f"task data has no {target.image_key!r} image URL")
    return url


def fetch_task_image(
    task: dict[str, Any],
    target: BrushTarget,
    settings: Settings,
    session: requests.Session,
    label_studio: LabelStudio,
) -> bytes:
    """The task's image bytes, checked to be a decodable image within the size limits."""
    try:
        url = image_url(task, target)
        tid = task.get("id") if isinstance(task.get("id"), int) else None
        data = fetch_image_bytes(url, settings, session, label_studio, tid)
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except TaskImageError:
        raise
    except LabelStudioError:  # Label Studio itself failing is not this task's fault
        raise
    except Image.DecompressionBombError:
        raise TaskImageError("image has more pixels than Pillow allows") from None
    except Exception as exc:  # any failure of this one task is its own reason
        raise TaskImageError(_reason(exc)) from None
    if w * h > settings.max_image_pixels:
        raise TaskImageError(f"image is {w}x{h}, above CRACKAL_MAX_IMAGE_PIXELS")
    return data


def _reason(exc: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not a recognised image format"
    text = str(exc) or exc.__class__.__name__
    return text[:300]
