"""Schemathesis against every service's OpenAPI document, served by the real gunicorn processes.

Property-based requests (the schema's examples, its boundaries, random valid and invalid data, and
stateful sequences that follow the links it infers) with a bounded budget: no answer may be a
server error, and every answer must be what the document says (status code, content type, headers,
body). What schemathesis ran and found is printed in the test summary.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client import register_and_login
from tests.e2e.flows import service_token
from tests.e2e.measurements import record

pytestmark = pytest.mark.e2e

ST = Path(sys.executable).parent / "st"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "use_after_free",
        "ensure_resource_availability",
    ]
)
# The budget: test cases per operation and phase, and a fixed seed (the same cases each run, so a
# failure reproduces; SCHEMATHESIS_SEED explores others).
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "15")
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261201")


@pytest.mark.parametrize("service", ["auth", "orders", "payments", "notifications"])
def test_the_api_answers_as_its_openapi_document_says(stack, service, tmp_path):
    _, tokens = register_and_login(stack["auth"].url)
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            str(ST),
            "run",
            f"{stack[service].url}/api/schema/",
            "--checks",
            CHECKS,
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--max-examples",
            MAX_EXAMPLES,
            "--seed",
            SEED,
            # One worker: hypothesis describes strategies with ast.parse, which CPython 3.11 cannot
            # run in several threads at once ("AST constructor recursion depth mismatch").
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        env={
            **os.environ,
            "SCHEMATHESIS_HOOKS": "tests.e2e.schemathesis_hooks",
            "SCHEMATHESIS_USER_TOKEN": tokens["access_token"],
            "SCHEMATHESIS_SERVICE_TOKEN": service_token(stack, "orders"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        },
        # schemathesis keeps a cache of what it generated in .schemathesis/ under its working directory
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert report.exists(), result.stdout[-20000:] + result.stderr[-5000:]
    ran = json.loads(report.read_text())
    phases = ", ".join(f"{name} {phase['status']}" for name, phase in ran["phases"].items())
    cases = ran["test_cases"]
    record(
        "schemathesis (seed " + SEED + f", {MAX_EXAMPLES} cases per operation and phase)",
        f"{service}: {ran['operations']['tested']} operations, {cases['generated']} test cases, "
        f"{cases['with_failures']} with failures, {len(ran['errors'])} errors in {ran['running_time']:.1f} s; {phases}",
    )
    accepted = {
        operation: (
            sum(phase["accepted"] for phase in rates.values()),
            sum(phase["accepted"] + phase["rejected"] for phase in rates.values()),
        )
        for operation, rates in ran.get("valid_rates", {}).items()
    }
    record(
        "schemathesis (seed " + SEED + f", {MAX_EXAMPLES} cases per operation and phase)",
        f"  {service}, valid cases the API accepted: "
        + ", ".join(f"{operation} {taken}/{tried}" for operation, (taken, tried) in sorted(accepted.items())),
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    assert (cases["with_failures"], ran["errors"]) == (0, [])
