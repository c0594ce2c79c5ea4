"""`make dr-drill`: back up every service's PostgreSQL database, lose them, restore, prove, time it.

The drill runs the four services for real (gunicorn, relays, email worker; tests/live.py), fills
them with journeys' data, and then does what an operator does after losing the databases:

1. backup: each database dumped with platform/dr/backup.sh (pg_dump custom format, age-encrypted),
   inside an exported snapshot in which every table's row count and checksum are taken too;
   auth's signing key backed up the same way (a backup of its own: it is not in any database);
2. writes after the backup: orders placed after the last backup, which a restore cannot bring back;
3. loss: every process stopped, every database dropped, the signing key deleted;
4. restore into fresh databases with platform/dr/restore.sh, the key restored, migrations applied,
   the services started on the restored data;
5. verification: every table's row count and checksum equal the backup's; the journey again on the
   restored data (the old user logs in, refreshes the token issued before the loss, cancels a
   restored paid order and is refunded by the restored payments); a new journey end to end;
   every outbox drained and every event in the inbox exactly once.

It prints the recovery point (RPO: the writes lost, and how old the newest restored write was at
the loss) and the recovery time (RTO: from the loss to the old user reading their order again).
Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

import jwt  # noqa: E402
import psycopg  # noqa: E402
import requests  # noqa: E402

from tests.client import PASSWORD, register_and_login  # noqa: E402
from tests.journey import journey_run, order_place  # noqa: E402
from tests.live import Databases, Stack, stack_start  # noqa: E402

SERVICES = ("auth", "orders", "payments", "notifications")
logger = logging.getLogger("dr-drill")
DR = REPO / "platform" / "dr"

# Every table's rows in a canonical order (by each row's own hash, so no primary key is needed) and
# in UTC (a row's text form of a timestamp follows the session's time zone).
CHECKSUM = (
    "SELECT count(*), md5(coalesce(string_agg(h, '' ORDER BY h), '')) FROM (SELECT md5(t::text) AS h FROM {} t) s"
)


class DrillFailed(AssertionError):
    """A check of the drill did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise DrillFailed(message)


