"""The model registry: a folder of immutable versions and an atomically switched `current`.

    <root>/versions/v1/weights.pt   state dict (loaded with weights_only=True)
    <root>/versions/v1/meta.json    parent, encoder, threshold, metrics, training images...
    <root>/CURRENT                  the serving version's name (replaced atomically)
    <root>/history.jsonl            every switch of CURRENT, for rollback and audit

A version is written completely in a hidden temporary folder and renamed into place, so a
reader never sees half a version, and two processes registering at once get different
names (renaming onto an existing, non-empty version fails and the next number is tried).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selection.atomic import atomic_write
from training.model import build_model

_VERSION = re.compile(r"^v(\d+)$")


class RegistryError(LookupError):
    """An unknown version, an empty registry, or a damaged entry."""


@dataclass
class LoadedModel:
    """A registry version ready to run."""

    version: str
    model: nn.Module
    meta: dict[str, Any]

    @property
    def encoder(self) -> str:
        return self.meta["encoder"]

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Registry:
    """Versions of the crack model under one folder (shared by every process that serves,
    trains or scores)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    # -- reading -----------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Every registered version, oldest first."""
        found = [p.name for p in self.versions_dir.iterdir() if _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def current(self) -> str | None:
        """The serving version, or None while the registry is empty."""
        try:
            name = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def resolve(self, version: str | None = "current") -> str:
        """A version name from 'current', 'latest' or a name; RegistryError if unknown."""
        if version in (None, "current"):
            name = self.current()
            if name is None:
                raise RegistryError(f"registry {self.root} has no current version (train one)")
            return name
        if version == "latest":
            names = self.versions()
            if not names:
                raise RegistryError(f"registry {self.root} is empty")
            return names[-1]
        if not (self.versions_dir / version / "meta.json").exists():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"no version {version!r} in {self.root} (known: {known})")
        return version

    def meta(self, version: str | None = "current") -> dict[str, Any]:
        name = self.resolve(version)
        return json.loads((self.versions_dir / name / "meta.json").read_text())

    def weights_path(self, version: str | None = "current") -> Path:
        return self.versions_dir / self.resolve(version) / "weights.pt"

    def load(self, version: str | None = "current") -> LoadedModel:
        """Build the model of a version and load its weights (weights_only=True), eval mode."""
        name = self.resolve(version)
        meta = self.meta(name)
        path = self.versions_dir / name / "weights.pt"
        if file_sha256(path) != meta["weights_sha256"]:
            raise RegistryError(f"{path}: weights do not match the hash in meta.json")
        model = build_model(meta["encoder"], pretrained=None)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return LoadedModel(name, model.eval(), meta)

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    # -- writing -----------------------------------------------------------------------
    def register(
        self, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], make_current: bool = False
    ) -> str:
        """Store a new immutable version; returns its name (v1, v2, ...)."""
        if "encoder" not in meta:
            raise ValueError("meta must name the encoder")
        tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".tmp-"))
        try:
            torch.save(state_dict, tmp / "weights.pt")
            full = {
                **meta,
                "weights_sha256": file_sha256(tmp / "weights.pt"),
                "created": meta.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            name = self._place(tmp, full)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if make_current:
            self.set_current(name, reason="registered")
        return name

    def _place(self, tmp: Path, meta: dict[str, Any]) -> str:
        existing = self.versions()
        number = int(existing[-1][1:]) + 1 if existing else 1
        while True:
            name = f"v{number}"
            meta["version"] = name
            with atomic_write(tmp / "meta.json", "w") as fh:
                json.dump(meta, fh, indent=2)
            try:
                os.rename(tmp, self.versions_dir / name)
                return name
            except OSError:
                if not (self.versions_dir / name).exists():
                    raise
                number += 1  # another process took this name first

    def set_current(self, version: str, reason: str = "") -> None:
        """Switch the serving version atomically and record the switch."""
        name = self.resolve(version)
        previous = self.current()
        with atomic_write(self.root / "CURRENT", "w") as fh:
            fh.write(name + "\n")
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "version": name,
            "previous": previous,
            "reason": reason,
        }
        with open(self.root / "history.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")

    def rollback(self, version: str | None = None) -> str:
        """Serve `version`, or the version that served before the current one."""
        if version is None:
            current = self.current()
            earlier = [
                e["previous"]
                for e in reversed(self.history())
                if e["version"] == current and e["previous"]
            ]
            if not earlier:
                raise RegistryError("nothing to roll back to: no earlier current version")
            version = earlier[0]
        self.set_current(version, reason="rollback")
        return self.resolve(version)
