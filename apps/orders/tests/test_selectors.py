"""Reads of the orders service that are not the API's own (apps/orders/selectors.py)."""

import threading
import time
import uuid

import pytest
from django.db import connection, transaction
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext

from apps.orders import selectors
from apps.orders.models import Order
from apps.orders.tests.factories import order_make


@pytest.mark.django_db
def test_a_locked_order_is_what_the_orms_select_for_update_reads_in_one_statement():
    order = order_make(uuid.uuid4(), decline_code="", payment_error="")
    order_make(uuid.uuid4())  # another

    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        locked = selectors.order_locked(order_id=order.id)
    with transaction.atomic():
        expected = Order.objects.select_for_update().get(pk=order.id)

    assert model_to_dict(locked) == model_to_dict(expected)
    assert (locked.created_at, locked.updated_at) == (expected.created_at, expected.updated_at)
    assert len(captured.captured_queries) == 1
    # FOR UPDATE where the database locks rows; SQLite locks the whole file for a writing transaction.
    assert ("FOR UPDATE" in captured.captured_queries[0]["sql"]) == connection.features.has_select_for_update
    with transaction.atomic(), pytest.raises(Order.DoesNotExist):
        selectors.order_locked(order_id=uuid.uuid4())


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks between connections: PostgreSQL only here")
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_second_transaction_waits_until_the_first_releases_the_order():
    order = order_make(uuid.uuid4())
    locked, released_at, acquired_at = threading.Event(), [], []

    def first():
        with transaction.atomic():
            selectors.order_locked(order_id=order.id)
            locked.set()
            time.sleep(0.5)
            released_at.append(time.monotonic())
        connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert locked.wait(timeout=10)
        with transaction.atomic():
            selectors.order_locked(order_id=order.id)
            acquired_at.append(time.monotonic())
    finally:
        thread.join()
    assert acquired_at[0] >= released_at[0]