def run(command: list[str], *, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    result = subprocess.run(  # noqa: S603  (commands of this repository and Debian's tools)
        command, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise DrillFailed(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result.stdout.strip()


def table_checksums(connection: psycopg.Connection) -> dict[str, tuple[int, str]]:
    connection.execute("SET TIME ZONE 'UTC'")
    tables = [
        row[0]
        for row in connection.execute(
            "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
    ]
    return {table: tuple(connection.execute(CHECKSUM.format(table)).fetchone()) for table in tables}


@dataclass
class Backup:
    service: str
    path: Path
    checksums: dict[str, tuple[int, str]]
    taken_at: dt.datetime  # the snapshot's time: the newest write a restore of it brings back


@dataclass
class Keys:
    """The age key pair of the drill: backups are encrypted to the recipient, restored with the identity."""

    identity: Path
    recipients: Path

    @classmethod
    def generate(cls, folder: Path) -> Keys:
        identity = folder / "backup-identity.txt"
        run(["age-keygen", "-o", str(identity)])
        recipients = folder / "backup-recipients.txt"
        recipients.write_text(run(["age-keygen", "-y", str(identity)]) + "\n")
        return cls(identity=identity, recipients=recipients)


def backup_database(service: str, database_url: str, folder: Path, keys: Keys) -> Backup:
    """backup.sh inside an exported snapshot, in which the checksums are taken: both see the same rows."""
    with psycopg.connect(database_url) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot, taken_at = connection.execute("SELECT pg_export_snapshot(), clock_timestamp()").fetchone()
        checksums = table_checksums(connection)
        path = run(
            [str(DR / "backup.sh")],
            env={
                "DATABASE_URL": database_url,
                "BACKUP_DIR": str(folder),
                "BACKUP_NAME": service,
                "BACKUP_RECIPIENTS_FILE": str(keys.recipients),
                "PG_DUMP_SNAPSHOT": snapshot,
            },
        )
        connection.execute("COMMIT")
    return Backup(service=service, path=Path(path), checksums=checksums, taken_at=taken_at)


class RestoringDatabases(Databases):
    """Fresh databases, each filled from its service's backup by restore.sh as soon as it is created,
    and checked against the backup's checksums before anything (migrations, services) touches it."""

    def __init__(self, folder: Path, server_url: str, backups: dict[str, Backup], keys: Keys):
        super().__init__(folder, server_url)
        self.backups = backups
        self.keys = keys
        self.mismatches: dict[str, list[str]] = {}

    def url_for(self, service: str) -> str:
        url = super().url_for(service)
        backup = self.backups[service]
        run(
            [str(DR / "restore.sh")],
            env={"BACKUP_FILE": str(backup.path), "BACKUP_IDENTITY_FILE": str(self.keys.identity), "DATABASE_URL": url},
        )
        with psycopg.connect(url) as connection:
            restored = table_checksums(connection)
        self.mismatches[service] = sorted(
            table
            for table in set(restored) | set(backup.checksums)
            if restored.get(table) != backup.checksums.get(table)
        )
        return url


@dataclass
class Customer:
    """The user whose data the drill follows through the loss."""

    email: str
    refresh_token: str
    orders_before_backup: list[dict] = field(default_factory=list)
    orders_after_backup: list[dict] = field(default_factory=list)


def wait_until(condition, *, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise DrillFailed(f"{message} within {timeout} s")


def outboxes_drained(stack: Stack) -> bool:
    """No event waits in any outbox, and no email waits to be sent: the databases are at rest."""
    if stack.events_undelivered():
        return False
    return (
        stack["notifications"].sql("SELECT count(*) FROM notifications_emaildelivery WHERE status = 'pending'")[0][0]
        == 0
    )


def inbox(stack: Stack, token: str) -> list[dict]:
    response = requests.get(
        f"{stack['notifications'].url}/api/notifications/",
        headers={"Authorization": f"Bearer {token}"},
        params={"page_size": 100},
        timeout=10,
    )
    check(response.status_code == 200, f"inbox: {response.status_code} {response.text}")
    return response.json()["results"]


def fill(stack: Stack, journeys: int) -> Customer:
    """`journeys` customer journeys, plus a cancelled (refunded) order and a rotated refresh token."""
    urls = {name: service.url for name, service in stack.services.items()}
    results = [journey_run(urls) for _ in range(journeys)]
    first = results[0]
    login = requests.post(
        f"{urls['auth']}/api/auth/token/", json={"email": first.email, "password": PASSWORD}, timeout=10
    ).json()
    token = login["access_token"]
    refreshed = requests.post(
        f"{urls['auth']}/api/auth/token/refresh/", json={"refresh_token": login["refresh_token"]}, timeout=10
    )
    check(refreshed.status_code == 200, f"refresh before the backup: {refreshed.text}")
    cancelled_before = order_place(urls["orders"], token, "pm_card_visa")
    cancel = requests.post(
        f"{urls['orders']}/api/orders/{cancelled_before['id']}/cancel/",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    check(cancel.status_code == 200 and cancel.json()["status"] == "cancelled", f"cancel: {cancel.text}")
    customer = Customer(email=first.email, refresh_token=refreshed.json()["refresh_token"])
    customer.orders_before_backup = [first.paid_order, first.declined_order, cancel.json()]
    wait_until(lambda: outboxes_drained(stack), timeout=60, message="every event delivered before the backup")
    return customer


def place_after_backup(stack: Stack, customer: Customer, count: int) -> None:
    token = requests.post(
        f"{stack['auth'].url}/api/auth/token/", json={"email": customer.email, "password": PASSWORD}, timeout=10
    ).json()["access_token"]
    for _ in range(count):
        customer.orders_after_backup.append(order_place(stack["orders"].url, token, "pm_card_visa"))
        time.sleep(0.5)


def newest_order_at(stack: Stack) -> dt.datetime:
    return stack["orders"].sql("SELECT max(created_at) FROM orders_order")[0][0]


@dataclass
class Timings:
    lost_at: float = 0.0
    serving_at: float = 0.0
    reading_at: float = 0.0


def verify_restored(stack: Stack, customer: Customer, signing_kid: str, timings: Timings) -> list[str]:
    """The journey again on the restored data; returns what it saw, one line each."""
    seen = []
    auth, orders = stack["auth"].url, stack["orders"].url
    refreshed = requests.post(
        f"{auth}/api/auth/token/refresh/", json={"refresh_token": customer.refresh_token}, timeout=10
    )
    check(refreshed.status_code == 200, f"the refresh token issued before the loss: {refreshed.text}")
    token = refreshed.json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    paid = customer.orders_before_backup[0]
    read = requests.get(f"{orders}/api/orders/{paid['id']}/", headers=headers, timeout=10)
    check(read.status_code == 200 and read.json()["status"] == "paid", f"the restored paid order: {read.text}")
    timings.reading_at = time.monotonic()
    seen.append("the refresh token issued before the loss renews; the restored paid order reads back")

    kid = jwt.get_unverified_header(token)["kid"]
    check(kid == signing_kid, f"a token signed after the restore has kid {kid}, not the restored key's {signing_kid}")
    seen.append(f"tokens are signed with the restored signing key (kid {kid[:12]}...)")

    listed = requests.get(f"{orders}/api/orders/", headers=headers, params={"page_size": 100}, timeout=10).json()
    listed_ids = {order["id"] for order in listed["results"]}
    before_ids = {order["id"] for order in customer.orders_before_backup}
    after_ids = {order["id"] for order in customer.orders_after_backup}
    check(before_ids <= listed_ids, f"orders from before the backup missing: {before_ids - listed_ids}")
    check(not after_ids & listed_ids, f"orders placed after the backup came back: {after_ids & listed_ids}")
    seen.append(f"the customer's {len(before_ids)} orders from before the backup are there")

    cancel = requests.post(f"{orders}/api/orders/{paid['id']}/cancel/", headers=headers, timeout=30)
    check(cancel.status_code == 200, f"cancel of a restored paid order: {cancel.text}")
    check(cancel.json()["refunded_amount"] == paid["total"], f"refund of the restored payment: {cancel.text}")
    seen.append("a restored paid order cancels, refunded in full by the restored payments")

    result = journey_run({name: service.url for name, service in stack.services.items()})
    seen.append(f"a new journey runs end to end (orders {result.paid_order['id'][:8]}..., paid and declined)")

    wait_until(lambda: outboxes_drained(stack), timeout=60, message="every outbox drained after the restore")

    def cancellation_notified():
        items = inbox(stack, token)
        return (
            items
            if any(item["type"] == "order.cancelled" and item["data"].get("order_id") == paid["id"] for item in items)
            else None
        )

    items = wait_until(cancellation_notified, timeout=60, message="the cancellation in the restored inbox")
    kinds = [(item["type"], item["data"].get("order_id")) for item in items]
    check(len(kinds) == len(set(kinds)), f"a notification appears twice in the inbox: {sorted(kinds)}")
    seen.append(f"every outbox drained; the inbox holds {len(items)} notifications, each once")
    return seen


def active_kid(stack: Stack) -> str:
    """The kid of the key auth signs with now: read from a new user's first token."""
    _, tokens = register_and_login(stack["auth"].url)
    return jwt.get_unverified_header(tokens["access_token"])["kid"]


def backups_take(stack: Stack, folder: Path, keys: Keys) -> tuple[dict[str, Backup], Path]:
    """The four databases side by side, then auth's signing key: what the scheduled backups do."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(SERVICES)) as pool:
        taken = pool.map(lambda name: backup_database(name, stack[name].env["DATABASE_URL"], folder, keys), SERVICES)
        backups = dict(zip(SERVICES, taken, strict=True))
    key_backup = run(
        [str(DR / "backup.sh")],
        env={
            "BACKUP_SOURCE_FILE": stack["auth"].env["AUTH_SIGNING_KEY_FILE"],
            "BACKUP_DIR": str(folder / "secrets"),
            "BACKUP_NAME": "auth-signing-key",
            "BACKUP_RECIPIENTS_FILE": str(keys.recipients),
        },
    )
    return backups, Path(key_backup)


def key_restore(key_backup: Path, keys: Keys, target: Path) -> Path:
    env = {"BACKUP_FILE": str(key_backup), "BACKUP_IDENTITY_FILE": str(keys.identity), "RESTORE_TO": str(target)}
    run([str(DR / "restore.sh")], env=env)
    return target


def recover_and_verify(
    *,
    root: Path,
    server_url: str,
    backups: dict[str, Backup],
    key_backup: Path,
    keys: Keys,
    secret_key: str,
    customer: Customer,
    signing_kid: str,
    timings: Timings,
) -> list[str]:
    """The operator's recovery: fresh databases from the backups, the key restored, the services
    started on them; then every check of the restored platform. Returns what was seen."""
    logger.info("restoring into fresh databases")
    (root / "after").mkdir()
    # Not after/signing-key.pem: stack_start writes a new key there, which auth must not use.
    restored_key = key_restore(key_backup, keys, root / "after" / "restored-signing-key.pem")
    restoring = RestoringDatabases(root / "after", server_url, backups, keys)
    env = {"all": {"SECRET_KEY": secret_key}, "auth": {"AUTH_SIGNING_KEY_FILE": str(restored_key)}}
    restarted = stack_start(root / "after", restoring, SERVICES, env=env)
    try:
        stack = next(restarted)
        timings.serving_at = time.monotonic()
        mismatched = {name: tables for name, tables in restoring.mismatches.items() if tables}
        check(not mismatched, f"tables whose rows differ from the backup: {mismatched}")
        tables = sum(len(backup.checksums) for backup in backups.values())
        rows = sum(count for backup in backups.values() for count, _ in backup.checksums.values())
        seen = [f"{tables} tables, {rows} rows: every row count and checksum equal the backup's"]
        return seen + verify_restored(stack, customer, signing_kid, timings)
    finally:
        restarted.close()
        restoring.drop_all()


def drill(arguments: argparse.Namespace) -> dict:
    server_url = arguments.database_url
    with psycopg.connect(server_url, connect_timeout=5) as connection:
        server = connection.execute("SHOW server_version").fetchone()[0]
    secret_key = uuid.uuid4().hex * 2  # a Secret: restored with the cluster's Secrets, not regenerated
    timings = Timings()
    with tempfile.TemporaryDirectory(prefix="dr-drill-") as temporary:
        root = Path(temporary)
        keys = Keys.generate(root)
        (root / "before").mkdir()
        databases = Databases(root / "before", server_url)
        started = stack_start(root / "before", databases, SERVICES, env={"all": {"SECRET_KEY": secret_key}})
        try:
            stack = next(started)
            logger.info("filling the four services on PostgreSQL %s: %d journeys", server, arguments.journeys)
            customer = fill(stack, arguments.journeys)
            signing_kid = active_kid(stack)

            logger.info("backing up the four databases and auth's signing key")
            backup_started = time.monotonic()
            backups, key_backup = backups_take(stack, root / "backups", keys)
            backup_seconds = time.monotonic() - backup_started
            backup_bytes = {name: backup.path.stat().st_size for name, backup in backups.items()}

            logger.info("placing %d orders after the backup", arguments.writes_after_backup)
            place_after_backup(stack, customer, arguments.writes_after_backup)
            newest_before_loss = newest_order_at(stack)

            logger.info("losing everything: processes stopped, databases dropped, signing key deleted")
            incident_wall = dt.datetime.now(tz=dt.UTC)  # writes stop here: what is not in a backup is lost
            stack.stop()
        finally:
            started.close()
            databases.drop_all()
        Path(stack["auth"].env["AUTH_SIGNING_KEY_FILE"]).unlink()
        timings.lost_at = time.monotonic()  # the recovery starts from here

        seen = recover_and_verify(
            root=root,
            server_url=server_url,
            backups=backups,
            key_backup=key_backup,
            keys=keys,
            secret_key=secret_key,
            customer=customer,
            signing_kid=signing_kid,
            timings=timings,
        )

    newest_backup = max(backup.taken_at for backup in backups.values())
    return {
        "postgresql": server,
        "journeys": arguments.journeys,
        "backup_seconds": round(backup_seconds, 2),
        "backup_bytes": backup_bytes,
        "writes_lost": len(customer.orders_after_backup),
        "rpo_seconds": round((incident_wall - newest_backup).total_seconds(), 2),
        "newest_lost_write_after_backup_seconds": round((newest_before_loss - newest_backup).total_seconds(), 2),
        "rto_seconds": round(timings.reading_at - timings.lost_at, 2),
        "restore_and_start_seconds": round(timings.serving_at - timings.lost_at, 2),
        "checks": seen,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DR_DRILL_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL server where the drill may create and drop databases (default: the test server)",
    )
    parser.add_argument("--journeys", type=int, default=5, help="customer journeys before the backup (default 5)")
    parser.add_argument(
        "--writes-after-backup", type=int, default=3, help="orders placed after the backup, lost by design (default 3)"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    try:
        result = drill(arguments)
    except psycopg.OperationalError as error:
        logger.error("dr-drill needs a PostgreSQL server at %s: %s", arguments.database_url, error)
        return 2
    except AssertionError as failure:  # DrillFailed, or a step of the shared journey (tests/journey.py)
        logger.error("dr-drill FAILED: %s", failure)
        return 1
    for line in result["checks"]:
        logger.info("  ok  %s", line)
    sizes = ", ".join(f"{name} {size / 1024:.0f} KiB" for name, size in result["backup_bytes"].items())
    logger.info(
        "RPO %s s: the incident came %s s after the last backup; the %d orders placed in between are lost (the newest "
        "%s s after it). With a dump every N hours the worst case is N hours.",
        result["rpo_seconds"],
        result["rpo_seconds"],
        result["writes_lost"],
        result["newest_lost_write_after_backup_seconds"],
    )
    logger.info(
        "RTO %s s: from the loss to the customer reading their order again (restore, migrations and start %s s); "
        "backup %s s (%s)",
        result["rto_seconds"],
        result["restore_and_start_seconds"],
        result["backup_seconds"],
        sizes,
    )
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main(sys.argv[1:]))
