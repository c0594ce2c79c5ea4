"""The Grafana dashboards of platform/grafana/dashboards, and the PromQL their panels run."""

import json

from tests.platform.dockerfile import REPO

DASHBOARD_DIR = REPO / "platform" / "grafana" / "dashboards"


def dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARD_DIR.glob("*.json"))}


def expressions() -> list[str]:
    return [
        target["expr"]
        for dashboard in dashboards().values()
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
