import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import Conflict, UnprocessableEntity
from apps.payments import services
from apps.payments.models import IdempotencyRecord, Payment, PaymentEvent, Refund

pytestmark = pytest.mark.django_db

ORDER_ID = uuid.UUID("00000000-0000-4000-8000-000000000001")
USER_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def charge(key="key-1", **overrides) -> services.Answer:
    arguments = {
        "client_id": "orders",
        "idempotency_key": key,
        "path": "/api/payments/",
        "order_id": ORDER_ID,
        "user_id": USER_ID,
        "amount": 2500,
        "currency": "EUR",
        "payment_method": "pm_card_visa",
        "receipt_email": "ada@example.com",
        **overrides,
    }
    return services.payment_charge(**arguments)


def refund(payment_id, key="refund-1", amount=None) -> services.Answer:
    return services.payment_refund(
        client_id="orders",
        idempotency_key=key,
        path=f"/api/payments/{payment_id}/refund/",
        payment_id=payment_id,
        amount=amount,
        reason="order cancelled",
    )


def test_a_visa_charge_succeeds_and_is_stored_with_its_response():
    answer = charge()
    payment = Payment.objects.get()
    assert (answer.status, answer.replayed) == (201, False)
    assert answer.body["id"] == str(payment.id)
    assert (answer.body["status"], answer.body["amount"], answer.body["currency"]) == ("succeeded", 2500, "EUR")
    assert (payment.status, payment.amount, payment.decline_code) == ("succeeded", 2500, "")
    assert payment.created_by == "orders"
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.response_status, record.response_body) == ("completed", 201, answer.body)


def test_a_declined_card_captures_nothing():
    answer = charge(payment_method="pm_card_declined")
    assert (answer.body["status"], answer.body["decline_code"]) == ("declined", "card_declined")
    assert Payment.objects.filter(status="succeeded").count() == 0
    assert Payment.objects.get().refundable_amount == 0


def test_same_key_same_body_replays_the_stored_answer_without_charging_again():
    first = charge()
    again = charge()
    assert again == services.Answer(status=201, body=first.body, replayed=True)
    assert Payment.objects.count() == 1
    assert IdempotencyRecord.objects.get().replays == 1


def test_same_key_different_body_is_422_and_charges_nothing_more():
    charge()
    with pytest.raises(UnprocessableEntity) as error:
        charge(amount=9999)
    assert error.value.detail.code == "idempotency_key_reused"
    assert list(Payment.objects.values_list("amount", flat=True)) == [2500]


def test_a_key_in_flight_is_409_and_charges_nothing():
    IdempotencyRecord.objects.create(
        client_id="orders",
        key="key-1",
        request_fingerprint=services.request_fingerprint(
            method="POST",
            path="/api/payments/",
            body={
                "order_id": str(ORDER_ID),
                "user_id": str(USER_ID),
                "amount": 2500,
                "currency": "EUR",
                "payment_method": "pm_card_visa",
                "receipt_email": "ada@example.com",
            },
        ),
        locked_until=timezone.now() + timedelta(seconds=30),
    )
    with pytest.raises(Conflict) as error:
        charge()
    assert error.value.detail.code == "idempotency_key_in_use"
    assert Payment.objects.count() == 0


def test_an_abandoned_key_is_taken_over_after_its_lease():
    fingerprint = services.request_fingerprint(method="POST", path="/x", body={})
    IdempotencyRecord.objects.create(
        client_id="orders", key="k", request_fingerprint=fingerprint, locked_until=timezone.now() - timedelta(seconds=1)
    )
    before = timezone.now()
    record = services.idempotency_begin(client_id="orders", key="k", fingerprint=fingerprint)
    assert isinstance(record, IdempotencyRecord)
    assert record.locked_until == IdempotencyRecord.objects.get().locked_until
    assert record.locked_until >= before + services.IDEMPOTENCY_LEASE


def test_keys_are_per_client():
    charge()
    other = charge(client_id="someone-else", order_id=uuid.uuid4())
    assert other.replayed is False
    assert Payment.objects.count() == 2


def test_a_second_charge_of_an_order_with_another_amount_is_422_and_not_stored():
    charge(payment_method="pm_card_declined")
    with pytest.raises(UnprocessableEntity) as error:
        charge(key="key-2", amount=1)
    assert error.value.detail.code == "amount_mismatch"
    assert Payment.objects.count() == 1
    assert not IdempotencyRecord.objects.filter(key="key-2").exists()


def test_a_paid_order_is_not_charged_again_under_another_key():
    charge()
    with pytest.raises(Conflict) as error:
        charge(key="key-2")
    assert error.value.detail.code == "already_paid"
    assert Payment.objects.count() == 1


