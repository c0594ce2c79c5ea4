"""Prometheus and Grafana configuration of the compose stack, checked against compose.yaml and the code.

Where promtool (Debian's `prometheus` package) is installed, it validates the config and the rules
and runs the rules' unit tests in platform/prometheus/tests. Whether the metric names in dashboards
and rules exist is checked against a running service in test_image_process.py.
"""

import re
import shutil
import subprocess
from urllib.parse import urlsplit

import yaml

from apps.core.probes import VIEWS
from apps.services import SERVICES
from tests.platform import compose, dockerfile, observability
from tests.platform.dockerfile import REPO

PROMETHEUS_CONFIG = REPO / "platform" / "prometheus" / "prometheus.yml"
RULES = REPO / "platform" / "prometheus" / "rules"
RULE_TESTS = REPO / "platform" / "prometheus" / "tests"
GRAFANA = REPO / "platform" / "grafana"
PROMETHEUS = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "platform.yaml").read_text())
DASHBOARDS = observability.dashboards()
MODEL = compose.load()
IMAGE_PORT = dockerfile.stages()[-1].env()["PORT"]


def _job(name: str) -> dict:
    (job,) = [job for job in PROMETHEUS["scrape_configs"] if job["job_name"] == name]
    return job


# `make test` installs it (Debian's prometheus); a missing promtool fails these tests, never skips them.
PROMTOOL = shutil.which("promtool") or "promtool"


def promtool(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *arguments], capture_output=True, text=True, check=False, timeout=60)


def test_promtool_accepts_the_prometheus_config():
    result = promtool("check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_the_rules():
    result = promtool("check", "rules", *map(str, sorted(RULES.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_pass_their_promtool_unit_tests():
    result = promtool("test", "rules", *map(str, sorted(RULE_TESTS.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_loads_every_rule_file():
    matched = {path for pattern in PROMETHEUS["rule_files"] for path in PROMETHEUS_CONFIG.parent.glob(pattern)}
    assert matched == set(RULES.glob("*.yml")) != set()


def test_every_rule_file_has_unit_tests():
    tested = {
        (RULE_TESTS / name).resolve()
        for path in RULE_TESTS.glob("*.yml")
        for name in yaml.safe_load(path.read_text())["rule_files"]
    }
    assert tested == {path.resolve() for path in RULES.glob("*.yml")}


def test_prometheus_scrapes_each_service_once_labelled_with_its_name():
    targets = {
        target: group["labels"]["service"]
        for group in _job("services")["static_configs"]
        for target in group["targets"]
    }
    assert targets == {f"{name}:{IMAGE_PORT}": name for name in SERVICES}


def test_scraped_targets_are_services_of_the_compose_file():
    hosts = {target.split(":")[0] for group in _job("services")["static_configs"] for target in group["targets"]}
    assert hosts - set(MODEL["services"]) == set()


def test_prometheus_scrapes_the_metrics_endpoint_of_the_probes():
    assert (_job("services")["metrics_path"], _job("services")["metrics_path"] in VIEWS) == ("/metrics", True)


def test_grafana_datasource_is_the_compose_prometheus():
    (datasource,) = DATASOURCES["datasources"]
    url = urlsplit(datasource["url"])
    (published,) = MODEL["services"]["prometheus"]["ports"]
    assert (datasource["type"], url.hostname, str(url.port)) == ("prometheus", "prometheus", published.split(":")[-1])


def test_grafana_loads_dashboards_from_where_compose_mounts_them():
    (provider,) = PROVIDERS["providers"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in MODEL["services"]["grafana"]["volumes"]}
    assert mounts[provider["options"]["path"]] == "./grafana/dashboards"


def test_dashboards_exist():
    assert sorted(DASHBOARDS) == [
        "platform-bluegreen.json",
        "platform-outbox-database.json",
        "platform-services.json",
        "platform-slo.json",
    ]


def _panels(dashboard: dict) -> list[dict]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_every_panel_queries_the_provisioned_datasource():
    (datasource,) = DATASOURCES["datasources"]
    uids = {
        target["datasource"]["uid"]
        for dashboard in DASHBOARDS.values()
        for panel in _panels(dashboard)
        for target in panel["targets"]
    }
    assert uids == {datasource["uid"]}


def test_every_panel_says_what_it_shows_and_has_a_unit():
    vague = [
        (dashboard["uid"], panel["title"])
        for dashboard in DASHBOARDS.values()
        for panel in _panels(dashboard)
        if not panel.get("description") or "unit" not in panel["fieldConfig"]["defaults"]
    ]
    assert vague == []


def test_panels_do_not_overlap():
    for dashboard in DASHBOARDS.values():
        cells = [
            (panel["gridPos"]["x"] + dx, panel["gridPos"]["y"] + dy)
            for panel in dashboard["panels"]
            for dx in range(panel["gridPos"]["w"])
            for dy in range(panel["gridPos"]["h"])
        ]
        assert len(cells) == len(set(cells)), dashboard["uid"]
        assert max(x for x, _ in cells) < 24, dashboard["uid"]


def test_dashboard_uids_are_unique():
    uids = [dashboard["uid"] for dashboard in DASHBOARDS.values()]
    assert len(uids) == len(set(uids))


def test_the_service_variable_is_the_scrape_label_and_selects_on_it():
    for dashboard in DASHBOARDS.values():
        (variable,) = [variable for variable in dashboard["templating"]["list"] if variable["name"] == "service"]
        assert variable["query"]["query"] == 'label_values(up{service!=""}, service)'
        uses = [
            [*re.findall(r'(\w+)=~?"\$service"', target["expr"]), target["expr"].count("$service")]
            for panel in _panels(dashboard)
            for target in panel["targets"]
            if "$service" in target["expr"]
        ]
        assert uses != [] and all(names == ["service"] * count for *names, count in uses), dashboard["uid"]


def test_prometheus_scrapes_every_background_process_on_the_port_its_command_serves():
    targets = {
        target: (group["labels"]["service"], group["labels"]["component"])
        for group in _job("workers")["static_configs"]
        for target in group["targets"]
    }
    background = {
        name: service
        for name, service in MODEL["services"].items()
        if service.get("command", [None, None, None])[2:3] in (["outbox_relay"], ["email_deliver"])
    }
    served = {
        f"{name}:{service['command'][service['command'].index('--metrics-port') + 1]}": (
            service["environment"]["SERVICE"]
        )
        for name, service in background.items()
    }
    assert {target: service for target, (service, _) in targets.items()} == served
    assert len(served) == 3
