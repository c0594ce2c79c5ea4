#!/usr/bin/env python
"""Django's command-line entry point for every service; SERVICE picks which one."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.settings")
    # Commands are not the served process: their metrics must not land in (or need) the
    # directory gunicorn's workers share, which may not exist yet (a migration Job).
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from django.core.management import execute_from_command_line  # noqa: PLC0415 (after the settings module is chosen)

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
