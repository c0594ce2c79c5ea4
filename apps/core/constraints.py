"""Model validation that asks the database about every check constraint of a model in one statement,
compiled once.

`Model.full_clean()` validates each `CheckConstraint` with a query of its own (`Q.check()`: one
`SELECT 1 WHERE <condition>` with every field's value, inside a savepoint when a transaction is
open). An order has eight, so placing one cost more than twenty queries before anything was saved.
`OneQueryCheckConstraints.validate_constraints()` selects every condition's outcome at once:

    SELECT COALESCE(<condition 1>, TRUE), COALESCE(<condition 2>, TRUE), ...

with the same field values, the same rules (a condition that is NULL holds, as in the database; a
condition naming an excluded field is skipped; a database error is logged and lets the instance
pass, the database itself still enforcing the constraint on save) and the same errors, in the same
order, as Django's own validation. Other constraints (unique ones) are validated by Django as before.

Building that statement with the ORM costs far more than running it, so it is compiled once per
model, excluded fields and shape of the values (which referenced fields are NULL, or a new instance's
database default: both compile into the SQL), with stand-in values (apps.core.prepared's sentinels),
and later validations only put their own values in place. A value that is an expression (`Now()`),
a relation, or a field type without stand-ins compiles afresh each time, as before.
"""

import logging
import threading
from contextlib import nullcontext
from dataclasses import dataclass

from django.core.exceptions import FieldError, ImproperlyConfigured, ValidationError
from django.db import DatabaseError, connections, router, transaction
from django.db.models import BooleanField, CheckConstraint, Q, Value
from django.db.models.expressions import DatabaseDefault
from django.db.models.functions import Coalesce
from django.db.models.sql import Query

from apps.core.prepared import sentinel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Statement:
    sql: str
    template: tuple
    positions: dict[str, tuple[int, ...]]  # where each referenced field's value goes
    checked: tuple[str, ...]  # the constraints it checks, in its columns' order


_statements: dict[tuple, _Statement | None] = {}  # None: this shape cannot be compiled once
_statements_lock = threading.Lock()


def _statement_build(model_class, constraints, against: dict, alias: str) -> tuple[str, list, list[str]]:
    """(sql, params, names of the constraints it checks) for the values in `against`."""
    query = Query(None)
    try:
        for name, value in against.items():
            query.add_annotation(value if hasattr(value, "resolve_expression") else Value(value), name, select=False)
    except FieldError:
        return "", [], []  # a value naming another field: Django's validation skips every check then
    checked = []
    for index, constraint in enumerate(constraints):
        try:
            query.add_annotation(
                Coalesce(Q(constraint.condition), True, output_field=BooleanField()), f"_check_{index}"
            )
        except FieldError:
            continue  # a condition on an excluded field is not checked, as Django's own validation does
        checked.append(constraint.name)
    if not checked:
        return "", [], []
    sql, params = query.get_compiler(using=alias).as_sql()
    return sql, list(params), checked


def _kind(value) -> str:
    """What a field's value is, as far as the compiled statement is concerned."""
    if value is None:
        return "null"  # compiled into the SQL
    if isinstance(value, DatabaseDefault):
        return "default"  # a new instance's db_default: the same expression for every instance
    if hasattr(value, "resolve_expression"):
        return "expression"  # compiled afresh each time
    return "value"  # a parameter


def _referenced(constraints) -> set[str]:
    names = set()
    for constraint in constraints:
        names |= set(Q(constraint.condition).referenced_base_fields)
    return names


