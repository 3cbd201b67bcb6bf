"""What the backend keeps per Label Studio project between calls, on the shared volume:

    <registry>/projects/project-<id>/tasks.json        task id -> image URL and content hash
    <registry>/projects/project-<id>/fit-<key>.npz  the last scoring's distance fit, per
        model version, extractor and base set (`Serving.fit_key`)
    <registry>/projects/project-<id>/skipped.json      task id -> why the last scoring
        skipped it
    <registry>/projects/project-<id>/distances.json    the last scoring's model version and
        each unlabelled task's scaled I_dist
    <registry>/projects/project-<id>/map.npz           the pool's map (backend/project_map.py)
    <registry>/projects/project-<id>/shards/<run>/page-<n>.json  index entries the pages
        of a split scoring job wrote (backend/scoring_shards.py); read by that job only,
        removed when the next split scoring starts

The scoring job writes them; `/predict` reads the fit, so scoring k tasks costs k images.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from backend.project_lock import project_busy
from selection.atomic import atomic_write
from selection.distance_fit import DistanceFit
from training.registry import project_folder


class PoolStore:
    def __init__(self, registry_root: Path | str, project_id: int) -> None:
        self.project = project_id
        self.registry_root = registry_root
        self.folder = project_folder(registry_root, project_id)

    def fit_path(self, key: str) -> Path:
        return self.folder / f"fit-{key}.npz"

    def load_fit(self, key: str) -> DistanceFit | None:
        return DistanceFit.load(self.fit_path(key))

    def save_fit(self, key: str, fit: DistanceFit) -> None:
        fit.save(self.fit_path(key))

    def load_index(self) -> dict[int, dict[str, str]]:
        """task id -> {"url", "sha"}; empty when absent or unreadable."""
        try:
            raw = json.loads((self.folder / "tasks.json").read_text())
            return {int(k): v for k, v in raw.items() if isinstance(v, dict)}
        except (OSError, ValueError):
            return {}

    def save_index(self, index: dict[int, dict[str, str]]) -> None:
        with atomic_write(self.folder / "tasks.json", "w") as fh:
            json.dump({str(k): v for k, v in index.items()}, fh)

    def save_shard_index(self, run: str, page: int, index: dict[int, dict[str, str]]) -> None:
        folder = self.folder / "shards" / run
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / f"page-{page}.json", "w") as fh:
            json.dump({str(k): v for k, v in index.items()}, fh)

    def load_shard_indexes(self, run: str) -> dict[int, dict[str, str]]:
        """The entries the pages of `run` wrote (unreadable files are skipped: those tasks
        are fetched again)."""
        out: dict[int, dict[str, str]] = {}
        for path in sorted((self.folder / "shards" / run).glob("page-*.json")):
            try:
                raw = json.loads(path.read_text())
                out.update(
                    {int(k): v for k, v in raw.items() if isinstance(v, dict) and "sha" in v}
                )
            except (OSError, ValueError, AttributeError):
                continue
        return out

    def clear_shard_indexes(self) -> None:
        """Remove every run's page indexes (a late helper's included)."""
        shutil.rmtree(self.folder / "shards", ignore_errors=True)

    def save_skipped(self, reasons: dict[int, str]) -> None:
        with atomic_write(self.folder / "skipped.json", "w") as fh:
            json.dump({str(k): v for k, v in reasons.items()}, fh)

    def load_skipped(self) -> dict[str, str]:
        """task id -> reason, from the last scoring; empty when absent or unreadable."""
        try:
            raw = json.loads((self.folder / "skipped.json").read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(raw, dict):
            return {}
        return {k: str(v) for k, v in raw.items() if k.isdigit()}  # task ids only

    def save_scored(self, marker: tuple[str, str, str]) -> None:
        """Mark the scoring that ordered Label Studio's queue by its predictions (the rest
        of its pages follow in the same job) with (model version, project options key,
        Label Studio's project creation time)."""
        with atomic_write(self.folder / "scored.json", "w") as fh:
            json.dump(list(marker), fh)

    def begin_pages(self) -> None:
        """Note that a scoring is going down the queue: until `end_pages`, the pool may be
        part old, part new (a job that fails or is killed leaves the note behind)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.folder / "pages-unfinished", "w") as fh:
            fh.write("a scoring went down the queue and did not reach its end\n")

    def end_pages(self) -> None:
        (self.folder / "pages-unfinished").unlink(missing_ok=True)

    def pages_unfinished(self) -> bool:
        """Whether the last scoring stopped before its last page (none finished since)."""
        return (self.folder / "pages-unfinished").exists()

    def stopped_half_way(self) -> bool:
        """A scoring stopped before its last page and no job of the project runs now (a
        running scoring leaves the same note until its end). Not for a job holding the
        project's lock: to it the project is always busy (`pages_unfinished` then)."""
        return self.pages_unfinished() and not project_busy(self.registry_root, self.project)

    def load_scored(self) -> tuple[str, str, str] | None:
        """The marker of the last scoring that ordered the queue; None when absent or
        unreadable."""
        try:
            raw = json.loads((self.folder / "scored.json").read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(raw, list) and len(raw) == 3 and all(isinstance(x, str) for x in raw)
        return (raw[0], raw[1], raw[2]) if ok else None

    def save_distances(self, version: str, scaled: dict[int, float]) -> None:
        state = {"version": version, "scaled": {str(k): float(v) for k, v in scaled.items()}}
        with atomic_write(self.folder / "distances.json", "w") as fh:
            json.dump(state, fh)

    def load_distances(self) -> tuple[str | None, dict[int, float]]:
        """(model version, task id -> scaled I_dist) of the last scoring; (None, {})
        when absent or unreadable."""
        try:
            raw = json.loads((self.folder / "distances.json").read_text())
            return raw["version"], {int(k): float(v) for k, v in raw["scaled"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None, {}
