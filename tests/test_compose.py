"""docker-compose.yml cannot run here (no Docker engine): check that what it runs and
configures is what the code provides and reads."""

import re
from pathlib import Path

import yaml

from crackal.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def variables_read_by_the_code() -> set[str]:
    """Configuration the code reads from the environment (not what rq sets for its jobs)."""
    source = "\n".join(p.read_text() for p in (REPO / "backend").glob("*.py"))
    source += (REPO / "crackal" / "worker.py").read_text()
    source = source.replace('environ.get("RQ_JOB_ID")', "")
    return (
        set(re.findall(r'e(?:\.get\(|\[)"([A-Z_]+)"', source))
        | set(re.findall(r'environ\.get\("([A-Z_]+)"', source))
        | set(re.findall(r'_number\(e, "([A-Z_]+)"', source))  # numeric settings
    )


def test_services_and_shared_volumes():
    services = compose()["services"]
    assert set(services) == {"label-studio", "redis", "backend", "worker", "dashboard"}
    assert services["dashboard"]["profiles"] == ["ops"]  # optional
    assert services["label-studio"]["image"].endswith(":1.23.2")
    for name in ("backend", "worker"):  # workers and the backend share registry and cache
        assert "crackal-data:/data" in services[name]["volumes"]


def test_commands_are_crackal_subcommands_with_valid_options():
    parser = build_parser()
    for name in ("backend", "worker"):
        command = compose()["services"][name]["command"]
        assert command[0] == "crackal"
        args = parser.parse_args(command[1:])  # exits (fails the test) on unknown options
        assert args.command == command[1]


def test_every_variable_is_one_the_code_reads_and_the_essentials_are_set():
    env = compose()["services"]["backend"]["environment"]
    read = variables_read_by_the_code()
    assert set(env) <= read, set(env) - read
    assert {
        "LABEL_STUDIO_URL",
        "LABEL_STUDIO_API_KEY",
        "REDIS_URL",
        "CRACKAL_REGISTRY",
        "CRACKAL_BASE_TRAIN",
    } <= set(env)
    assert compose()["services"]["worker"]["environment"] == env
    # Redis on the compose network only, with a password; the backend requires credentials
    assert (
        env["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD")
        and "@redis:6379" in env["REDIS_URL"]
    )
    redis = compose()["services"]["redis"]
    assert "ports" not in redis and "--requirepass" in redis["command"]
    assert {"BASIC_AUTH_USER", "BASIC_AUTH_PASS"} <= set(env)
    assert compose()["services"]["backend"]["ports"] == ["127.0.0.1:9090:9090"]


def test_label_studio_gets_the_settings_a_backend_needs():
    ls = compose()["services"]["label-studio"]["environment"]
    assert ls["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    assert ls["ML_BLOCK_LOCAL_IP"] == "false"  # the backend is on the compose network
    assert "SSRF_PROTECTION_ENABLED" not in ls  # Label Studio's own guard stays on


def test_readme_documents_every_variable_the_code_reads():
    readme = (REPO / "README.md").read_text()
    read = variables_read_by_the_code()
    assert len(read) > 20
    missing = sorted(name for name in read if f"`{name}`" not in readme)
    assert not missing, missing
