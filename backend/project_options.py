"""Per-project settings from the model's "Extra params" in Label Studio, which it sends with
every /setup, e.g. {"crack_label": "Crack", "strategy": "band-kcenter", "band": [0.5, 1]}.
Each overrides the backend's setting of the same meaning (CRACKAL_LABEL, CRACKAL_STRATEGY,
CRACKAL_BAND) for that project only; unknown keys and bad values are refused at /setup.
Kept in `<registry>/projects/project-<id>/options.json`."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.settings import Settings
from selection.atomic import atomic_write
from selection.queue_order import QUEUE_STRATEGIES
from selection.strategies import Strategy
from training.registry import project_folder

KEYS = ("crack_label", "strategy", "band")


@dataclass(frozen=True)
class ProjectOptions:
    crack_label: str | None = None
    strategy: Strategy | None = None
    band: tuple[float, float] | None = None

    @classmethod
    def parse(cls, raw: Any) -> ProjectOptions:
        """From Label Studio's extra params (None or {} means none)."""
        if raw in (None, "", {}):
            return cls()
        if not isinstance(raw, dict):
            raise ValueError("extra params must be a JSON object")
        unknown = sorted(set(raw) - set(KEYS))
        if unknown:
            raise ValueError(f"unknown extra params {unknown}: crackal reads {list(KEYS)}")
        label = raw.get("crack_label")
        if label is not None and (not isinstance(label, str) or not label):
            raise ValueError("extra param crack_label must be a label name")
        strategy = raw.get("strategy")
        if strategy is not None and strategy not in {s.value for s in QUEUE_STRATEGIES}:
            raise ValueError(
                f"extra param strategy must be one of {[s.value for s in QUEUE_STRATEGIES]}"
            )
        band = raw.get("band")
        if band is not None:
            ok = isinstance(band, list) and len(band) == 2
            ok = ok and all(isinstance(x, int | float) for x in band)
            if not ok or not 0 <= band[0] < band[1] <= 1:
                raise ValueError("extra param band must be [low, high] with 0 <= low < high <= 1")
        return cls(
            label,
            Strategy(strategy) if strategy else None,
            (float(band[0]), float(band[1])) if band else None,
        )

    def as_json(self) -> dict[str, Any]:
        """The options that are set, as saved."""
        raw = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if "band" in raw:
            raw["band"] = list(raw["band"])
        return raw

    def key(self, settings: Settings) -> str:
        """A canonical text of the options a scoring uses: the project's where set, else
        the settings' (so a changed default, e.g. `CRACKAL_STRATEGY`, changes it too)."""
        used = self.applied(settings)
        effective = {"crack_label": used.crack_label, "strategy": used.strategy.value,
                     "band": list(used.band)}  # fmt: skip
        return json.dumps(effective, sort_keys=True)

    def applied(self, settings: Settings) -> Settings:
        """`settings` with this project's overrides."""
        changes = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        return dataclasses.replace(settings, **changes)


def options_path(registry_root: Path | str, project_id: int) -> Path:
    return project_folder(registry_root, project_id) / "options.json"


def load_options(registry_root: Path | str, project_id: int) -> ProjectOptions:
    try:
        raw = json.loads(options_path(registry_root, project_id).read_text())
        return ProjectOptions.parse(raw)
    except (OSError, ValueError):
        return ProjectOptions()


def save_options(registry_root: Path | str, project_id: int, options: ProjectOptions) -> None:
    path = options_path(registry_root, project_id)
    with atomic_write(path, "w") as fh:
        json.dump(options.as_json(), fh)
