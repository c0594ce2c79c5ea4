"""platform/compose.yaml: valid Compose, and consistent with the code it runs.

No Docker engine runs here, so the stack is not started: these tests validate the file against the
Compose specification's schema, interpolate it with the example env file, and check every service
of the platform's image against the code (service names, probe paths, ports, the variables the
settings require, the management commands it runs).
"""

import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from django.core.management import get_commands

from apps.core.probes import VIEWS
from apps.services import CHOICES, SERVICES
from tests.platform import compose, dockerfile
from tests.platform.dockerfile import REPO

CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"
MODEL = compose.load()
RAW = compose.raw()
APP = compose.app_services(MODEL)
WEB = compose.web_services(MODEL)
RUNTIME = dockerfile.stages()[-1]
IMAGE_PORT = RUNTIME.env()["PORT"]
IMAGE_USER = RUNTIME.all("USER")[-1].arguments


def test_compose_file_matches_the_compose_specification():
    result = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(compose.COMPOSE_FILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (result.returncode, result.stderr) == (0, ""), result.stdout


def test_env_example_defines_every_variable_the_file_requires():
    required = {match.group(1) for match in re.finditer(r"\$\{([A-Za-z0-9_]+):\?", compose.COMPOSE_FILE.read_text())}
    assert required - set(compose.env_file()) == set()


def test_env_example_holds_no_variable_the_file_does_not_use():
    assert set(compose.env_file()) - compose.referenced_variables(compose.COMPOSE_FILE.read_text()) == set()


def test_the_file_refuses_to_start_without_the_secrets():
    with pytest.raises(compose.MissingVariableError):
        compose.load({})


# --- the platform's services ---------------------------------------------------------------------------


def test_the_four_services_run_from_the_one_image():
    assert {service["environment"]["SERVICE"] for service in WEB.values()} == set(SERVICES)


def test_each_service_is_named_after_its_service():
    assert {name: service["environment"]["SERVICE"] for name, service in WEB.items()} == {
        name: name for name in SERVICES
    }


def test_each_container_of_the_image_serves_or_prepares_one_service():
    assert {name: service["environment"].get("SERVICE") for name, service in APP.items()} == {
        "auth-migrate": "auth",
        "orders-migrate": "orders",
        "payments-migrate": "payments",
        "notifications-migrate": "notifications",
        "auth-signing-key": None,  # plain Python, no Django: only generates a key file
        "auth-clients": "auth",
        "auth": "auth",
        "orders": "orders",
        "payments": "payments",
        "notifications": "notifications",
        "orders-relay": "orders",
        "payments-relay": "payments",
        "notifications-email-worker": "notifications",
    }


def test_every_service_named_is_a_valid_service():
    named = {service["environment"]["SERVICE"] for service in APP.values() if "SERVICE" in service["environment"]}
    assert named - set(CHOICES) == set()


def test_the_image_is_built_from_the_repository_root_with_the_platform_dockerfile():
    assert {(service["build"]["context"], service["build"]["dockerfile"]) for service in APP.values()} == {
        ("..", "platform/Dockerfile")
    }


def test_only_the_four_services_run_the_image_command():
    # the image's CMD is gunicorn with the platform config; migrations never run from it
    assert sorted(WEB) == sorted(SERVICES)


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_published_port_reaches_the_port_gunicorn_binds(name):
    (mapping,) = WEB[name]["ports"]
    host, host_port, container_port = mapping.split(":")
    assert (host, int(host_port), container_port, WEB[name]["environment"]["PORT"]) == (
        "127.0.0.1",
        SERVICES[name].default_port,
        IMAGE_PORT,
        IMAGE_PORT,
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_healthcheck_asks_readyz_on_the_container_port(name):
    command = WEB[name]["healthcheck"]["test"]
    (url,) = re.findall(r"http://[^'\"\s]+", " ".join(command))
    parts = urlsplit(url)
    assert (parts.hostname, str(parts.port), parts.path, parts.path in VIEWS) == (
        "127.0.0.1",
        IMAGE_PORT,
        "/readyz",
        True,
    )


def test_healthcheck_uses_python_because_the_image_has_no_curl():
    assert {tuple(service["healthcheck"]["test"][:3]) for service in WEB.values()} == {("CMD", "python", "-c")}


def test_healthcheck_one_liner_is_valid_python():
    source = WEB["auth"]["healthcheck"]["test"][3]
    compile(source, "healthcheck", "exec")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_waits_for_its_migration_to_complete(name):
    assert WEB[name]["depends_on"][f"{name}-migrate"] == {"condition": "service_completed_successfully"}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_migration_runs_once_as_its_own_step_for_its_service(name):
    migrate = MODEL["services"][f"{name}-migrate"]
    assert (migrate["command"], migrate["environment"]) == (
        ["python", "manage.py", "migrate", "--no-input"],
        WEB[name]["environment"],
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_migration_waits_for_a_healthy_postgres(name):
    assert MODEL["services"][f"{name}-migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_auth_waits_for_its_signing_key_and_the_service_clients():
    assert {
        dependency: WEB["auth"]["depends_on"][dependency]["condition"] for dependency in WEB["auth"]["depends_on"]
    } == {
        "auth-migrate": "service_completed_successfully",
        "auth-signing-key": "service_completed_successfully",
        "auth-clients": "service_completed_successfully",
    }


def test_service_clients_are_provisioned_after_auth_migrates():
    assert MODEL["services"]["auth-clients"]["depends_on"] == {
        "auth-migrate": {"condition": "service_completed_successfully"}
    }


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_stop_grace_period_outlasts_gunicorn_graceful_timeout(name):
    grace_seconds = int(WEB[name]["stop_grace_period"].removesuffix("s"))
    assert grace_seconds > 30  # platform/gunicorn.conf.py graceful_timeout, pinned in test_gunicorn_config.py


# --- configuration the settings require ------------------------------------------------------------


def _deploy_check(environment: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env={**RUNTIME.env(), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", **environment},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def deploy_checks() -> dict[str, tuple[int, str]]:
    """`manage.py check --deploy` in each service's compose environment, run side by side."""
    running = {name: _deploy_check(service["environment"]) for name, service in WEB.items()}
    return {name: (process.wait(timeout=120), process.stdout.read()) for name, process in running.items()}


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_settings_load_and_pass_the_deploy_checks_with_the_compose_environment(name, deploy_checks):
    returncode, output = deploy_checks[name]
    assert returncode == 0, output


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_debug_stays_off(name):
    assert "DEBUG" not in WEB[name]["environment"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_each_service_has_its_own_postgres_database_and_role(name):
    url = urlsplit(WEB[name]["environment"]["DATABASE_URL"])
    assert (url.scheme, url.username, url.hostname, url.port, url.path) == (
        "postgres",
        name,
        "postgres",
        5432,
        f"/{name}",
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_service_urls_point_at_the_compose_services(name):
    environment = WEB[name]["environment"]
    assert {key: environment[key] for key in ("AUTH_URL", "ORDERS_URL", "PAYMENTS_URL", "NOTIFICATIONS_URL")} == {
        f"{service.upper()}_URL": f"http://{service}:{IMAGE_PORT}" for service in SERVICES
    }


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_allowed_hosts_admit_the_compose_name_and_the_published_port(name):
    assert WEB[name]["environment"]["ALLOWED_HOSTS"].split(",") == [name, "localhost", "127.0.0.1"]


def test_auth_reads_its_signing_key_from_the_volume_the_key_step_fills():
    key_file = Path(WEB["auth"]["environment"]["AUTH_SIGNING_KEY_FILE"])
    key_step = MODEL["services"]["auth-signing-key"]
    assert (
        f"auth-signing-key:{key_file.parent}:ro" in WEB["auth"]["volumes"],
        f"auth-signing-key:{key_file.parent}" in key_step["volumes"],
        key_step["environment"]["AUTH_SIGNING_KEY_FILE"],
    ) == (True, True, str(key_file))


@pytest.mark.parametrize("name", ["orders", "payments", "notifications"])
def test_callers_authenticate_as_their_own_client(name):
    assert WEB[name]["environment"]["SERVICE_CLIENT_ID"] == name


@pytest.mark.parametrize("name", ["orders", "payments", "notifications"])
def test_client_secret_is_the_one_provisioned_in_auth(name):
    provisioned = MODEL["services"]["auth-clients"]["environment"][f"{name.upper()}_CLIENT_SECRET"]
    assert WEB[name]["environment"]["SERVICE_CLIENT_SECRET"] == provisioned


def _client_provisioning(text: str) -> dict[str, list[str]]:
    """client id -> scopes, from every `manage.py service_client_ensure` call in a shell text."""
    calls = {}
    flat = text.replace("\\\n", " ")
    for call in re.findall(r"service_client_ensure ([^;\n]+)", flat):
        words = shlex.split(call)
        scopes = [words[index + 1] for index, word in enumerate(words) if word == "--scope"]
        calls[words[0]] = scopes
    return calls


def test_provisioned_clients_and_scopes_are_those_of_the_local_setup():
    command = MODEL["services"]["auth-clients"]["command"][-1]
    local_setup = (REPO / "platform" / "local-setup.sh").read_text()
    assert _client_provisioning(command) == _client_provisioning(local_setup)


def test_provisioned_clients():
    command = MODEL["services"]["auth-clients"]["command"][-1]
    assert _client_provisioning(command) == {
        "orders": ["payments:charge", "payments:refund", "notifications:publish"],
        "payments": ["notifications:publish"],
        "notifications": [],
    }


def test_secrets_are_interpolated_never_written_in_the_file():
    written = {
        (name, key): value
        for name, service in RAW["services"].items()
        for key, value in (service.get("environment") or {}).items()
        if re.search(r"SECRET|PASSWORD|DATABASE_URL", key) and "${" not in str(value)
    }
    assert written == {}


# --- relays and one-shot commands ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["orders", "payments"])
def test_outbox_relay_runs_beside_the_services_that_write_events(name):
    relay = MODEL["services"][f"{name}-relay"]
    assert (relay["command"], relay["environment"], relay["init"]) == (
        ["python", "manage.py", "outbox_relay", "--metrics-port", "9100"],
        WEB[name]["environment"],
        True,
    )


def _management_commands_used() -> set[str]:
    used = set()
    for service in APP.values():
        command = service.get("command") or []
        text = " ".join(command) if isinstance(command, list) else command
        used |= set(re.findall(r"manage\.py (\w+)", text))
    return used


def test_management_commands_used_are_these():
    assert _management_commands_used() == {"migrate", "service_client_ensure", "outbox_relay", "email_deliver"}


@pytest.mark.parametrize("command", sorted(_management_commands_used()))
def test_management_commands_used_exist(command):
    assert command in get_commands()


# --- the containers' security ---------------------------------------------------------------------------


def test_every_container_of_the_image_has_a_read_only_root_and_a_writable_tmp():
    writable = ["/tmp"]  # noqa: S108
    assert {name: (service["read_only"], service["tmpfs"]) for name, service in APP.items()} == dict.fromkeys(
        APP, (True, writable)
    )


def test_every_container_of_the_image_drops_all_capabilities_and_privilege_escalation():
    assert {name: (service["cap_drop"], service["security_opt"]) for name, service in APP.items()} == {
        name: (["ALL"], ["no-new-privileges:true"]) for name in APP
    }


def test_only_the_key_step_runs_as_another_user_than_the_image():
    assert {name: service["user"] for name, service in APP.items() if "user" in service} == {"auth-signing-key": "0:0"}


def test_the_key_step_has_no_network_and_only_the_chown_capability():
    key_step = MODEL["services"]["auth-signing-key"]
    assert (key_step["network_mode"], key_step["cap_add"]) == ("none", ["CHOWN"])


def test_the_key_step_hands_the_key_to_the_image_user():
    script = MODEL["services"]["auth-signing-key"]["command"][-1]
    uid, gid = IMAGE_USER.split(":")
    assert f"os.chown(path, {uid}, {gid})" in script


@pytest.mark.parametrize("name", ["postgres", "prometheus", "grafana", *sorted(SERVICES)])
def test_published_ports_listen_on_loopback_only(name):
    assert all(mapping.startswith("127.0.0.1:") for mapping in MODEL["services"][name].get("ports", []))


def test_postgres_is_not_published():
    assert "ports" not in MODEL["services"]["postgres"]


# --- PostgreSQL, Prometheus, Grafana ------------------------------------------------------------------------


def test_postgres_gets_every_service_database_password():
    passwords = {
        key: value
        for key, value in MODEL["services"]["postgres"]["environment"].items()
        if key.endswith("_DB_PASSWORD")
    }
    assert passwords == {
        f"{name.upper()}_DB_PASSWORD": urlsplit(WEB[name]["environment"]["DATABASE_URL"]).password for name in SERVICES
    }


def test_postgres_runs_the_database_init_script_on_first_start():
    assert (
        "./postgres/init-databases.sh:/docker-entrypoint-initdb.d/10-init-databases.sh:ro"
        in MODEL["services"]["postgres"]["volumes"]
    )


def test_the_init_script_creates_the_four_service_databases_by_default():
    script = (REPO / "platform" / "postgres" / "init-databases.sh").read_text()
    (default,) = re.findall(r"\$\{SERVICE_DATABASES:-([^}]*)\}", script)
    assert default.split() == list(SERVICES)


def test_prometheus_mounts_the_platform_config():
    assert "./prometheus:/etc/prometheus:ro" in MODEL["services"]["prometheus"]["volumes"]


def test_grafana_mounts_provisioning_and_dashboards():
    assert MODEL["services"]["grafana"]["volumes"][:2] == [
        "./grafana/provisioning:/etc/grafana/provisioning:ro",
        "./grafana/dashboards:/etc/grafana/dashboards:ro",
    ]


@pytest.mark.parametrize(
    "relative", ["prometheus", "postgres/init-databases.sh", "grafana/provisioning", "grafana/dashboards"]
)
def test_mounted_paths_exist_beside_the_compose_file(relative):
    assert (compose.COMPOSE_FILE.parent / relative).exists()
