"""The import-linter contracts of pyproject.toml hold for the code, and do fail on a crossing."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_code_keeps_every_contract():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout
    assert "Contracts: 2 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("apps/core/tokens_extra.py", "from apps.auth import keys", "The kernel (apps.core) imports no service app"),
        ("apps/orders/reads.py", "from apps.payments.models import Payment", "Service apps are independent"),
        ("apps/payments/tests/test_extra.py", "import apps.notifications.models", "Service apps are independent"),
    ],
    ids=["kernel-imports-auth", "orders-imports-payments", "a-test-imports-another-service"],
)
def test_a_crossing_breaks_a_contract(tmp_path, module, line, broken):
    shutil.copytree(REPO / "apps", tmp_path / "apps", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / module).write_text(f'"""A crossing the contracts must catch."""\n\n{line}\n')
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout
    assert "BROKEN" in result.stdout
