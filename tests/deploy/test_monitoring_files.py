"""deploy/: the Prometheus config, alert rules and Grafana dashboard parse, and name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from observability import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SUFFIXES = ("_total", "_bucket", "_count", "_sum", "_created")


def expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana/dashboards/statex.json").read_text())
    found += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return found


def defined_names() -> set[str]:
    return {collector._name for collector in vars(metrics).values() if hasattr(collector, "_name")}


def test_the_deploy_files_parse() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    assert {job["job_name"] for job in config["scrape_configs"]} == {"statex-api", "statex-worker", "temporal-server"}
    assert expressions()


def test_alerts_and_panels_name_only_metrics_the_project_exports() -> None:
    defined = defined_names()
    used = {name for expr in expressions() for name in re.findall(r"\bstatex_[a-z_]+", expr)}
    unknown = {
        name for name in used if name not in defined and not any(name.removesuffix(s) in defined for s in SUFFIXES)
    }
    assert used and not unknown, unknown


def test_labels_used_on_project_metrics_exist() -> None:
    labels = {
        collector._name: set(collector._labelnames)
        for collector in vars(metrics).values()
        if hasattr(collector, "_labelnames")
    }
    for expr in expressions():
        for name, selector in re.findall(r"\b(statex_[a-z_]+)\{([^}]*)\}", expr):
            base = next(n for n in labels if name == n or any(name == n + s for s in SUFFIXES))
            for label in re.findall(r"(\w+)\s*=~?", selector):
                assert label in labels[base], (name, label)


def test_the_workers_compose_service_gives_bubblewrap_what_it_needs() -> None:
    """The worker verifies generated code in bubblewrap: user namespaces (Docker's seccomp profile), mounts (its
    AppArmor profile) and a fresh /proc (its masked paths) must be allowed, for the worker only; no capability is
    added; the container's limits bound all runs together (no per-run cgroups in a container)."""
    services = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]
    worker = services["worker"]
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(worker["security_opt"])
    assert "cap_add" not in worker and not worker.get("privileged")
    assert worker["mem_limit"] and worker["pids_limit"] and worker["cpus"]
    for name, service in services.items():
        if name != "worker":
            assert "security_opt" not in service and not service.get("privileged"), name


def test_the_image_carries_bubblewrap_and_runs_as_an_unprivileged_user() -> None:
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    assert re.search(r"apt-get install [^\n]*\bbubblewrap\b", dockerfile)
    assert re.search(r"^USER statex$", dockerfile, re.MULTILINE)
    # The Kubernetes worker's equivalent of the compose worker's three options: tests/deploy/test_kubernetes.py.


def test_the_worker_image_carries_the_browser_and_the_api_image_does_not() -> None:
    """Two targets of one Dockerfile: the worker's installs Debian's chromium (the pictures of generated apps), the
    API's (also the migrations') does not; compose builds each service from its own."""
    dockerfile = (DEPLOY.parent / "Dockerfile").read_text()
    stages = dict(re.findall(r"^FROM \S+ AS (\w+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.MULTILINE | re.DOTALL))
    installs_browser = re.compile(r"apt-get install [^\n]*\bchromium\b")
    assert installs_browser.search(stages["worker"])
    assert not any(installs_browser.search(stages[name]) for name in ("os", "app", "api"))
    assert re.search(r"^FROM os AS api$", dockerfile, re.MULTILINE)  # not built on the worker's stage
    assert re.search(r"^USER statex$", stages["worker"], re.MULTILINE)
    services = yaml.safe_load((DEPLOY.parent / "docker-compose.yml").read_text())["services"]
    targets = {name: service["build"]["target"] for name, service in services.items() if "build" in service}
    assert targets == {"migrate": "api", "api": "api", "worker": "worker"}
    assert services["api"]["image"] != services["worker"]["image"]
