"""`crackal demo` (README's main command) sets everything up and scores a project."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_starts_everything_and_scores_a_project(
    label_studio_binary, trained_registry, crack_data, tmp_path
):
    work = tmp_path / "demo"
    shutil.copytree(trained_registry.root, work / "registry")  # skip training the base model
    args = ["--workdir", work, "--images", 4, "--data", crack_data, "--port", 0,
            "--label-studio", label_studio_binary, "--backend-port", 0,
            "--exit-after-setup"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "crackal", "demo", *map(str, args)],
        capture_output=True, text=True, timeout=900, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Label Studio: http://127.0.0.1:" in result.stdout
    assert "login admin@example.com / " in result.stdout
    assert "jobs: rq on redis://" in result.stdout or "in the backend process" in result.stdout
