"""Check constraints validated in one query: the same verdicts and errors as Django's own validation."""

import itertools

import pytest
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F, Value

from apps.core.constraints import OneQueryCheckConstraints


class Charge(OneQueryCheckConstraints, models.Model):
    """A model of the test's own (no table: validating constraints selects values only), with the
    kinds of conditions the services' models use."""

    amount = models.BigIntegerField()
    refunded = models.BigIntegerField(default=0)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16)
    decline_code = models.CharField(max_length=64, blank=True)
    quantity = models.IntegerField(null=True, blank=True)
    reason = models.CharField(max_length=20, blank=True, db_default="")

    class Meta:
        app_label = "core"
        managed = False
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="charge_amount_positive"),
            models.CheckConstraint(condition=models.Q(currency__regex=r"^[A-Z]{3}$"), name="charge_currency_code"),
            models.CheckConstraint(
                condition=models.Q(refunded__gte=0, refunded__lte=models.F("amount")), name="charge_refund_within"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["succeeded", "declined"]),
                name="charge_status_known",
                violation_error_message="Unknown status.",
                violation_error_code="status_unknown",
            ),
            models.CheckConstraint(
                condition=~models.Q(status="declined") | ~models.Q(decline_code=""), name="charge_declined_has_code"
            ),
            # NULL compared with anything is unknown: the database lets the row in, and so must validation.
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="charge_quantity_positive"),
            models.CheckConstraint(
                condition=~models.Q(status="declined") | ~models.Q(reason=""), name="charge_declined_has_reason"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"


def djangos_own_errors(instance, exclude=None) -> dict | None:
    """What Django's Model.validate_constraints() says, one query per constraint."""
    try:
        models.Model.validate_constraints(instance, exclude=exclude)
    except ValidationError as error:
        return error.message_dict
    return None


def one_query_errors(instance, exclude=None) -> dict | None:
    try:
        instance.validate_constraints(exclude=exclude)
    except ValidationError as error:
        return error.message_dict
    return None


CASES = list(
    itertools.product(
        [2500, 0, -1],  # amount
        [0, 2500, 3000, -5],  # refunded
        ["EUR", "eur", "EURO"],  # currency
        ["succeeded", "declined", "lost"],  # status
        ["", "card_declined"],  # decline_code
        [None, 1, 0],  # quantity
        [None, "", "fraud"],  # reason; None: left to its database default
    )
)


@pytest.mark.django_db
def test_every_verdict_and_error_is_djangos_own():
    for amount, refunded, currency, status, decline_code, quantity, reason in CASES:
        charge = Charge(
            amount=amount,
            refunded=refunded,
            currency=currency,
            status=status,
            decline_code=decline_code,
            quantity=quantity,
            **({} if reason is None else {"reason": reason}),
        )
        assert one_query_errors(charge) == djangos_own_errors(charge), (amount, refunded, currency, status, reason)


@pytest.mark.django_db
def test_a_valid_instance_passes_and_an_invalid_one_names_every_violated_constraint_in_order():
    assert one_query_errors(Charge(amount=1, currency="EUR", status="succeeded")) is None
    errors = one_query_errors(Charge(amount=0, refunded=1, currency="eu", status="lost", quantity=0))
    assert errors == {
        "__all__": [
            "Constraint “charge_amount_positive” is violated.",
            "Constraint “charge_currency_code” is violated.",
            "Constraint “charge_refund_within” is violated.",
            "Unknown status.",
            "Constraint “charge_quantity_positive” is violated.",
        ]
    }


@pytest.mark.django_db
def test_the_error_code_is_the_constraints_own():
    with pytest.raises(ValidationError) as raised:
        Charge(amount=1, currency="EUR", status="lost").validate_constraints()
    assert [error.code for error in raised.value.error_dict["__all__"]] == ["status_unknown"]


@pytest.mark.django_db
def test_a_condition_on_an_excluded_field_is_not_checked():
    charge = Charge(amount=0, currency="EUR", status="succeeded")
    assert one_query_errors(charge, exclude={"amount"}) == djangos_own_errors(charge, exclude={"amount"}) is None
    charge.currency = "x"
    assert one_query_errors(charge, exclude={"amount"}) == {
        "__all__": ["Constraint “charge_currency_code” is violated."]
    }


@pytest.mark.django_db
def test_a_constraint_left_to_the_database_is_neither_checked_nor_reported():
    charge = Charge(amount=0, currency="eu", status="succeeded")
    charge.constraints_left_to_the_database = ("charge_amount_positive",)
    assert one_query_errors(charge) == {"__all__": ["Constraint “charge_currency_code” is violated."]}
    charge.currency = "EUR"
    assert one_query_errors(charge) is None


@pytest.mark.django_db(transaction=True)
def test_all_check_constraints_cost_one_query(django_assert_num_queries):
    charge = Charge(amount=0, currency="eu", status="lost")
    with django_assert_num_queries(1):
        one_query_errors(charge)
    with django_assert_num_queries(7):  # Django's own: one per constraint
        djangos_own_errors(charge)


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_query_runs_in_a_savepoint(django_assert_num_queries):
    with transaction.atomic(), django_assert_num_queries(3):  # SAVEPOINT, the query, RELEASE
        assert one_query_errors(Charge(amount=1, currency="EUR", status="succeeded")) is None


@pytest.mark.django_db
def test_the_statement_is_compiled_once_per_shape_of_values(monkeypatch):
    from apps.core import constraints

    built = []
    real_build = constraints._statement_build
    monkeypatch.setattr(constraints, "_statements", {})
    monkeypatch.setattr(constraints, "_statement_build", lambda *args: built.append(args) or real_build(*args))

    for amount, status in [(1, "succeeded"), (2, "declined"), (0, "succeeded"), (-3, "declined")]:
        # `reason` is left to its database default, an expression that is the same for every new instance.
        charge = Charge(amount=amount, currency="EUR", status=status, decline_code="x", quantity=1)
        assert one_query_errors(charge) == djangos_own_errors(charge)
    assert len(built) == 1
    one_query_errors(Charge(amount=1, currency="EUR", status="succeeded", quantity=None))  # NULL: another shape
    assert len(built) == 2


@pytest.mark.django_db
def test_a_value_that_is_an_expression_is_checked_as_django_checks_it():
    for amount in (Value(5), Value(0), F("refunded") + 1):
        charge = Charge(amount=amount, refunded=0, currency="EUR", status="succeeded")
        assert one_query_errors(charge) == djangos_own_errors(charge)
