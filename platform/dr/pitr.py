"""`make dr-drill`, point in time: the four databases recovered to a moment, with pgBackRest.

A PostgreSQL server of the drill's own (initdb in a temporary folder, 127.0.0.1 only) holds the four
service databases and archives its WAL to a pgBackRest repository (encrypted, aes-256-cbc), as a
production server would with `archive_command`. Then:

1. the four services start on it and journeys fill them; a full backup is taken online;
2. orders are placed one after the other, and a recovery target is chosen in a gap between two;
3. the server is lost while orders are still being placed: killed (immediate stop), its data
   directory deleted;
4. restored to the target (`pgbackrest restore --type=time`): every order placed before it is back,
   none placed after it, in all four databases at once (one server, one WAL: one consistent point
   across the services); the services start on it, their relays deliver what the restore left
   undelivered, and notifications holds every event once;
5. lost again and restored to the end of the archive: the recovery point is the last WAL segment
   archived before the loss (`archive_timeout` bounds its age); the orders after it are lost, with
   no hole before them, and an order the loss caught half placed is finished by
   `order_payments_settle`.

It prints the RPO and RTO of both restores. Exit status 0 only when every check passed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
import requests  # noqa: E402

sys.path.insert(0, str(REPO / "platform" / "dr"))  # drill.py beside this file ("platform" is also a module of Python's)

from drill import DrillFailed, check, run, wait_until  # noqa: E402

from tests.client import PASSWORD, register_and_login  # noqa: E402
from tests.journey import journey_run, order_place  # noqa: E402
from tests.live import Databases, Stack, free_port, stack_start  # noqa: E402

SERVICES = ("auth", "orders", "payments", "notifications")
STANZA = "platform"
# The archive's recovery point may exceed archive_timeout by the time a segment takes to be pushed.
RPO_MARGIN_SECONDS = 5
JOURNEYS = 3
logger = logging.getLogger("dr-drill")


def postgres_bin() -> Path:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    check(bool(versions), "no PostgreSQL server binaries in /usr/lib/postgresql (platform/postgres/test-server.sh)")
    return versions[-1].parent


@dataclass
class Server:
    """A PostgreSQL server in `root`, run as the postgres user when the drill runs as root (the server
    and pgBackRest refuse root), with WAL archived by pgBackRest."""

    root: Path
    archive_timeout: int
    port: int = field(default_factory=free_port)

    def __post_init__(self):
        self.data = self.root / "data"
        self.sockets = self.root / "sockets"
        self.config = self.root / "pgbackrest.conf"
        self.bin = postgres_bin()
        self.as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(self, *command: str) -> str:
        return run([*self.as_owner, *command])

    def pgbackrest(self, *arguments: str) -> str:
        return self.run("pgbackrest", f"--config={self.config}", f"--stanza={STANZA}", *arguments)

    def create(self) -> None:
        for folder in (self.root, self.sockets, self.root / "repository", self.root / "log", self.root / "lock"):
            folder.mkdir(mode=0o700, exist_ok=True)
            if self.as_owner:
                shutil.chown(folder, "postgres", "postgres")
        # The repository's cipher key: in production a secret of the backup host, never the server's.
        self.config.write_text(
            "\n".join(
                [
                    "[global]",
                    f"repo1-path={self.root / 'repository'}",
                    "repo1-cipher-type=aes-256-cbc",
                    f"repo1-cipher-pass={secrets.token_urlsafe(32)}",
                    "repo1-retention-full=2",
                    f"log-path={self.root / 'log'}",
                    f"lock-path={self.root / 'lock'}",
                    "log-level-console=warn",
                    "start-fast=y",
                    "",
                    f"[{STANZA}]",
                    f"pg1-path={self.data}",
                    f"pg1-port={self.port}",
                    f"pg1-socket-path={self.sockets}",
                    "",
                ]
            )
        )
        if self.as_owner:
            shutil.chown(self.config, "postgres", "postgres")
        self.config.chmod(0o600)
        self.run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n".join(
                    [
                        "",
                        "# platform/dr/pitr.py: a server of the drill's own, its WAL archived by pgBackRest",
                        "listen_addresses = '127.0.0.1'",
                        f"port = {self.port}",
                        f"unix_socket_directories = '{self.sockets}'",
                        "wal_level = replica",
                        "archive_mode = on",
                        f"archive_command = 'pgbackrest --config={self.config} --stanza={STANZA} archive-push %p'",
                        # A segment is archived when full or after this long: the recovery point's bound.
                        f"archive_timeout = {self.archive_timeout}",
                        "max_connections = 200",
                        "",
                    ]
                )
            )

    def start(self) -> None:
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start")

    def kill(self) -> None:
        """The loss: the server stopped without a checkpoint, then its disk gone."""
        self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")
        shutil.rmtree(self.data)

    def restore(self, *target: str) -> None:
        self.data.mkdir(mode=0o700)
        if self.as_owner:
            shutil.chown(self.data, "postgres", "postgres")
        self.pgbackrest(*target, "restore")

    def stop(self) -> None:
        with contextlib.suppress(DrillFailed):
            self.run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "stop")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def promoted(self) -> bool:
        try:
            with psycopg.connect(self.url, connect_timeout=2) as connection:
                return not connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]
        except psycopg.OperationalError:
            return False


class ExistingDatabases(Databases):
    """The databases a restore brought back: the services start on them as they are."""

    def __init__(self, folder: Path, urls: dict[str, str]):
        super().__init__(folder, None)
        self.urls = urls

    def url_for(self, service: str) -> str:
        return self.urls[service]


@dataclass
class Placed:
    order_id: str
    sent_at: dt.datetime
    answered_at: dt.datetime


def now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


def rows(url: str, query: str) -> list[tuple]:
    with psycopg.connect(url, connect_timeout=5) as connection:
        return connection.execute(query).fetchall()


def place_until(stack: Stack, token: str, *, seconds: float, gap: float) -> list[Placed]:
    placed = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sent = now()
        order = order_place(stack["orders"].url, token, "pm_card_visa")
        placed.append(Placed(order_id=order["id"], sent_at=sent, answered_at=now()))
        time.sleep(gap)
    return placed


@contextlib.contextmanager
def services_on(workdir: Path, urls: dict[str, str], secret_key: str) -> Iterator[Stack]:
    workdir.mkdir()
    started = stack_start(workdir, ExistingDatabases(workdir, urls), SERVICES, env={"all": {"SECRET_KEY": secret_key}})
    try:
        yield next(started)
    finally:
        started.close()


def wait_promoted(server: Server, *, timeout: float) -> None:
    wait_until(server.promoted, timeout=timeout, message="the restored server replays its WAL and is promoted")


def reconcile(stack: Stack) -> dict:
    """What the restore left open, settled the way the platform does it: the relays deliver every event
    still marked undelivered (notifications drops the ones it already had), and order_payments_settle
    finishes the orders left pending. Returns what that took."""
    undelivered = stack.events_undelivered()
    pending = stack["orders"].sql("SELECT count(*) FROM orders_order WHERE status = 'pending'")[0][0]

    def settled() -> bool:
        # As the CronJob would, a few minutes apart: an order whose payment lease (taken before the
        # loss) has not run out yet is left alone until it has.
        stack["orders"].manage("order_payments_settle", "--older-than", "0")
        return stack["orders"].sql("SELECT count(*) FROM orders_order WHERE status = 'pending'")[0][0] == 0

    if pending:
        wait_until(settled, timeout=120, message="order_payments_settle finishes every pending order")
    wait_until(lambda: stack.events_undelivered() == 0, timeout=60, message="every outbox drained")
    events = {
        str(event_id)
        for name, table in (("orders", "orders_orderevent"), ("payments", "payments_paymentevent"))
        for (event_id,) in stack[name].sql(f"SELECT id FROM {table}")  # noqa: S608 (the two outbox tables)
    }
    processed = {
        str(row[0]): row[1]
        for row in stack["notifications"].sql("SELECT event_id, times_received FROM notifications_processedevent")
    }
    check(events <= set(processed), f"events no notification exists for: {sorted(events - set(processed))[:5]}")
    return {
        "events_redelivered": undelivered,
        "duplicates_dropped": sum(1 for times in processed.values() if times > 1),
        "pending_settled": pending,
    }


@dataclass
class Loss:
    """What the first loss left: the orders placed, when the server went, the databases' URLs."""

    urls: dict[str, str]
    email: str
    placed: list[Placed]
    at_wall: dt.datetime
    at: float
    backup_seconds: float


