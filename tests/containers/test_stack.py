"""The compose stack as a user runs it: the journey through the published ports, Prometheus scraping
every service, an order as one trace in the stack's Jaeger, and every container of the image as uid
10001 on a read-only root."""

import socket
import subprocess
import threading
import time

import pytest
import requests

from tests.client import register_and_login
from tests.containers.conftest import APP_CONTAINERS, APP_VERSION, IMAGE, PORTS
from tests.jaeger import Trace, notified, order_place_traced, order_traced
from tests.journey import journey_run


def test_the_journey_through_the_published_ports(compose_stack):
    result = journey_run(compose_stack.urls)
    assert result.inbox_types_by_order == {
        result.paid_order["id"]: "order.paid",
        result.declined_order["id"]: "order.payment_failed",
    }


def test_every_service_reports_the_version_and_commit_it_was_built_from(compose_stack):
    git_sha = compose_stack.environment["GIT_SHA"]
    urls = compose_stack.urls
    versions = {service: requests.get(f"{url}/version", timeout=5).json() for service, url in urls.items()}
    assert versions == {
        service: {"service": service, "version": APP_VERSION, "git_sha": git_sha, "color": ""} for service in PORTS
    }


def test_the_image_labels_name_the_version_and_commit(compose_stack):
    labels = compose_stack.docker("image", "inspect", "--format", "{{json .Config.Labels}}", IMAGE)
    assert labels.returncode == 0, labels.stderr
    assert '"org.opencontainers.image.version":"containers-test"' in labels.stdout
    assert f'"org.opencontainers.image.revision":"{compose_stack.environment["GIT_SHA"]}"' in labels.stdout


def test_prometheus_scrapes_every_service(compose_stack):
    """`up == 1` for each service's target; the first scrape comes within one 15 s interval."""
    deadline = time.monotonic() + 60
    while True:
        answer = requests.get(
            f"{compose_stack.prometheus_url}/api/v1/query", params={"query": 'up{job="services"}'}, timeout=5
        ).json()
        up = {sample["metric"]["service"]: sample["value"][1] for sample in answer["data"]["result"]}
        if up == dict.fromkeys(PORTS, "1") or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert up == dict.fromkeys(PORTS, "1")


def test_an_order_is_one_trace_in_the_stacks_jaeger(compose_stack):
    """The services export to the `jaeger` service over the compose network; its query API on the
    published port has the order across orders, payments and, through the relay, notifications."""
    urls = compose_stack.urls
    _, tokens = register_and_login(urls["auth"])
    trace_id, client_span_id, placed = order_place_traced(urls["orders"], tokens["access_token"])
    assert placed.status_code == 201, placed.text
    deadline = time.monotonic() + 60  # the relay's poll and the SDK's 5 s batches
    while True:
        answer = requests.get(f"{compose_stack.jaeger_url}/api/traces/{trace_id}", timeout=5)
        data = answer.json().get("data") if answer.status_code == 200 else None
        trace = Trace(data[0]) if data else None
        if order_traced(trace) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert trace is not None, answer.text
    assert {"orders", "payments", "notifications"} <= trace.services()
    assert [(span["service"], span["name"], span["parent"]) for span in trace.roots()] == [
        ("orders", "POST /api/orders/", client_span_id)
    ]
    assert notified(trace, "order.paid")
    assert {span["service.version"] for span in trace.spans} == {APP_VERSION}


@pytest.mark.parametrize("service", APP_CONTAINERS)
def test_the_container_runs_as_10001_on_a_read_only_root(compose_stack, service):
    container = compose_stack.inspect(service)
    assert (container["Config"]["User"], container["HostConfig"]["ReadonlyRootfs"]) == ("10001:10001", True)
    identity = compose_stack.exec(service, "id", "-u")
    assert identity.stdout.strip() == "10001"
    written = compose_stack.exec(service, "python", "-c", "open('/app/probe', 'w')")
    assert written.returncode != 0
    assert "Read-only file system" in written.stderr
    in_tmp = compose_stack.exec(service, "python", "-c", "open('/tmp/probe', 'w').write('ok')")
    assert in_tmp.returncode == 0, in_tmp.stderr


def test_no_container_can_open_a_connection_to_this_machine(compose_stack):
    """engine.sh's own engine only: this machine listens on its side of the link to the engine's
    namespace, and a container's connection to it is dropped, while the machine reaches the
    published ports (every test above)."""
    engine = compose_stack.engine
    if "ENGINE_HOST_ADDRESS" not in engine:
        pytest.skip("the stack runs on an engine engine.sh did not start; its network is not ours to check")
    routes = subprocess.run(
        ["ip", "-netns", engine["ENGINE_NETNS"], "route", "show", "default"], capture_output=True, text=True, check=True
    )
    assert routes.stdout == ""
    with socket.create_server((engine["ENGINE_HOST_ADDRESS"], 0)) as listener:
        accepted = []
        threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
        port = listener.getsockname()[1]
        attempt = compose_stack.exec(
            "orders",
            "python",
            "-c",
            f"import socket; socket.create_connection(('{engine['ENGINE_HOST_ADDRESS']}', {port}), timeout=3)",
        )
        assert attempt.returncode != 0
        assert "timed out" in attempt.stderr
        assert accepted == []
