"""docker-compose.yml, read as Compose reads it (no Docker here): its service graph starts things in the right
order, secrets come from files only, what runs long is health-checked, nothing is published beyond this host's
loopback, and the copies of what the code knows (search attributes, the Temporal version) have not drifted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, get_args
from urllib.parse import urlsplit

import pytest
import yaml
from conftest import executable
from pydantic import SecretStr

from models import search_attributes
from settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
ONE_SHOTS = {"temporal-schema", "temporal-namespace", "migrate"}
OURS = {name for name, service in SERVICES.items() if "build" in service}
"""Built from the Dockerfile (a target of it each): the others are images of their own."""
SECRET_SETTINGS = {
    name.upper()
    for name, field in Settings.model_fields.items()
    if field.annotation is SecretStr or SecretStr in get_args(field.annotation)
}
DATABASE_PASSWORDS = {"POSTGRES_PASSWORD", "POSTGRES_PWD", "SQL_PASSWORD", "DATABASE_PASSWORD"}


def depends_on(name: str) -> dict[str, str]:
    """What a service waits for, and for which condition (the list form means service_started)."""
    declared = SERVICES[name].get("depends_on", {})
    if isinstance(declared, list):
        return dict.fromkeys(declared, "service_started")
    return {target: spec.get("condition", "service_started") for target, spec in declared.items()}


def environment(name: str) -> dict[str, str]:
    declared = SERVICES[name].get("environment", {})
    if isinstance(declared, list):
        return dict(item.partition("=")[::2] for item in declared)
    return {key: "" if value is None else str(value) for key, value in declared.items()}


def mounted_secrets(name: str) -> dict[str, str]:
    """Each secret a service mounts: its name at the top level -> the file name under /run/secrets."""
    found = {}
    for entry in SERVICES[name].get("secrets", []):
        source, target = (entry, entry) if isinstance(entry, str) else (entry["source"], entry.get("target"))
        found[source] = target or source
    return found


def test_every_service_waited_for_exists_and_nothing_waits_in_a_circle() -> None:
    for name in SERVICES:
        assert set(depends_on(name)) <= set(SERVICES), name
        for condition in depends_on(name).values():
            assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
    started: set[str] = set()
    while len(started) < len(SERVICES):  # a topological order exists
        ready = {name for name in SERVICES if name not in started and set(depends_on(name)) <= started}
        assert ready, f"a cycle among {set(SERVICES) - started}"
        started |= ready


def test_temporal_starts_on_schemas_the_admin_tools_set_up_and_is_then_given_its_namespace() -> None:
    assert depends_on("temporal-schema") == {"postgres": "service_healthy"}
    assert depends_on("temporal") == {"temporal-schema": "service_completed_successfully"}
    assert depends_on("temporal-namespace") == {"temporal": "service_healthy"}
    assert SERVICES["temporal"]["image"].startswith("temporalio/server:")
    for one_shot in ("temporal-schema", "temporal-namespace"):
        assert SERVICES[one_shot]["image"].startswith("temporalio/admin-tools:")
    assert environment("temporal-schema")["DB"] == environment("temporal")["DB"] == "postgres12"
    assert environment("temporal")["DBNAME"] == "temporal"
    assert environment("temporal")["VISIBILITY_DBNAME"] == "temporal_visibility"

    script = (REPO / "deploy/compose/temporal-schema.sh").read_text()
    for step in ("create-database", "setup-schema --version 0.0", "update-schema --schema-dir"):
        assert step in script
    assert "/etc/temporal/schema/postgresql/v12/$schema/versioned" in script
    assert '"$DBNAME:temporal" "$VISIBILITY_DBNAME:visibility"' in script


def test_the_server_and_its_admin_tools_are_the_version_make_run_serves() -> None:
    """One version everywhere: the schemas the admin tools write are the ones the server expects, and the dev
    server the tests run is the same server."""
    tags = {SERVICES[name]["image"].partition(":")[2] for name in ("temporal", "temporal-schema", "temporal-namespace")}
    assert len(tags) == 1
    version = subprocess.run([executable("temporal"), "--version"], capture_output=True, text=True, check=True)
    served = re.search(r"Server (\S+?)[,)]", version.stdout)
    ui = re.search(r"UI (\S+?)\)", version.stdout)
    assert served and ui, version.stdout
    assert tags == {served.group(1)}
    assert SERVICES["temporal-ui"]["image"] == f"temporalio/ui:{ui.group(1)}"


def test_the_search_attributes_created_are_those_of_the_code() -> None:
    expected = {f"{key.name}={search_attributes.cli_type(key)}" for key in search_attributes.ALL}
    assert set(SERVICES["temporal-namespace"]["command"]) == expected
    assert environment("temporal-namespace")["TEMPORAL_NAMESPACE"] == environment("api")["TEMPORAL_NAMESPACE"]


@pytest.mark.parametrize("name", ["api", "worker"])
def test_the_api_and_the_worker_start_after_migrations_and_a_ready_temporal(name: str) -> None:
    assert depends_on(name) == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
        "temporal": "service_healthy",
        "temporal-namespace": "service_completed_successfully",
    }
    assert environment(name)["RUN_MIGRATIONS_ON_START"] == "false"
    assert SERVICES["migrate"]["command"] == ["python", "-m", "cli", "migrate"]
    assert depends_on("migrate") == {"postgres": "service_healthy"}


def test_secrets_are_files_mounted_never_values_in_the_environment() -> None:
    declared = COMPOSE["secrets"]
    for name in SERVICES:
        for source in mounted_secrets(name):
            assert source in declared, (name, source)
        for key, value in environment(name).items():
            assert key not in SECRET_SETTINGS | DATABASE_PASSWORDS, f"{name}: {key} inline"
            if urlsplit(value).scheme.startswith("postgres"):
                assert urlsplit(value).password is None, f"{name}: a password in {key}"
    for secret in declared.values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")
    assert "secrets/" in (REPO / ".gitignore").read_text().splitlines()

    # Each Statex secret is mounted under its setting's name (SECRETS_DIR=/run/secrets in the image).
    for name in OURS:
        targets = set(mounted_secrets(name).values())
        assert {target.upper() for target in targets} <= SECRET_SETTINGS | {"DATABASE_PASSWORD"}, name
        assert {"database_password", "jwt_secret", "payload_keys", "codec_operator_token"} <= targets, name
    assert re.search(r"^\s*SECRETS_DIR=/run/secrets\b", (REPO / "Dockerfile").read_text(), re.MULTILINE)


def test_long_running_services_are_health_checked_and_ours_run_unprivileged() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK ", dockerfile, re.MULTILINE)
    assert re.search(r"^USER statex$", dockerfile, re.MULTILINE)
    for name, service in SERVICES.items():
        if name in ONE_SHOTS:
            assert str(service["restart"]).startswith("on-failure"), name  # done once, retried only on failure
            continue
        assert service["restart"] == "unless-stopped", name
        check = service.get("healthcheck")
        from_the_image = name in OURS and check is None  # the Dockerfile's HEALTHCHECK (the API's)
        assert from_the_image or (check and check.get("test") and not check.get("disable")), name
        if name in OURS:
            assert "user" not in service, f"{name} must run as the image's own unprivileged user"


def test_nothing_is_published_beyond_this_hosts_loopback() -> None:
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_the_ui_decodes_through_the_codec_proxy_which_adds_the_operators_token() -> None:
    ui = environment("temporal-ui")
    endpoint = urlsplit(ui["TEMPORAL_CODEC_ENDPOINT"])
    proxy_ports = [port.split(":") for port in SERVICES["codec-proxy"]["ports"]]
    assert [endpoint.hostname, str(endpoint.port)] in [port[:2] for port in proxy_ports]
    assert endpoint.path == "/codec"
    assert ui["TEMPORAL_CODEC_PASS_ACCESS_TOKEN"] == "false"  # no OIDC token here: the proxy sends the credential

    template = (REPO / "deploy/compose/codec-proxy.conf.template").read_text()
    for route in ("decode", "encode"):
        assert f"location = /codec/{route} {{" in template
    assert template.count('proxy_set_header Authorization "${CODEC_AUTHORIZATION}";') == 2
    assert "proxy_pass http://api:8000;" in template
    assert "/run/secrets/codec_operator_token" in " ".join(SERVICES["codec-proxy"]["entrypoint"])
    assert "codec_operator_token" in mounted_secrets("codec-proxy")

    ui_port = next(port.split(":")[1] for port in SERVICES["temporal-ui"]["ports"])
    assert f"http://127.0.0.1:{ui_port}" in environment("api")["TEMPORAL_UI_ORIGINS"].split(",")  # CORS for /codec


def test_every_api_process_counts_in_metrics_and_prometheus_scrapes_services_that_exist() -> None:
    assert environment("api")["PROMETHEUS_MULTIPROC_DIR"]
    config = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text())
    for job in config["scrape_configs"]:
        for group in job["static_configs"]:
            for target in group["targets"]:
                assert target.partition(":")[0] in SERVICES, target
    api_job = next(job for job in config["scrape_configs"] if job["job_name"] == "statex-api")
    assert api_job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"
    assert "metrics_token" in mounted_secrets("prometheus")
