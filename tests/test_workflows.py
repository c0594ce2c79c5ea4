"""The GitHub Actions workflows are valid (schema), pass actionlint (expressions, contexts, the
shell of every `run:` through shellcheck) and zizmor's security audit, offline; every action is
pinned by commit SHA with its version beside it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
ACTIONLINT = ("github.com/rhysd/actionlint/cmd/actionlint", "v1.7.12")


def test_there_are_workflows():
    assert WORKFLOWS


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_workflow_matches_the_github_workflow_schema(workflow):
    result = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_zizmor():
    result = subprocess.run(
        [str(BIN / "zizmor"), "--offline", "--no-progress", str(REPO / ".github" / "workflows")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_pass_actionlint():
    # Built from the Go module proxy into the machine's cache once (platform/tools/go-tool.sh).
    built = subprocess.run(
        [str(REPO / "platform" / "tools" / "go-tool.sh"), *ACTIONLINT], capture_output=True, text=True, check=False
    )
    assert built.returncode == 0, built.stderr
    result = subprocess.run(
        [built.stdout.strip(), "-shellcheck", str(BIN / "shellcheck"), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_action_is_pinned_by_commit_with_its_version_named(workflow):
    uses = re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", workflow.read_text(), flags=re.MULTILINE)
    assert all(re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", action) for action, _ in uses), uses
    assert all(re.fullmatch(r"\s+#\s+v\d+\.\d+\.\d+", comment) for _, comment in uses), uses


def test_each_action_is_pinned_to_one_commit_across_the_workflows():
    """One release of each action everywhere (their Node 24 releases): a workflow left on an older
    pin runs another action than the one checked."""
    pins: dict[str, set[str]] = {}
    for workflow in WORKFLOWS:
        for action in re.findall(r"^\s*(?:-\s+)?uses:\s*(\S+)", workflow.read_text(), flags=re.MULTILINE):
            name, commit = action.split("@")
            pins.setdefault(name, set()).add(commit)

    assert {name: commits for name, commits in pins.items() if len(commits) > 1} == {}
