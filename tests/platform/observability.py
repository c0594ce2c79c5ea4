"""The PromQL the platform runs: Grafana dashboard panels and Prometheus recording and alerting rules."""

import json

import yaml

from tests.platform.dockerfile import REPO

DASHBOARD_DIR = REPO / "platform" / "grafana" / "dashboards"
RULES_DIR = REPO / "platform" / "prometheus" / "rules"


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for dashboard in dashboards().values()
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_expressions() -> list[str]:
    return [
        rule["expr"]
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]
