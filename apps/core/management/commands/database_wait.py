"""Wait until this service's database answers: `manage.py database_wait [--migrated] [--timeout 300]`.

One-shot steps that need the database (migrations, provisioning, schedules) run it first, as an init
container: on a cluster that starts everything at once, the database comes up after them, and a
step that fails on its first connection only burns its retries. It exits 0 as soon as `SELECT 1`
answers (with --migrated: and every migration of the service is applied, for steps that need its
tables), and 1 with the last reason once the timeout has passed.
"""

import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Wait until the service's database accepts a connection, up to --timeout seconds."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait at most")
        parser.add_argument("--interval", type=float, default=1.0, help="seconds between attempts")
        parser.add_argument("--migrated", action="store_true", help="also wait until no migration is pending")

    def handle(self, *args, timeout, interval, migrated, **options):
        if timeout <= 0 or interval <= 0:
            raise CommandError("--timeout and --interval must be positive")
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                executor = MigrationExecutor(connection)
                pending = executor.migration_plan(executor.loader.graph.leaf_nodes()) if migrated else []
                problem = f"{len(pending)} migrations not applied yet" if pending else ""
            except DatabaseError as error:
                connection.close()
                problem = str(error)
            if problem:
                waited = time.monotonic() - started
                if waited + interval > timeout:
                    raise CommandError(
                        f"the database was not ready within {timeout:.0f} s ({attempts} attempts): {problem}"
                    )
                time.sleep(interval)
                continue
            self.stdout.write(f"database answered after {time.monotonic() - started:.1f} s ({attempts} attempts)")
            return
