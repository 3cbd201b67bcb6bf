"""The model registry: a folder of immutable versions and atomically switched lines.

    <root>/versions/v1/weights.pt   state dict (loaded with weights_only=True)
    <root>/versions/v1/meta.json    parent, encoder, threshold, metrics, training images...
    <root>/CURRENT                  the shared line: the base model every project starts from
    <root>/history.jsonl            every switch of the shared line, for rollback and audit
    <root>/projects/project-<id>/CURRENT, history.jsonl   a project's own line, once one of
                                    its retrains was promoted (until then it serves the shared)

A version is written completely in a hidden temporary folder, fsynced and renamed into
place, so a reader never sees half a version, also after a crash, and two processes
registering at once get different names (renaming onto an existing, non-empty version fails
and the next number is tried). A line is switched under a file lock; `promote` switches only
if the line still serves what the caller started from (compare and swap), so a rollback made
during a retrain stays.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selection.atomic import atomic_write
from training.device import resolve_device
from training.model import build_model

_VERSION = re.compile(r"^v(\d+)$")
log = logging.getLogger("crackal.registry")
PROTECTED_PREVIOUS = 3  # switches per line whose versions retention keeps (rollback targets)


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
        return version_threshold(self.meta)


def version_threshold(meta: dict[str, Any]) -> float:
    """A version's own mask threshold, from its meta (0.5 where none was fitted)."""
    return float(meta.get("threshold", 0.5))


