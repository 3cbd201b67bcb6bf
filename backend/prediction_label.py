"""The model_version crackal writes on its predictions: `crackal-<registry version>`. The
prefix is how crackal tells its own predictions from another backend's or imported ones
(a bare "v1" could be anyone's), so that it removes only its own."""

from __future__ import annotations

import re

PREFIX = "crackal-"
_LABEL = re.compile(r"^crackal-(v\d+)$")


def version_label(version: str) -> str:
    """The model_version Label Studio shows for a registry version."""
    return PREFIX + version


def labelled_version(model_version: object) -> str | None:
    """The registry version a prediction's model_version names, or None if not ours."""
    if not isinstance(model_version, str):
        return None
    match = _LABEL.match(model_version)
    return match.group(1) if match else None