def fill_back_up_and_lose(server: Server, workdir: Path, secret_key: str, seconds: float) -> Loss:
    workdir.mkdir()
    databases = Databases(workdir, server.url)
    started = stack_start(workdir, databases, SERVICES, env={"all": {"SECRET_KEY": secret_key}})
    try:
        stack = next(started)
        urls = {name: service.env["DATABASE_URL"] for name, service in stack.services.items()}
        logger.info("filling the four services: %d journeys", JOURNEYS)
        for _ in range(JOURNEYS):
            journey_run({name: service.url for name, service in stack.services.items()})
        logger.info("full backup with pgBackRest, online")
        backup_started = time.monotonic()
        server.pgbackrest("--type=full", "backup")
        backup_seconds = round(time.monotonic() - backup_started, 2)
        email, login = register_and_login(stack["auth"].url)
        logger.info("placing orders for %s s, then losing the server while they go on", seconds)
        placed = place_until(stack, login["access_token"], seconds=seconds, gap=0.3)
        # The loss comes in the middle of the writes: the last order answered, the next not sent.
        at_wall = now()
        server.kill()
        at = time.monotonic()
    finally:
        started.close()
    check(len(placed) >= 10, f"only {len(placed)} orders placed in {seconds} s")
    return Loss(urls=urls, email=email, placed=placed, at_wall=at_wall, at=at, backup_seconds=backup_seconds)