def test_a_capture_racing_another_under_another_key_is_refused_by_the_database_as_already_paid(
    monkeypatch, django_assert_num_queries
):
    """The second of two charges that both read the order's earlier charges before either captured:
    the INSERT decides it, and the answer is the same 409 as for a charge that came later."""
    charge()
    monkeypatch.setattr(services, "_charge_allowed", lambda **kwargs: None)  # read before the capture
    payment = Payment(**{**Payment.objects.values().get(), "id": uuid.uuid4()})
    # The check constraints' one statement, in a savepoint (the test's transaction); no query about
    # another capture of the order, which is the database's to refuse.
    with django_assert_num_queries(3) as captured:
        payment.full_clean(validate_unique=False)
    assert [query["sql"] for query in captured.captured_queries if "payments_payment" in query["sql"]] == []
    with pytest.raises(Conflict) as error:
        charge(key="key-2")
    assert error.value.detail.code == "already_paid"
    assert Payment.objects.count() == 1
    assert not IdempotencyRecord.objects.filter(key="key-2").exists()  # refused: the key is free again


def test_a_full_refund_returns_everything_and_emits_payment_refunded():
    payment_id = charge().body["id"]
    answer = refund(payment_id)
    payment = Payment.objects.get()
    assert (answer.status, answer.body["amount"], answer.body["payment"]["refunded_amount"]) == (201, 2500, 2500)
    assert payment.refunded_amount == 2500
    event = PaymentEvent.objects.get()
    assert (event.type, event.user_id, event.aggregate_id) == ("payment.refunded", USER_ID, payment.id)
    assert event.data == {
        "payment_id": payment_id,
        "order_id": str(ORDER_ID),
        "refund_id": answer.body["id"],
        "amount": 2500,
        "currency": "EUR",
        "refunded_amount": 2500,
        "email": "ada@example.com",
    }


def test_partial_refunds_add_up_and_never_exceed_what_was_captured():
    payment_id = charge().body["id"]
    refund(payment_id, key="r1", amount=1000)
    with pytest.raises(UnprocessableEntity) as error:
        refund(payment_id, key="r2", amount=1501)
    assert error.value.detail.code == "refund_exceeds_captured"
    assert Payment.objects.get().refunded_amount == 1000
    refund(payment_id, key="r3", amount=1500)
    assert Payment.objects.get().refunded_amount == 2500
    assert sorted(Refund.objects.values_list("amount", flat=True)) == [1000, 1500]
    assert PaymentEvent.objects.count() == 2


def test_a_fully_refunded_payment_refunds_nothing_more():
    payment_id = charge().body["id"]
    refund(payment_id)
    with pytest.raises(Conflict) as error:
        refund(payment_id, key="refund-2")
    assert error.value.detail.code == "already_refunded"
    assert Refund.objects.count() == 1


def test_a_refund_retried_with_its_key_is_replayed_not_repeated():
    payment_id = charge().body["id"]
    first = refund(payment_id)
    again = refund(payment_id)
    assert (again.replayed, again.body) == (True, first.body)
    assert Refund.objects.count() == 1
    assert PaymentEvent.objects.count() == 1


def test_a_declined_payment_cannot_be_refunded():
    payment_id = charge(payment_method="pm_card_declined").body["id"]
    with pytest.raises(Conflict) as error:
        refund(payment_id)
    assert error.value.detail.code == "not_captured"
    assert Refund.objects.count() == 0
    assert PaymentEvent.objects.count() == 0


def test_a_processor_outage_is_503_charges_nothing_and_leaves_the_key_usable(settings, tmp_path):
    fault = tmp_path / "processor-down"
    fault.touch()
    settings.PAYMENTS_PROVIDER_FAULT_FILE = str(fault)
    with pytest.raises(services.ProviderUnavailable):
        charge()
    record = IdempotencyRecord.objects.get()
    assert (record.state, Payment.objects.count()) == ("in_flight", 0)
    assert record.locked_until <= timezone.now()
    fault.unlink()
    answer = charge()
    assert (answer.status, answer.replayed, answer.body["status"]) == (201, False, "succeeded")
    assert Payment.objects.count() == 1


