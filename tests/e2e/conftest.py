"""End-to-end tests print what they measured (fetch counts, latencies, schemathesis' results) at the end
of the run, passed or not: the numbers are part of what the tests show."""

from tests.e2e.measurements import MEASURED


def pytest_terminal_summary(terminalreporter):
    for section, lines in MEASURED.items():
        terminalreporter.write_sep("-", section)
        for line in lines:
            terminalreporter.write_line(line)
