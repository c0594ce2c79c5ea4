"""Model validation that asks the database about every check constraint of a model in one query.

`Model.full_clean()` validates each `CheckConstraint` with a query of its own (`Q.check()`: one
`SELECT 1 WHERE <condition>` with every field's value, inside a savepoint when a transaction is
open). An order has eight, so placing one cost more than twenty queries before anything was saved.
`OneQueryCheckConstraints.validate_constraints()` selects every condition's outcome at once:

    SELECT COALESCE(<condition 1>, TRUE), COALESCE(<condition 2>, TRUE), ...

with the same field values, the same rules (a condition that is NULL holds, as in the database; a
condition naming an excluded field is skipped; a database error is logged and lets the instance
pass, the database itself still enforcing the constraint on save) and the same errors, in the same
order, as Django's own validation. Other constraints (unique ones) are validated by Django as before.
"""

import logging
from contextlib import nullcontext

from django.core.exceptions import FieldError, ValidationError
from django.db import DatabaseError, connections, router, transaction
from django.db.models import BooleanField, CheckConstraint, Q, Value
from django.db.models.functions import Coalesce
from django.db.models.sql import Query
from django.db.models.sql.constants import SINGLE

logger = logging.getLogger(__name__)


def check_constraints_failed(instance, model_class, constraints: list[CheckConstraint], *, exclude, using) -> set[str]:
    """Names of the check constraints `instance` violates, from one query."""
    against = instance._get_field_expression_map(meta=model_class._meta, exclude=exclude)
    query = Query(None)
    for name, value in against.items():
        query.add_annotation(value if hasattr(value, "resolve_expression") else Value(value), name, select=False)
    selected = []
    for index, constraint in enumerate(constraints):
        try:
            query.add_annotation(
                Coalesce(Q(constraint.condition), True, output_field=BooleanField()), f"_check_{index}"
            )
        except FieldError:
            continue  # a condition on an excluded field is not checked, as Django's own validation does
        selected.append(constraint)
    if not selected:
        return set()
    connection = connections[using]
    # Inside a transaction, a failing query must not break it: a savepoint, as Q.check() takes.
    context = transaction.atomic(using=using) if connection.in_atomic_block else nullcontext()
    try:
        with context:
            row = query.get_compiler(using=using).execute_sql(SINGLE)
    except DatabaseError as error:
        logger.warning("check constraints could not be validated: %s", error, extra={"model": model_class.__name__})
        return set()
    return {constraint.name for constraint, holds in zip(selected, row, strict=True) if not holds}


class OneQueryCheckConstraints:
    """Mixin for models: `full_clean()` validates all their check constraints in one query."""

    def validate_constraints(self, exclude=None):
        using = router.db_for_write(self.__class__, instance=self)
        errors = {}
        for model_class, model_constraints in self.get_constraints():
            checks = [constraint for constraint in model_constraints if isinstance(constraint, CheckConstraint)]
            failed = check_constraints_failed(self, model_class, checks, exclude=exclude, using=using) if checks else ()
            for constraint in model_constraints:
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
