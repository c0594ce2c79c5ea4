"""Numbers the end-to-end tests measured, printed in pytest's summary (see tests/e2e/conftest.py)."""

MEASURED: dict[str, list[str]] = {}


def record(section: str, line: str) -> None:
    MEASURED.setdefault(section, []).append(line)