def test_a_processor_that_raises_unexpectedly_never_leaves_the_key_locked(monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("processor client bug")

    monkeypatch.setattr(services.provider, "charge_decide", broken)
    with pytest.raises(RuntimeError):
        charge()
    assert IdempotencyRecord.objects.get().locked_until <= timezone.now()
    monkeypatch.undo()
    assert charge().body["status"] == "succeeded"
    assert Payment.objects.count() == 1


def test_the_processor_is_asked_under_the_keys_own_idempotency_key(monkeypatch):
    asked = []
    real = services.provider.charge_decide

    def recording(**kwargs):
        asked.append(kwargs["idempotency_key"])
        return real(**kwargs)

    monkeypatch.setattr(services.provider, "charge_decide", recording)
    charge()
    charge()
    assert asked == ["orders:key-1"]


def test_a_request_that_died_after_taking_its_key_is_finished_by_the_sweeper():
    body = {
        "order_id": str(ORDER_ID),
        "user_id": str(USER_ID),
        "amount": 2500,
        "currency": "EUR",
        "payment_method": "pm_card_visa",
        "receipt_email": "",
    }
    IdempotencyRecord.objects.create(
        client_id="orders",
        key="key-1",
        request_fingerprint=services.request_fingerprint(method="POST", path="/api/payments/", body=body),
        operation="charge",
        request_body=body,
        locked_until=timezone.now() - timedelta(seconds=1),
    )
    report = services.payments_requests_finish()
    assert (report.finished, report.refused, report.failed) == (1, 0, 0)
    payment = Payment.objects.get()
    record = IdempotencyRecord.objects.get()
    assert (record.state, record.response_body["id"]) == ("completed", str(payment.id))
    replay = charge(receipt_email="")
    assert (replay.replayed, replay.body["id"]) == (True, str(payment.id))
    assert services.payments_requests_finish().finished == 0


def test_the_sweeper_leaves_requests_whose_holder_is_alive():
    IdempotencyRecord.objects.create(
        client_id="orders",
        key="k",
        request_fingerprint="f",
        operation="refund",
        request_body={"payment_id": str(uuid.uuid4()), "amount": None, "reason": ""},
        locked_until=timezone.now() + timedelta(seconds=30),
    )
    assert services.payments_requests_finish().finished == 0
    assert IdempotencyRecord.objects.get().state == "in_flight"


def test_a_finished_refund_of_a_missing_payment_frees_the_key():
    IdempotencyRecord.objects.create(
        client_id="orders",
        key="k",
        request_fingerprint="f",
        operation="refund",
        request_body={"payment_id": str(uuid.uuid4()), "amount": None, "reason": ""},
        locked_until=timezone.now() - timedelta(seconds=1),
    )
    assert services.payments_requests_finish().refused == 1
    assert IdempotencyRecord.objects.count() == 0


def test_prune_forgets_completed_keys_after_a_day_and_keeps_the_rest():
    charge(key="old")
    charge(key="recent", order_id=uuid.uuid4())
    IdempotencyRecord.objects.create(
        client_id="orders", key="flying", request_fingerprint="f", locked_until=timezone.now() - timedelta(days=2)
    )
    IdempotencyRecord.objects.filter(key="old").update(completed_at=timezone.now() - timedelta(hours=25))
    assert services.idempotency_records_prune(older_than=timedelta(hours=24)) == 1
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == ["flying", "recent"]
    assert Payment.objects.count() == 2


def test_the_database_refuses_a_currency_that_is_not_a_code():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError, match="payment_currency_code"), transaction.atomic():
        Payment.objects.create(
            order_id=ORDER_ID, user_id=USER_ID, amount=1, currency="eur", status="declined", created_by="orders"
        )


def _count(counter, **labels) -> float:
    return counter.labels(**labels)._value.get() if labels else counter._value.get()


def test_charges_are_counted_by_outcome_and_amount_once_committed_and_a_replay_counts_nothing(
    django_capture_on_commit_callbacks,
):
    before = (
        _count(services.CHARGES, outcome="succeeded"),
        _count(services.CHARGES, outcome="declined"),
        _count(services.CHARGED_AMOUNT, outcome="declined", currency="EUR"),
    )
    with django_capture_on_commit_callbacks(execute=True):
        charge(key="k-ok", order_id=uuid.uuid4())
        charge(key="k-declined", payment_method="pm_card_declined")
        charge(key="k-declined", payment_method="pm_card_declined")  # a replay
    after = (
        _count(services.CHARGES, outcome="succeeded"),
        _count(services.CHARGES, outcome="declined"),
        _count(services.CHARGED_AMOUNT, outcome="declined", currency="EUR"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [1, 1, 2500]


def test_a_refused_charge_counts_nothing(django_capture_on_commit_callbacks):
    charge()
    before = _count(services.CHARGES, outcome="succeeded")
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(Conflict):
        charge(key="another-key")  # the order is paid already: 409, nothing stored
    assert _count(services.CHARGES, outcome="succeeded") == before
