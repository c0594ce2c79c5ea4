"""Prepared reads: the same rows, values and instances as the queryset they were prepared from."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections, models
from django.db.models import F
from django.db.models.signals import post_init
from django.test.utils import isolate_apps

from apps.core import prepared
from apps.core.models import KeySetSnapshot, RateLimitCounter
from apps.core.prepared import PreparedQuery, run_together

COUNTERS = PreparedQuery(
    RateLimitCounter,
    lambda scope, attempts: RateLimitCounter.objects.filter(scope=scope, attempts__gte=attempts).order_by("key_digest"),
    scope="scope",
    attempts="attempts",
)
SNAPSHOT = PreparedQuery(KeySetSnapshot, lambda source: KeySetSnapshot.objects.filter(pk=source), source="source")


def field_values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def counters_create() -> None:
    at = datetime(2026, 11, 26, 8, 16, 30, 898000, tzinfo=UTC)
    for number, scope in enumerate(["login", "login", "login", "register"]):
        RateLimitCounter.objects.create(
            scope=scope, key_digest=f"{9 - number:064d}", tokens=number + 0.5, attempts=number, updated_at=at
        )


@pytest.fixture
def counters(db):
    counters_create()


@pytest.mark.usefixtures("counters")
def test_the_rows_and_their_values_are_the_querysets_own():
    for scope, attempts in [("login", 0), ("login", 1), ("register", 0), ("register", 9), ("nobody", 0)]:
        expected = RateLimitCounter.objects.filter(scope=scope, attempts__gte=attempts).order_by("key_digest")
        found = COUNTERS.run(scope=scope, attempts=attempts)
        assert [field_values(counter) for counter in found] == [field_values(counter) for counter in expected]


@pytest.mark.usefixtures("counters")
def test_get_answers_as_the_querysets_get():
    expected = RateLimitCounter.objects.filter(scope="register", attempts__gte=0).get()
    assert field_values(COUNTERS.get(scope="register", attempts=0)) == field_values(expected)
    with pytest.raises(RateLimitCounter.DoesNotExist, match="does not exist"):
        COUNTERS.get(scope="nobody", attempts=0)
    with pytest.raises(RateLimitCounter.MultipleObjectsReturned, match="it returned 3"):
        COUNTERS.get(scope="login", attempts=0)


@pytest.mark.usefixtures("counters")
def test_the_instances_are_fetched_ones():
    counter = COUNTERS.run(scope="register", attempts=0)[0]
    assert counter._state.adding is False
    assert counter._state.db == "default"
    assert isinstance(counter.updated_at, datetime)
    assert counter.updated_at.tzinfo is not None
    counter.attempts = F("attempts") + 1
    counter.save(update_fields=["attempts"])
    assert RateLimitCounter.objects.get(pk=counter.pk).attempts == 4


@pytest.mark.django_db
def test_converters_apply_as_in_the_orm():
    document = {"keys": [{"kid": "a", "n": 1}]}
    KeySetSnapshot.objects.create(source="http://auth/jwks", document=document, fetched_at=datetime.now(tz=UTC))
    [snapshot] = SNAPSHOT.run(source="http://auth/jwks")
    assert snapshot.document == document
    assert SNAPSHOT.run(source="http://elsewhere/jwks") == []


@pytest.mark.usefixtures("counters")
def test_one_statement_per_run(django_assert_num_queries):
    COUNTERS.run(scope="login", attempts=0)  # compiled
    with django_assert_num_queries(1):
        assert len(COUNTERS.run(scope="login", attempts=1)) == 2


@pytest.mark.django_db(transaction=True)
def test_threads_compile_their_own_and_read_their_own_values():
    counters_create()
    found = {}

    def read(attempts: int) -> None:
        try:
            found[attempts] = [counter.attempts for counter in COUNTERS.run(scope="login", attempts=attempts)]
        finally:
            connections.close_all()

    threads = [threading.Thread(target=read, args=(attempts,)) for attempts in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == {0: [2, 1, 0], 1: [2, 1], 2: [2]}


@pytest.mark.django_db
def test_a_parameter_that_never_reaches_the_sql_is_refused():
    ignores_its_parameter = PreparedQuery(
        RateLimitCounter, lambda scope: RateLimitCounter.objects.filter(scope="login"), scope="scope"
    )
    with pytest.raises(ImproperlyConfigured, match="'scope' does not reach the SQL"):
        ignores_its_parameter.run(scope="login")


@pytest.mark.django_db
def test_only_plain_rows_of_the_model_are_prepared():
    annotated = PreparedQuery(
        RateLimitCounter,
        lambda scope: RateLimitCounter.objects.filter(scope=scope).annotate(later=F("updated_at") + timedelta(1)),
        scope="scope",
    )
    with pytest.raises(ImproperlyConfigured, match="plain RateLimitCounter rows"):
        annotated.run(scope="login")


@pytest.mark.django_db
def test_a_missing_value_is_refused():
    with pytest.raises(ValueError, match="scope"):
        COUNTERS.run(scope=None, attempts=0)


@pytest.mark.usefixtures("counters")
def test_reads_run_together_give_what_each_gives_alone_in_one_trip_on_postgresql(django_assert_num_queries):
    reads = [
        (COUNTERS, {"scope": "login", "attempts": 1}),
        (SNAPSHOT, {"source": "http://nowhere/jwks"}),  # no rows, between two that have some
        (COUNTERS, {"scope": "register", "attempts": 0}),
    ]
    alone = [[field_values(row) for row in query.run(**values)] for query, values in reads]
    trips = 1 if connection.vendor == "postgresql" else len(reads)
    with django_assert_num_queries(trips):
        together = run_together(*reads)
    assert [[field_values(row) for row in rows] for rows in together] == alone
    assert [len(rows) for rows in together] == [2, 0, 1]
    assert all(row._state.adding is False for rows in together for row in rows)


@pytest.mark.django_db
def test_a_missing_value_among_reads_run_together_sends_none_of_them(django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(ValueError, match="scope"):
        run_together((SNAPSHOT, {"source": "http://auth/jwks"}), (COUNTERS, {"scope": None, "attempts": 0}))


@pytest.mark.usefixtures("counters")
def test_instances_made_without_the_constructor_are_what_from_db_makes():
    names = [field.attname for field in RateLimitCounter._meta.concrete_fields]
    rows = RateLimitCounter.objects.order_by("key_digest").values_list(*names)  # the rows the ORM's iterator reads
    found = COUNTERS.run(scope="login", attempts=0) + COUNTERS.run(scope="register", attempts=0)
    expected = [RateLimitCounter.from_db("default", names, row) for row in rows]
    assert [type(counter) for counter in found] == [RateLimitCounter] * 4
    fields = [{k: v for k, v in vars(counter).items() if k != "_state"} for counter in found]
    assert sorted(fields, key=lambda values: values["key_digest"]) == [
        {k: v for k, v in vars(counter).items() if k != "_state"} for counter in expected
    ]
    assert all(vars(counter._state) == vars(expected[0]._state) for counter in found)


def test_every_model_the_services_read_prepared_is_made_without_its_constructor():
    """Else their reads would quietly take the slower path: what `_plain` refuses is what a model
    of the services adds to its construction (an overridden __init__ or from_db, a custom descriptor)."""
    for model in apps.get_models():
        if model._meta.app_label in {"orders", "payments", "identity", "notifications", "core"}:
            assert prepared._plain(model), model


@pytest.mark.usefixtures("counters")
def test_a_receiver_of_post_init_is_called_for_each_prepared_instance():
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append((sender, instance.key_digest))

    post_init.connect(receiver, sender=RateLimitCounter, weak=False)
    try:
        found = COUNTERS.run(scope="login", attempts=0)
    finally:
        post_init.disconnect(receiver, sender=RateLimitCounter)
    assert seen == [(RateLimitCounter, counter.key_digest) for counter in found]
    assert len(seen) == 3


@isolate_apps("apps.core")
def test_a_model_that_adds_to_its_construction_is_made_by_from_db():
    class Counted(models.Model):  # noqa: DJ008 (never shown)
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.counted = True

    class Loaded(models.Model):  # noqa: DJ008 (never shown)
        @classmethod
        def from_db(cls, db, field_names, values):
            return super().from_db(db, field_names, values)

    class Described(models.Model):  # noqa: DJ008 (never shown)
        name = models.CharField(max_length=10)

    class Upper:  # a descriptor of the kind a custom field installs
        def __get__(self, instance, owner):
            return self if instance is None else instance.__dict__["name"]

        def __set__(self, instance, value):
            instance.__dict__["name"] = value.upper()

    Described.name = Upper()

    class Plain(models.Model):  # noqa: DJ008 (never shown)
        name = models.CharField(max_length=10)
        parent = models.ForeignKey("self", null=True, on_delete=models.CASCADE)

    assert [prepared._plain(model) for model in (Counted, Loaded, Described, Plain)] == [False, False, False, True]
