import uuid

import pytest

from apps.notifications.models import Notification

pytestmark = pytest.mark.django_db


def event(user_id, **overrides) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "type": "order.paid",
        "user_id": str(user_id),
        "data": {"order_id": "o-1", "total": 100, "currency": "EUR"},
        **overrides,
    }


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["code"] == code
    return response.json()


def test_an_event_is_202_and_a_repeat_is_202_duplicate(publisher, customer):
    user_id, _ = customer
    body = event(user_id)
    first = publisher.post("/api/notifications/events/", body, format="json")
    again = publisher.post("/api/notifications/events/", body, format="json")
    assert (first.status_code, first.json()["status"]) == (202, "accepted")
    assert again.json() == {"event_id": body["event_id"], "status": "duplicate", "notification_id": None}
    assert Notification.objects.count() == 1


def test_users_cannot_publish_events(customer):
    user_id, client = customer
    assert_problem(client.post("/api/notifications/events/", event(user_id), format="json"), 403, "permission_denied")
    assert Notification.objects.count() == 0


def test_a_service_without_the_publish_scope_cannot_publish(db):
    from apps.core.testing import bearer_client, service_client_token

    client = bearer_client(service_client_token(client_id="notifications", scopes=[]))
    response = client.post("/api/notifications/events/", event(uuid.uuid4()), format="json")
    assert_problem(response, 403, "permission_denied")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"event_id": "1"}, "event_id"),
        ({"type": "Order Paid"}, "type"),
        ({"type": "paid"}, "type"),
        ({"user_id": None}, "user_id"),
        ({"data": [1]}, "data"),
        ({"extra": True}, "extra"),
    ],
)
def test_invalid_events_are_400(publisher, overrides, field):
    response = publisher.post("/api/notifications/events/", {**event(uuid.uuid4()), **overrides}, format="json")
    assert field in assert_problem(response, 400, "validation_error")["errors"]
    assert Notification.objects.count() == 0


def test_the_inbox_is_mine_only_newest_first_and_read_marks_stick(publisher, customer):
    user_id, client = customer
    first, second = event(user_id), event(user_id, type="order.cancelled")
    for body in (first, second, event(uuid.uuid4())):
        publisher.post("/api/notifications/events/", body, format="json")
    inbox = client.get("/api/notifications/").json()
    assert inbox["count"] == 2
    assert [item["event_id"] for item in inbox["results"]] == [second["event_id"], first["event_id"]]
    newest = inbox["results"][0]["id"]
    read = client.post(f"/api/notifications/{newest}/read/")
    assert read.status_code == 200
    assert read.json()["read_at"] is not None
    unread = client.get("/api/notifications/?unread=true").json()
    assert [item["event_id"] for item in unread["results"]] == [first["event_id"]]
    assert_problem(client.get("/api/notifications/?unread=maybe"), 400, "validation_error")


def test_another_users_notification_cannot_be_marked_read(publisher, customer):
    _, client = customer
    publisher.post("/api/notifications/events/", event(uuid.uuid4()), format="json")
    theirs = Notification.objects.get()
    assert_problem(client.post(f"/api/notifications/{theirs.id}/read/"), 404, "not_found")
    assert Notification.objects.get().read_at is None


def test_accepting_an_event_with_an_email_is_seven_statements(publisher, customer, django_assert_num_queries):
    user_id, _ = customer
    publisher.post("/api/notifications/events/", event(user_id), format="json")  # the signing keys loaded
    with_email = event(user_id, data={"order_id": "o-2", "total": 100, "currency": "EUR", "email": "ada@example.com"})
    with django_assert_num_queries(7):  # the event id, the notification and the queued email, in one transaction
        response = publisher.post("/api/notifications/events/", with_email, format="json")
    assert (response.status_code, response.json()["status"]) == (202, "accepted")
