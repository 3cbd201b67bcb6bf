"""What a test needs but this machine may lack: skipped locally, an error under CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """Fail under CI (`CI` set: everything must be there), else skip with `message`."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