def _statement_compile(instance, model_class, constraints, *, exclude, alias, shape) -> _Statement | None:
    """The statement for this shape of values, with stand-ins where the values go; None if it cannot be."""
    meta = model_class._meta
    connection = connections[alias]
    stand_ins = {}
    for name in _referenced(constraints):
        if name in (exclude or ()) or dict(shape).get(name) != "value":
            continue  # NULL and the field's database default compile the same for every instance
        field = meta.get_field(name)
        if field.is_relation:
            return None  # setting a stand-in key would drop the instance's cached related object
        try:
            stand_ins[name] = sentinel(field)
        except ImproperlyConfigured:
            return None
    saved = {name: getattr(instance, meta.get_field(name).attname) for name in stand_ins}
    try:
        for name, value in stand_ins.items():
            setattr(instance, meta.get_field(name).attname, value)
        against = instance._get_field_expression_map(meta=meta, exclude=exclude)
    finally:
        for name, value in saved.items():
            setattr(instance, meta.get_field(name).attname, value)
    sql, template, checked = _statement_build(model_class, constraints, against, alias)
    positions = {}
    for name, value in stand_ins.items():
        field = meta.get_field(name)
        prepared = field.get_db_prep_value(value, connection)
        found = tuple(index for index, param in enumerate(template) if param == prepared)
        if not found and sql:
            return None  # the value does not reach the statement as itself: compile afresh each time
        positions[name] = found
    return _Statement(sql, tuple(template), positions, tuple(checked))


def check_constraints_failed(instance, model_class, constraints: list[CheckConstraint], *, exclude, using) -> set[str]:
    """Names of the check constraints `instance` violates, from one statement."""
    meta = model_class._meta
    connection = connections[using]
    shape = []
    for name in sorted(_referenced(constraints)):
        if name in (exclude or ()):
            continue
        shape.append((name, _kind(getattr(instance, meta.get_field(name).attname))))
    shape = tuple(shape)
    key = (using, connection.vendor, model_class, frozenset(exclude or ()), tuple(c.name for c in constraints), shape)
    statement = None
    if all(kind != "expression" for _, kind in shape):
        if key not in _statements:
            compiled = _statement_compile(instance, model_class, constraints, exclude=exclude, alias=using, shape=shape)
            with _statements_lock:
                _statements.setdefault(key, compiled)
        statement = _statements[key]
    if statement is not None:
        sql, checked = statement.sql, statement.checked
        params = list(statement.template)
        for name, positions in statement.positions.items():
            field = meta.get_field(name)
            prepared = field.get_db_prep_value(getattr(instance, field.attname), connection)
            for index in positions:
                params[index] = prepared
    else:
        against = instance._get_field_expression_map(meta=meta, exclude=exclude)
        sql, params, checked = _statement_build(model_class, constraints, against, using)
    if not checked:
        return set()
    # Inside a transaction, a failing statement must not break it: a savepoint, as Q.check() takes.
    context = transaction.atomic(using=using) if connection.in_atomic_block else nullcontext()
    try:
        with context, connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
    except DatabaseError as error:
        logger.warning("check constraints could not be validated: %s", error, extra={"model": model_class.__name__})
        return set()
    return {name for name, holds in zip(checked, row, strict=True) if not holds}


class OneQueryCheckConstraints:
    """Mixin for models: `full_clean()` validates all their check constraints in one query.

    `constraints_left_to_the_database` names constraints `full_clean()` does not validate: ones whose
    violation only a race between two requests can cause, which the database decides on save (the
    caller turns the IntegrityError into its answer) and a query before it could not decide anyway.
    """

    constraints_left_to_the_database: tuple[str, ...] = ()

    def validate_constraints(self, exclude=None):
        using = router.db_for_write(self.__class__, instance=self)
        if not connections[using].features.supports_comparing_boolean_expr:
            super().validate_constraints(exclude=exclude)
            return
        errors = {}
        left = self.constraints_left_to_the_database
        for model_class, declared in self.get_constraints():
            validated = [constraint for constraint in declared if constraint.name not in left]
            checks = [constraint for constraint in validated if isinstance(constraint, CheckConstraint)]
            failed = check_constraints_failed(self, model_class, checks, exclude=exclude, using=using) if checks else ()
            for constraint in validated:
                try:
                    if isinstance(constraint, CheckConstraint):
                        if constraint.name in failed:
                            raise ValidationError(
                                constraint.get_violation_error_message(), code=constraint.violation_error_code
                            )
                    else:
                        constraint.validate(model_class, self, exclude=exclude, using=using)
                except ValidationError as error:
                    # What Model.validate_constraints() does with an error.
                    if getattr(error, "code", None) == "unique" and len(constraint.fields) == 1:
                        errors.setdefault(constraint.fields[0], []).append(error)
                    else:
                        errors = error.update_error_dict(errors)
        if errors:
            raise ValidationError(errors)
