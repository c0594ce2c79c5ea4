import uuid

import pytest

from apps.payments.models import IdempotencyRecord, Payment

pytestmark = pytest.mark.django_db


def body(**overrides) -> dict:
    return {
        "order_id": str(uuid.uuid4()),
        "user_id": str(uuid.uuid4()),
        "amount": 1000,
        "currency": "EUR",
        "payment_method": "pm_card_visa",
        **overrides,
    }


def post(client, data, key="key-1"):
    headers = {"Idempotency-Key": key} if key else {}
    return client.post("/api/payments/", data, format="json", headers=headers)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    return response.json()


def test_a_charge_is_201_and_its_replay_is_marked(orders_service):
    data = body()
    first = post(orders_service, data)
    again = post(orders_service, data)
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert Payment.objects.count() == 1


def test_a_different_body_with_the_same_key_is_422(orders_service):
    post(orders_service, body())
    assert_problem(post(orders_service, body()), 422, "idempotency_key_reused")
    assert Payment.objects.count() == 1


def test_the_idempotency_key_is_required(orders_service):
    problem = assert_problem(post(orders_service, body(), key=None), 400, "validation_error")
    assert list(problem["errors"]) == ["Idempotency-Key"]
    assert Payment.objects.count() == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": "10"}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"currency": "eur"}, "currency"),
        ({"currency": "XXX"}, "currency"),
        ({"payment_method": ""}, "payment_method"),
        ({"order_id": "not-a-uuid"}, "order_id"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_charges_are_400_and_not_stored(orders_service, overrides, field):
    problem = assert_problem(post(orders_service, body(**overrides)), 400, "validation_error")
    assert field in problem["errors"]
    assert IdempotencyRecord.objects.count() == 0
    # The key stays free: the corrected request goes through.
    assert post(orders_service, body()).status_code == 201


def test_a_json_array_body_is_400(orders_service):
    assert_problem(post(orders_service, [1, 2]), 400, "validation_error")


def test_users_cannot_charge(customer):
    _, client = customer
    assert_problem(post(client, body()), 403, "permission_denied")


def test_a_service_without_the_charge_scope_cannot_charge(db):
    from apps.core.testing import bearer_client, service_client_token

    client = bearer_client(service_client_token(client_id="payments", scopes=["notifications:publish"]))
    assert_problem(post(client, body()), 403, "permission_denied")


def test_a_user_reads_their_own_payment_and_not_others(orders_service, customer):
    user_id, client = customer
    mine = post(orders_service, body(user_id=user_id)).json()
    theirs = post(orders_service, body(), key="key-2").json()
    assert client.get(f"/api/payments/{mine['id']}/").json() == mine
    assert_problem(client.get(f"/api/payments/{theirs['id']}/"), 404, "not_found")
    assert_problem(client.get("/api/payments/not-a-uuid/"), 404, "not_found")


def test_a_refund_is_201_replayed_with_its_key_and_never_exceeds_the_capture(orders_service):
    payment = post(orders_service, body()).json()
    url = f"/api/payments/{payment['id']}/refund/"
    first = orders_service.post(url, {"amount": 400}, format="json", headers={"Idempotency-Key": "r1"})
    again = orders_service.post(url, {"amount": 400}, format="json", headers={"Idempotency-Key": "r1"})
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    too_much = orders_service.post(url, {"amount": 601}, format="json", headers={"Idempotency-Key": "r2"})
    assert_problem(too_much, 422, "refund_exceeds_captured")
    assert Payment.objects.get().refunded_amount == 400


def test_refunding_an_unknown_payment_is_404(orders_service):
    response = orders_service.post(
        f"/api/payments/{uuid.uuid4()}/refund/", {}, format="json", headers={"Idempotency-Key": "r1"}
    )
    assert_problem(response, 404, "not_found")
    assert IdempotencyRecord.objects.count() == 0


def test_a_charge_is_fourteen_statements(orders_service, django_assert_num_queries):
    """The key's record (3: the test's transaction makes BEGIN and COMMIT savepoints), the order's earlier
    charges (1), then one transaction (2): the record locked (1), its check constraints validated (3),
    the payment (3), the record completed (1). One capture per order is the database's to enforce."""
    post(orders_service, body(), key="warm-up")  # the signing keys loaded
    with django_assert_num_queries(14):
        response = post(orders_service, body(), key="counted")
    assert response.status_code == 201
