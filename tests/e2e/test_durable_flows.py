"""What a crash, a timeout, a refusal or an outage leaves behind, over real gunicorn and worker
processes: cancellations finished by the settle job, refused charges ended for good, a processor
outage that leaves the key usable, an SMTP outage after which every email goes out exactly once, and
a relay stopped mid-batch that hands over without delivering anything twice."""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from tests.e2e.flows import TOTAL, VISA, Customer, as_uuid, customer, payments_of_order, times_received, wait_for
from tests.e2e.test_auth_flow import assert_problem
from tests.live import LiveRelay, LiveService, Stack, email_worker, free_port

pytestmark = pytest.mark.e2e


class _SlowRefunds(BaseHTTPRequestHandler):
    """Forwards to payments; holds the answer to the first refund back for `delay` seconds (payments
    has refunded by then: only its answer is late, as when a network or a load balancer stalls)."""

    upstream = ""
    delay = 0.0
    held: list[str]

    def _forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}}
        answer = requests.request(self.command, self.upstream + self.path, data=body, headers=headers, timeout=30)
        if self.path.endswith("/refund/") and not self.held:
            self.held.append(self.path)
            time.sleep(self.delay)
        payload = answer.content
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the caller gave up waiting
            self.send_response(answer.status_code)
            for name in ("Content-Type", "Idempotent-Replayed"):
                if name in answer.headers:
                    self.send_header(name, answer.headers[name])
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    do_GET = do_POST = _forward

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def slow_refunds_proxy(upstream: str, *, delay: float):
    handler = type("Handler", (_SlowRefunds,), {"upstream": upstream, "delay": delay, "held": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", handler.held
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def another_orders(stack: Stack, **env: str):
    """A second orders process on the same database, with some settings changed."""
    orders = stack["orders"]
    service = LiveService(name="orders", env={**orders.env, **env}, workdir=orders.workdir, port=free_port())
    try:
        yield service.start()
    finally:
        service.stop()


def order_row(stack: Stack, order_id: str) -> tuple:
    rows = stack["orders"].sql("SELECT id, status, refunded_amount, payment_error FROM orders_order")
    return next(row[1:] for row in rows if as_uuid(row[0]) == as_uuid(order_id))


def refunds_of(stack: Stack, payment_id: str) -> list[int]:
    rows = stack["payments"].sql("SELECT payment_id, amount FROM payments_refund")
    return [row[1] for row in rows if as_uuid(row[0]) == as_uuid(payment_id)]


def test_a_cancel_whose_first_answer_times_out_ends_refunded_and_cancelled(stack):
    ada = customer(stack)
    with (
        slow_refunds_proxy(stack["payments"].url, delay=4) as (proxy, held),
        another_orders(stack, PAYMENTS_URL=proxy, SERVICE_CALL_READ_TIMEOUT="1.5", SERVICE_CALL_RETRIES="0") as orders,
    ):
        placed = requests.post(
            f"{orders.url}/api/orders/",
            json={
                "currency": "EUR",
                "lines": [{"sku": "BOOK", "quantity": 1, "unit_price": TOTAL}],
                "payment_method": VISA,
            },
            headers={**ada.headers, "Idempotency-Key": str(uuid.uuid4())},
            timeout=30,
        ).json()
        assert placed["status"] == "paid"
        started = time.monotonic()
        cancel = requests.post(f"{orders.url}/api/orders/{placed['id']}/cancel/", headers=ada.headers, timeout=30)
        waited = time.monotonic() - started
    assert held  # the refund's answer was held back past orders' read timeout
    assert (cancel.status_code, cancel.json()["status"], cancel.headers["Retry-After"]) == (202, "cancelling", "2")
    assert waited < 4
    # Payments did refund; the order says so: cancelling, never paid again.
    assert refunds_of(stack, placed["payment_id"]) == [TOTAL]
    assert order_row(stack, placed["id"])[0] == "cancelling"

    report = stack["orders"].manage("order_payments_settle", "--older-than", "0").stdout
    assert "still open 0" in report
    assert order_row(stack, placed["id"])[:2] == ("cancelled", TOTAL)
    assert refunds_of(stack, placed["payment_id"]) == [TOTAL]  # the same refund, replayed: not a second one
    final = ada.get("orders", f"/api/orders/{placed['id']}/").json()
    assert [step["to_status"] for step in final["status_history"]] == ["pending", "paid", "cancelling", "cancelled"]


def test_a_charge_payments_refuses_ends_in_its_terminal_state_with_no_charge(stack):
    secret = uuid.uuid4().hex * 2
    stack["auth"].manage(
        "service_client_ensure",
        "orders-without-charge",
        "--secret-env",
        "CLIENT_SECRET",
        "--scope",
        "payments:refund",
        extra_env={"CLIENT_SECRET": secret},
    )
    ada = customer(stack)
    key = str(uuid.uuid4())
    with another_orders(stack, SERVICE_CLIENT_ID="orders-without-charge", SERVICE_CLIENT_SECRET=secret) as orders:
        body = {
            "currency": "EUR",
            "lines": [{"sku": "BOOK", "quantity": 1, "unit_price": TOTAL}],
            "payment_method": VISA,
        }
        placed = requests.post(
            f"{orders.url}/api/orders/", json=body, headers={**ada.headers, "Idempotency-Key": key}, timeout=30
        )
        again = requests.post(
            f"{orders.url}/api/orders/", json=body, headers={**ada.headers, "Idempotency-Key": key}, timeout=30
        )
    assert placed.status_code == 201, placed.text
    order = placed.json()
    assert (order["status"], order["payment_id"]) == ("payment_refused", None)
    assert order["payment_error"].startswith("payments answered 403 ")
    assert (again.json()["status"], again.headers["Idempotent-Replayed"]) == ("payment_refused", "true")
    assert payments_of_order(stack, order["id"]) == []
    assert stack["orders"].manage("order_payments_settle", "--older-than", "0").stdout.startswith("settled 0")

    def notified():
        return [item for item in ada.inbox() if item["data"].get("order_id") == order["id"]]

    assert [item["type"] for item in wait_for(notified, message="the refusal in the inbox")] == [
        "order.payment_refused"
    ]


def test_a_processor_that_raises_leaves_the_key_usable(stack, tmp_path):
    payments = stack["payments"]
    fault = tmp_path / "processor-down"
    payments.stop()
    payments.env["PAYMENTS_PROVIDER_FAULT_FILE"] = str(fault)
    payments.start()
    try:
        ada = customer(stack)
        key = str(uuid.uuid4())
        fault.touch()
        problem = assert_problem(ada.place(VISA, key=key), 503, "payments_unavailable")
        assert payments_of_order(stack, problem["order_id"]) == []
        fault.unlink()
        started = time.monotonic()
        settled = ada.place(VISA, key=key)  # at once: no lease to wait out
        assert time.monotonic() - started < 5
    finally:
        fault.unlink(missing_ok=True)
        payments.env.pop("PAYMENTS_PROVIDER_FAULT_FILE")
    assert (settled.status_code, settled.json()["id"], settled.json()["status"]) == (201, problem["order_id"], "paid")
    assert payments_of_order(stack, problem["order_id"]) == [(settled.json()["payment_id"], "succeeded", TOTAL)]


class _Mailbox:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message it accepts."""

    def __init__(self, port: int):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server, session, envelope):  # the hook name aiosmtpd calls
        from email import message_from_bytes

        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def deliveries(stack: Stack, user_id: str) -> list[tuple]:
    rows = stack["notifications"].sql(
        "SELECT n.user_id, d.status, d.attempts, d.id FROM notifications_emaildelivery d "
        "JOIN notifications_notification n ON n.id = d.notification_id"
    )
    return [row[1:] for row in rows if as_uuid(row[0]) == as_uuid(user_id)]


def test_smtp_down_for_a_while_then_every_email_is_sent_exactly_once(stack):
    port = free_port()
    mailbox = _Mailbox(port)
    default_worker = stack.relays["notifications"]
    default_worker.stop()
    worker = email_worker(
        stack["notifications"],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(port),
        EMAIL_USE_TLS="false",
        EMAIL_TIMEOUT="5",
    ).start()
    try:
        ada: Customer = customer(stack)
        started = time.monotonic()
        placed = [ada.place(VISA).json() for _ in range(3)]
        assert [order["status"] for order in placed] == ["paid"] * 3
        # The events were accepted (202) and filed while no mail relay answers.
        wait_for(lambda: len(ada.inbox()) == 3, message="three notifications in the inbox")
        inbox_seconds = time.monotonic() - started
        wait_for(
            lambda: (rows := deliveries(stack, ada.user_id)) and len(rows) == 3 and any(a >= 1 for _, a, _ in rows),
            message="the worker's failed attempts while SMTP is down",
        )
        assert {status for status, _, _ in deliveries(stack, ada.user_id)} == {"pending"}
        mailbox.controller.start()
        try:
            wait_for(
                lambda: {status for status, _, _ in deliveries(stack, ada.user_id)} == {"sent"},
                timeout=30,
                message="every email sent once SMTP is back",
            )
            time.sleep(1)  # anything sent twice would have arrived by now
        finally:
            mailbox.controller.stop()
        assert worker.stop() == 0, worker.log_text()
    finally:
        worker.stop()
        stack.relays["notifications"] = email_worker(stack["notifications"]).start()
    rows = deliveries(stack, ada.user_id)
    mine = [message for message in mailbox.messages if message["To"] == ada.email]
    assert len(mine) == 3
    assert Counter(message["Message-ID"] for message in mine) == {
        f"<notification-email-{row[2]}@platform.local>": 1 for row in rows
    }
    assert any(attempts >= 2 for _, attempts, _ in rows)
    assert inbox_seconds < 15, "the event request waited on SMTP"


def _events_add(stack: Stack, count: int) -> list[str]:
    """`count` outbox events written by the orders service's own code, in one transaction."""
    code = (
        "import uuid\n"
        "from django.db import transaction\n"
        "from apps.core.outbox import outbox_event_add\n"
        "from apps.orders.models import OrderEvent\n"
        "user = uuid.uuid4()\n"
        "with transaction.atomic():\n"
        f"    events = [outbox_event_add(OrderEvent, event_type='order.paid', user_id=user, aggregate_id=uuid.uuid4(),"
        f" data={{'n': n}}) for n in range({count})]\n"
        "print(' '.join(str(e.id) for e in events))\n"
    )
    output = stack["orders"].manage("shell", "-c", code).stdout
    return re.findall(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", output.splitlines()[-1])


def test_a_relay_stopped_mid_batch_by_sigterm_exits_at_once_and_nothing_is_delivered_twice(stack):
    stack.relays["orders"].stop()
    relay = LiveRelay(stack["orders"], args=("--batch-size", "400", "--poll-interval", "0.1"))
    try:
        event_ids = _events_add(stack, 400)
        relay.start()
        wait_for(lambda: len(times_received(stack, event_ids)) >= 20, timeout=60, message="the batch under way")
        started = time.monotonic()
        exit_code = relay.stop(timeout=30)
        stopped_in = time.monotonic() - started
    finally:
        relay.stop()
        stack.relays["orders"] = LiveRelay(stack["orders"]).start()
    assert exit_code == 0, relay.log_text()
    assert stopped_in < 5, f"the relay took {stopped_in:.1f} s to stop"
    log = relay.log_text()
    assert "claimed 400" in log
    released = int(log.split("released ")[1].split(",")[0])
    assert 0 < released < 380, log
    received = wait_for(
        lambda: (seen := times_received(stack, event_ids)) and len(seen) == 400 and seen,
        timeout=90,
        message="every event delivered by the next relay",
    )
    assert set(received.values()) == {1}
    delivered = stack["orders"].sql("SELECT id, delivered_at, attempts FROM orders_orderevent")
    mine = {as_uuid(row[0]): row for row in delivered if str(as_uuid(row[0])) in set(event_ids)}
    assert all(row[1] is not None and row[2] == 1 for row in mine.values())