def restore_to_the_end(server: Server, loss: Loss, workdir: Path, secret_key: str, archive_timeout: int) -> dict:
    """What the loss itself cost: the newest write the archive kept, and the orders after it."""
    logger.info("restoring to the end of the archive")
    server.restore()
    server.start()
    wait_promoted(server, timeout=120)
    server_back = time.monotonic()
    restored = {str(row[0]) for row in rows(loss.urls["orders"], "SELECT id FROM orders_order")}
    kept = [placed.order_id in restored for placed in loss.placed]
    first_lost = kept.index(False) if False in kept else len(kept)
    check(not any(kept[first_lost:]), "a hole: an order is lost before one that was kept")
    newest = rows(loss.urls["orders"], "SELECT max(created_at) FROM orders_order")[0][0]
    rpo = round((loss.at_wall - newest).total_seconds(), 2)
    with services_on(workdir, loss.urls, secret_key) as stack:
        reconciled = reconcile(stack)
        reading_at = time.monotonic()
    check(
        rpo <= archive_timeout + RPO_MARGIN_SECONDS,
        f"RPO {rpo} s: more than archive_timeout {archive_timeout} s and {RPO_MARGIN_SECONDS} s",
    )
    return {
        "orders_kept": first_lost,
        "orders_lost": len(kept) - first_lost,
        "rpo_seconds": rpo,
        "server_back_seconds": round(server_back - loss.at, 2),
        "rto_seconds": round(reading_at - loss.at, 2),
        **reconciled,
    }