def project_folder(root: Path | str, project: int) -> Path:
    """A project's folder under a registry root: its model line and its per-project state."""
    return Path(root) / "projects" / f"project-{int(project)}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Registry:
    """Versions of the crack model under one folder (shared by every process that serves,
    trains or scores)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.versions_dir.mkdir(parents=True, exist_ok=True)

    def line_folder(self, project: int | None = None) -> Path:
        """Where a line's CURRENT and history live: the root for the shared line."""
        if project is None:
            return self.root
        return project_folder(self.root, project)

    # -- reading -----------------------------------------------------------------------
    def versions(self) -> list[str]:
        """Every registered version, oldest first."""
        found = [p.name for p in self.versions_dir.iterdir() if _VERSION.match(p.name)]
        return sorted(found, key=lambda v: int(v[1:]))

    def own_current(self, project: int | None = None) -> str | None:
        """The version a line itself names (None: the project has no line of its own yet)."""
        try:
            name = (self.line_folder(project) / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        return name or None

    def current(self, project: int | None = None) -> str | None:
        """The version serving `project` (its own line, else the shared one), or None while
        the registry is empty."""
        if project is not None:
            own = self.own_current(project)
            if own is not None:
                return own
        return self.own_current(None)

    def projects(self) -> list[int]:
        """Projects that have a line of their own."""
        found = []
        for path in (self.root / "projects").glob("project-*/CURRENT"):
            with contextlib.suppress(ValueError):
                found.append(int(path.parent.name.removeprefix("project-")))
        return sorted(found)

    def resolve(self, version: str | None = "current", project: int | None = None) -> str:
        """A version name from 'current', 'latest' or a name; RegistryError if unknown."""
        if version in (None, "current"):
            name = self.current(project)
            if name is None:
                raise RegistryError(f"registry {self.root} has no current version (train one)")
            return name
        if version == "latest":
            names = self.versions()
            if not names:
                raise RegistryError(f"registry {self.root} is empty")
            return names[-1]
        if not _VERSION.match(version) or not (self.versions_dir / version / "meta.json").exists():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"no version {version!r} in {self.root} (known: {known})")
        return version

    def meta(self, version: str | None = "current", project: int | None = None) -> dict[str, Any]:
        name = self.resolve(version, project)
        try:
            return json.loads((self.versions_dir / name / "meta.json").read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"version {name}: unreadable meta.json ({exc})") from None

    def trained_images(self, version: str) -> set[str]:
        """Content hashes of every image `version` and its ancestors trained on (as far as
        their records reach: a pruned or unreadable ancestor ends the walk)."""
        seen: set[str] = set()
        visited: set[str] = set()
        name: str | None = version
        while isinstance(name, str) and name not in visited:
            visited.add(name)
            try:
                meta = self.meta(name)
            except RegistryError:
                break
            if not isinstance(meta, dict):
                break
            training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
            for key in ("images", "added_images"):
                records = training.get(key)
                for record in records if isinstance(records, list) else []:
                    if isinstance(record, dict) and isinstance(record.get("sha256"), str):
                        seen.add(record["sha256"])
            name = meta.get("parent")
        return seen

    def weights_path(self, version: str | None = "current") -> Path:
        return self.versions_dir / self.resolve(version) / "weights.pt"

    def load(self, version: str | None = "current", project: int | None = None) -> LoadedModel:
        """Build the model of a version and load its weights (weights_only=True), eval mode,
        on `training.device.resolve_device()` (CUDA when present, CRACKAL_DEVICE).
        RegistryError when the version is missing or damaged."""
        name = self.resolve(version, project)
        meta = self.meta(name)
        path = self.versions_dir / name / "weights.pt"
        try:
            if file_sha256(path) != meta["weights_sha256"]:
                raise RegistryError(f"{path}: weights do not match the hash in meta.json")
            model = build_model(meta["encoder"], pretrained=None)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RegistryError:
            raise
        except Exception as exc:  # missing file, torn pickle, wrong shapes: damaged
            raise RegistryError(f"version {name} cannot be loaded: {exc}"[:500]) from None
        return LoadedModel(name, model.eval().to(resolve_device()), meta)

    def load_serving(
        self, project: int | None = None, wanted: str | None = None
    ) -> tuple[LoadedModel, str | None]:
        """`wanted` (default: the line's current version), or, when it is damaged, the newest
        intact version the line served before, then the shared line's current and earlier
        ones (never another project's), logged loudly; returns the model and what was wrong
        (None when nothing was)."""
        wanted = wanted or self.resolve("current", project)
        try:
            return self.load(wanted), None
        except RegistryError as exc:
            problem = str(exc)
        log.error("REGISTRY DAMAGED: %s; falling back to an intact version", problem)
        for name in self._fallbacks(wanted, project):
            try:
                loaded = self.load(name)
            except RegistryError as exc:
                log.error("fallback %s is damaged too: %s", name, exc)
                continue
            log.error("serving %s instead of damaged %s", name, wanted)
            return loaded, f"serving {name} instead of {wanted}: {problem}"
        raise RegistryError(f"no intact version to serve ({problem})")

    def _fallbacks(self, wanted: str, project: int | None) -> Iterator[str]:
        seen = {wanted}
        own = [e.get("previous") for e in reversed(self.history(project))]
        shared = [self.own_current(None)] if project is not None else []
        shared += [e.get("previous") for e in reversed(self.history(None))]
        for name in [*own, *shared]:
            if name and name not in seen and _VERSION.match(name):
                seen.add(name)
                yield name

    def history(self, project: int | None = None) -> list[dict[str, Any]]:
        try:
            lines = (self.line_folder(project) / "history.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line torn by a crash is skipped
                out.append(json.loads(line))
        return out

    # -- writing -----------------------------------------------------------------------
    def register(
        self, state_dict: dict[str, torch.Tensor], meta: dict[str, Any], make_current: bool = False
    ) -> str:
        """Store a new immutable version; returns its name (v1, v2, ...)."""
        if "encoder" not in meta:
            raise ValueError("meta must name the encoder")
        tmp = Path(tempfile.mkdtemp(dir=self.versions_dir, prefix=".tmp-"))
        try:
            with open(tmp / "weights.pt", "wb") as fh:
                torch.save(state_dict, fh)
                fh.flush()
                os.fsync(fh.fileno())
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
            _fsync_dir(tmp)
            try:
                os.rename(tmp, self.versions_dir / name)
            except OSError:
                if not (self.versions_dir / name).exists():
                    raise
                number += 1  # another process took this name first
                continue
            _fsync_dir(self.versions_dir)
            return name

    @contextlib.contextmanager
    def _locked(self, project: int | None) -> Iterator[Path]:
        folder = self.line_folder(project)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield folder
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def set_current(self, version: str, reason: str = "", project: int | None = None) -> None:
        """Switch a line (the shared one, or a project's) to `version` and record it."""
        name = self.resolve(version)
        with self._locked(project):
            self._switch(name, reason, project)

    def promote(
        self, version: str, expected: str | None, reason: str = "", project: int | None = None
    ) -> bool:
        """Switch the line to `version` only if it still names `expected` (None: the project
        has no line of its own yet); False, and no switch, if it changed meanwhile."""
        name = self.resolve(version)
        with self._locked(project):
            if self.own_current(project) != expected:
                return False
            self._switch(name, reason, project)
            return True

    def _switch(self, name: str, reason: str, project: int | None) -> None:
        folder = self.line_folder(project)
        previous = self.current(project)
        with atomic_write(folder / "CURRENT", "w") as fh:
            fh.write(name + "\n")
        _fsync_dir(folder)
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "version": name,
            "previous": previous,
            "reason": reason,
        }
        with open(folder / "history.jsonl", "a") as fh:
            fh.write(json.dumps(entry) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def rollback(self, version: str | None = None, project: int | None = None) -> str:
        """Serve `version` on the line, or the version that served before its current one."""
        if version is None:
            current = self.current(project)
            earlier = [
                e["previous"]
                for e in reversed(self.history(project))
                if e.get("version") == current and e.get("previous")
            ]
            if not earlier:
                raise RegistryError("nothing to roll back to: no earlier current version")
            version = earlier[0]
        self.set_current(version, reason="rollback", project=project)
        return self.resolve(version)

    def protected(self) -> set[str]:
        """Versions a line serves or could roll back to (its last PROTECTED_PREVIOUS)."""
        keep = set()
        for line in [None, *self.projects()]:
            keep.add(self.own_current(line))
            history = self.history(line)[-PROTECTED_PREVIOUS:]
            keep |= {e.get("previous") for e in history} | {e.get("version") for e in history}
        return {name for name in keep if name}

    def prune(self, keep: int) -> list[str]:
        """Delete versions beyond the newest `keep`, except those any line serves or could
        roll back to; returns the names deleted."""
        if keep < 1:
            raise ValueError("keep at least one version")
        removed = []
        for name in self.versions()[:-keep]:
            if name in self.protected():  # read again per version: a line may just switch
                continue
            trash = self.versions_dir / f".trash-{name}-{os.getpid()}"
            with contextlib.suppress(FileNotFoundError):
                os.rename(self.versions_dir / name, trash)  # gone for readers at once
                shutil.rmtree(trash, ignore_errors=True)
                removed.append(name)
        return removed
