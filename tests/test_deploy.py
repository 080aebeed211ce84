"""deploy/: the Prometheus config, alert rules and Grafana dashboard parse, and name only metrics that exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

import metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
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
    assert {job["job_name"] for job in config["scrape_configs"]} == {"statex-api", "statex-worker"}
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
