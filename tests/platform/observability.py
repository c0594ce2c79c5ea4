"""The PromQL the platform runs: Grafana dashboard panels and Prometheus recording and alerting rules."""

import json
import re
from pathlib import Path

import yaml

from tests.platform.dockerfile import REPO

DASHBOARD_DIR = REPO / "platform" / "grafana" / "dashboards"
RULES_DIR = REPO / "platform" / "prometheus" / "rules"
# The cluster's own rules, on kube-state-metrics' series: loaded only there.
CLUSTER_RULES_DIR = REPO / "deploy" / "monitoring" / "rules"
# PromQL words that look like metric names in an expression.
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def dashboard_expressions() -> list[str]:
    return [
        target["expr"]
        for dashboard in dashboards().values()
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_expressions(rules_dir: Path = RULES_DIR) -> list[str]:
    return [
        rule["expr"]
        for path in sorted(rules_dir.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def metric_names(expression: str) -> set[str]:
    """Names of the series an expression selects (not recording rules: those have a colon)."""
    without_strings = re.sub(r'"[^"]*"', '""', expression)
    without_matchers = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_matchers)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    words = re.findall(r"(?<![\w:.])([a-zA-Z_][a-zA-Z0-9_]*)(?![\w:])(?!\s*\()", without_ranges)
    return {word for word in words if word not in KEYWORDS and not re.fullmatch(r"\d+[smhdwy]", word)}
