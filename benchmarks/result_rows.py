"""Appending a benchmark's finished case to its CSV, so an interrupted run resumes."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path


def append_row(path: Path, row: dict, columns: Sequence[str]) -> None:
    """Add `row` to `path`, writing the header first when the file is new."""
    new = not path.exists()
    with path.open("a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerow(row)