def restore_to_a_moment(server: Server, loss: Loss, workdir: Path, secret_key: str) -> dict:
    """Lost again, restored to the gap after the order placed a third of the way through: before
    anything the restore to the end brought back or wrote (its timeline branched off later)."""
    server.kill()
    lost_at = time.monotonic()
    cut = len(loss.placed) // 3
    before, after = loss.placed[:cut], loss.placed[cut:]
    target = before[-1].answered_at + (after[0].sent_at - before[-1].answered_at) / 2
    logger.info("lost again; restoring to %s (%d orders before it, %d after)", target.isoformat(), cut, len(after))
    # pgBackRest's format (milliseconds, an explicit UTC offset), which recovery_target_time reads too.
    stamp = target.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "+00"
    server.restore("--type=time", f"--target={stamp}", "--target-action=promote")
    server.start()
    wait_promoted(server, timeout=120)
    server_back = time.monotonic()
    present = {str(row[0]) for row in rows(loss.urls["orders"], "SELECT id FROM orders_order")}
    paid_for = {str(row[0]) for row in rows(loss.urls["payments"], "SELECT order_id FROM payments_payment")}
    check({p.order_id for p in before} <= present, "an order placed before the target is missing")
    check(not {p.order_id for p in after} & present, "an order placed after the target is back")
    check({p.order_id for p in before} <= paid_for, "an order before the target has no payment in payments")
    check(not {p.order_id for p in after} & paid_for, "payments holds a charge of an order after the target")
    with services_on(workdir, loss.urls, secret_key) as stack:
        reconciled = reconcile(stack)
        login = requests.post(
            f"{stack['auth'].url}/api/auth/token/", json={"email": loss.email, "password": PASSWORD}, timeout=10
        ).json()
        read = requests.get(
            f"{stack['orders'].url}/api/orders/{before[-1].order_id}/",
            headers={"Authorization": f"Bearer {login['access_token']}"},
            timeout=10,
        )
        check(read.status_code == 200, f"the last order before the target: {read.status_code} {read.text}")
        reading_at = time.monotonic()
    return {
        "orders_before": cut,
        "orders_after": len(after),
        "server_back_seconds": round(server_back - lost_at, 2),
        "rto_seconds": round(reading_at - lost_at, 2),
        **reconciled,
    }


def drill(arguments: argparse.Namespace) -> dict:
    secret_key = uuid.uuid4().hex * 2
    with tempfile.TemporaryDirectory(prefix="pitr-drill-", dir="/var/tmp") as temporary:
        root = Path(temporary)
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        server = Server(root / "server", archive_timeout=arguments.archive_timeout)
        server.create()
        server.start()
        try:
            version = rows(server.url, "SHOW server_version")[0][0]
            logger.info("PostgreSQL %s on 127.0.0.1:%d, WAL archived by pgBackRest", version, server.port)
            server.pgbackrest("stanza-create")
            server.pgbackrest("check")
            loss = fill_back_up_and_lose(server, root / "before", secret_key, arguments.seconds)
            to_the_end = restore_to_the_end(server, loss, root / "at-end", secret_key, arguments.archive_timeout)
            to_a_moment = restore_to_a_moment(server, loss, root / "at-target", secret_key)
        finally:
            server.stop()
    return {
        "postgresql": version,
        "archive_timeout_seconds": arguments.archive_timeout,
        "backup_seconds": loss.backup_seconds,
        "orders_placed": len(loss.placed),
        "to_the_end": to_the_end,
        "to_a_moment": to_a_moment,
    }


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="how long orders are placed before the loss")
    parser.add_argument(
        "--archive-timeout", type=int, default=5, help="the server's archive_timeout, the bound of the RPO (default 5)"
    )
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    arguments = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    if not shutil.which("pgbackrest"):
        logger.error("pgbackrest is missing: apt-get install pgbackrest (make dr-drill installs it)")
        return 2
    try:
        result = drill(arguments)
    except AssertionError as failure:
        logger.error("point-in-time drill FAILED: %s", failure)
        return 1
    moment, end = result["to_a_moment"], result["to_the_end"]
    logger.info(
        "to a moment: the %d orders before the target back, the %d after it not, in all four databases; "
        "RTO %s s (server restored and promoted %s s); %d events delivered again, %d duplicates dropped",
        moment["orders_before"],
        moment["orders_after"],
        moment["rto_seconds"],
        moment["server_back_seconds"],
        moment["events_redelivered"],
        moment["duplicates_dropped"],
    )
    logger.info(
        "to the end of the archive: RPO %s s (archive_timeout %s s): %d orders kept, %d lost, %d pending settled; "
        "RTO %s s (server %s s)",
        end["rpo_seconds"],
        result["archive_timeout_seconds"],
        end["orders_kept"],
        end["orders_lost"],
        end["pending_settled"],
        end["rto_seconds"],
        end["server_back_seconds"],
    )
    if arguments.json:
        arguments.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
