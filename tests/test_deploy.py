"""Deployment files: compose.yaml is valid against the Compose Specification schema and wires
every service; the Dockerfile copies what the services need."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from shared.settings import DEFAULT_PORTS

ROOT = Path(__file__).resolve().parents[1]


def load_compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_validates_against_the_compose_spec() -> None:
    schema = json.loads((ROOT / "tests/data/compose_spec.json").read_text())
    # The schema names its draft as ".../draft/2019-09/schema#", which jsonschema does not
    # look up (the trailing "#"): say which draft it is.
    jsonschema.Draft201909Validator(schema).validate(load_compose())


def test_every_service_is_in_compose_with_a_health_check_and_its_port() -> None:
    services = load_compose()["services"]
    for name, port in DEFAULT_PORTS.items():
        service = services[name]
        assert service["command"] == ["python", "-m", f"services.{name}"]
        assert f"{port}:{port}" in service["ports"]
        assert f"{port}/ready" in " ".join(service["healthcheck"]["test"])
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["environment"]["AMQP_URL"].startswith("amqp://")
    for infrastructure in ("postgres", "rabbitmq"):
        assert "healthcheck" in services[infrastructure]
    # The simulator (its replays act as admin) starts only when asked for (M5).
    assert [name for name, service in services.items() if "profiles" in service] == [
        "softswitch"] and services["softswitch"]["profiles"] == ["simulator"]


def test_dockerfile_copies_the_code_and_runs_unprivileged() -> None:
    dockerfile = (ROOT / "deploy/Dockerfile").read_text()
    for needed in ("COPY shared", "COPY services", "COPY hotline", "USER hotline"):
        assert needed in dockerfile
