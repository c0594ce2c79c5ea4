"""Prepared reads: a queryset's SQL compiled once and run again with other values.

On a hot read the ORM costs several times what the database does: building the queryset (filters,
lookups, clones), compiling it to SQL, and walking its iterator take about 0.3 ms of CPU per query
here, where executing the statement on SQLite or PostgreSQL takes well under 0.1 ms. A
`PreparedQuery` builds its queryset once per thread and database, with stand-in values (sentinels)
for its parameters, finds where each one ended up among the compiled statement's parameters, and
from then on only swaps in the real values (prepared for the database as the lookup would prepare
them), executes, applies the same converters and makes the instances as the ORM's own iterator
does (`Model.from_db`), or, for a model whose instance is nothing but its values and a ModelState,
makes that directly (`_plain`).

For simple reads of one model: no select_related, no annotations, no deferred fields. A queryset
that does not carry a parameter through unchanged (a value the ORM rewrites) is refused when it is
first compiled, so a prepared query either runs exactly the queryset's SQL or does not run at all.
"""

from __future__ import annotations

import inspect
import itertools
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core.exceptions import ImproperlyConfigured
from django.db import connections, models, router
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init
from psycopg import ClientCursor

_counter = itertools.count(1)


_INTEGERS = {
    "AutoField",
    "BigAutoField",
    "BigIntegerField",
    "IntegerField",
    "PositiveBigIntegerField",
    "PositiveIntegerField",
    "PositiveSmallIntegerField",
    "SmallIntegerField",
}
_TEXTS = {"CharField", "EmailField", "SlugField", "TextField"}


def sentinel(field: models.Field):
    """A value of the field's type that no real value will equal: it stands in for one while a
    statement is compiled, and is found again among the compiled parameters."""
    internal = field.target_field.get_internal_type() if field.is_relation else field.get_internal_type()
    if internal == "UUIDField":
        return uuid.uuid4()
    if internal in _INTEGERS:
        return 2_000_000_000 + next(_counter) * 7919 + uuid.uuid4().int % 7919
    if internal in _TEXTS:
        return f"sentinel-{uuid.uuid4().hex}"
    if internal == "DateTimeField":
        microseconds = next(_counter) * 7919 + uuid.uuid4().int % 7919
        return datetime(2999, 1, 1, tzinfo=UTC) + timedelta(microseconds=microseconds)
    raise ImproperlyConfigured(f"no stand-in value for a {internal} ({field})")


def _prepare(field: models.Field, value, connection):
    """A value as an exact lookup on the field hands it to the database driver."""
    return field.get_db_prep_value(field.get_prep_value(value), connection, prepared=True)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    template: tuple  # the statement's parameters, sentinels in place
    positions: dict[str, tuple[int, ...]]  # where each named parameter goes
    attnames: list[str]
    converters: dict
    compiler: object  # applies the converters, with this thread's connection
    plain: bool  # `_plain(model)`, and every field selected in the model's order


# The descriptors Django puts on a model for its concrete fields, through which `Model.__init__`
# sets each value: on a new instance each of them only stores it in the instance's __dict__.
_STORING_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


def _plain(model: type[models.Model]) -> bool:
    """Whether `model.from_db(alias, every attname, row)` makes nothing but an instance whose __dict__
    holds a ModelState (not adding, of `alias`) and the row's values under the fields' attnames:
    `Model.__init__` and `from_db` not overridden, and each field's value set through a descriptor
    that only stores it. `pre_init` and `post_init` receivers are looked for at each read (`_made`)."""
    if model.__init__ is not models.Model.__init__ or model.from_db.__func__ is not models.Model.from_db.__func__:
        return False
    return all(
        type(inspect.getattr_static(model, field.attname, None)) in _STORING_DESCRIPTORS
        for field in model._meta.concrete_fields
    )


def _made(model: type[models.Model], alias: str, attnames: list[str], rows: list) -> list[models.Model]:
    """What `[model.from_db(alias, attnames, row) for row in rows]` makes, for a `_plain` model read
    in full, without its constructor's work: in a loop of them a third of the time. Through `from_db`
    after all whenever a receiver of `pre_init` or `post_init` is connected, for any model."""
    if pre_init.receivers or post_init.receivers:
        return [model.from_db(alias, attnames, row) for row in rows]
    made = []
    for row in rows:
        instance = model.__new__(model)
        state = instance._state = ModelState()
        state.adding, state.db = False, alias
        instance.__dict__.update(zip(attnames, row, strict=True))
        made.append(instance)
    return made


class PreparedQuery:
    """`build(**values)` is a queryset of `model`; `fields` names, for each value, the model field
    that stores it (how the database receives it). Call `run(**values)` for the instances."""

    def __init__(self, model: type[models.Model], build: Callable[..., models.QuerySet], **fields: str):
        self.model = model
        self.build = build
        self.fields = {name: model._meta.get_field(field_name) for name, field_name in fields.items()}
        self._local = threading.local()

    def _compile(self, alias: str) -> _Compiled:
        connection = connections[alias]
        sentinels = {name: sentinel(field) for name, field in self.fields.items()}
        queryset = self.build(**sentinels)
        if queryset.model is not self.model or queryset.query.select_related or queryset.query.annotations:
            raise ImproperlyConfigured(f"a prepared query reads plain {self.model.__name__} rows")
        compiler = queryset.query.get_compiler(using=alias)
        sql, template = compiler.as_sql()
        positions = {}
        for name, field in self.fields.items():
            prepared = _prepare(field, sentinels[name], connection)
            found = tuple(index for index, value in enumerate(template) if value == prepared)
            if not found:
                raise ImproperlyConfigured(f"the parameter {name!r} does not reach the SQL of {self.model.__name__}")
            positions[name] = found
        select = compiler.select
        klass_info = compiler.klass_info
        if klass_info is None or klass_info.get("related_klass_infos") or compiler.annotation_col_map:
            raise ImproperlyConfigured(f"a prepared query reads plain {self.model.__name__} rows")
        fields = klass_info["select_fields"]
        attnames = [column[0].target.attname for column in select[fields[0] : fields[-1] + 1]]
        if len(attnames) != len(select):
            raise ImproperlyConfigured(f"a prepared query reads plain {self.model.__name__} rows")
        converters = compiler.get_converters([column[0] for column in select])
        plain = _plain(self.model) and attnames == [field.attname for field in self.model._meta.concrete_fields]
        return _Compiled(sql, tuple(template), positions, attnames, converters, compiler, plain)

    def _statement(self, values: dict) -> tuple[str, _Compiled, list]:
        """The database alias, the compiled statement and its parameters with these values in place."""
        alias = router.db_for_read(self.model)
        compiled = getattr(self._local, alias, None)
        if compiled is None:
            compiled = self._compile(alias)
            setattr(self._local, alias, compiled)
        connection = connections[alias]
        params = list(compiled.template)
        for name, field in self.fields.items():
            if values[name] is None:
                raise ValueError(f"{name} is None: a prepared query compares with =, which no NULL equals")
            prepared = _prepare(field, values[name], connection)
            for index in compiled.positions[name]:
                params[index] = prepared
        return alias, compiled, params

    def _instances(self, alias: str, compiled: _Compiled, rows: list) -> list[models.Model]:
        if compiled.converters:
            rows = compiled.compiler.apply_converters(rows, compiled.converters)
        if compiled.plain:
            return _made(self.model, alias, compiled.attnames, rows)
        return [self.model.from_db(alias, compiled.attnames, row) for row in rows]

    def run(self, **values) -> list[models.Model]:
        alias, compiled, params = self._statement(values)
        with connections[alias].cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows = cursor.fetchall()
        return self._instances(alias, compiled, rows)

    def get(self, **values) -> models.Model:
        """The one instance, as the queryset's `.get()` answers: the model's DoesNotExist when there
        is none, MultipleObjectsReturned when there are more."""
        found = self.run(**values)
        if len(found) == 1:
            return found[0]
        name = self.model._meta.object_name
        if not found:
            raise self.model.DoesNotExist(f"{name} matching query does not exist.")
        raise self.model.MultipleObjectsReturned(f"get() returned more than one {name} -- it returned {len(found)}!")


def _sends_statements_together(cursor) -> bool:
    """Whether one execute() on this cursor may carry several statements and return each one's rows:
    psycopg's client-side binding cursor (Django's default on PostgreSQL) sends the statement, values
    in place, through the simple query protocol, which allows several; SQLite's driver runs one."""
    return isinstance(cursor.cursor, ClientCursor)


def run_together(*reads: tuple[PreparedQuery, dict]) -> list[list[models.Model]]:
    """Several prepared reads on one database, each `(query, values)`; their instances, in order.

    On PostgreSQL they go as one message and come back as one answer, one result set each: one round
    trip to the server instead of one per read, which under load is what a read costs most beyond
    the ORM (each wait hands the interpreter to another thread and back). Elsewhere (SQLite, where a
    read is a function call) they run one after the other. Either way each read is its own statement,
    so each sees what a read run alone would."""
    statements = [query._statement(values) for query, values in reads]
    aliases = {alias for alias, _compiled, _params in statements}
    if len(aliases) != 1:
        raise ImproperlyConfigured(f"reads run together on one database, not on {sorted(aliases)}")
    alias = statements[0][0]
    results = []
    with connections[alias].cursor() as cursor:
        if len(statements) > 1 and _sends_statements_together(cursor):
            cursor.execute(
                "; ".join(compiled.sql for _alias, compiled, _params in statements),
                [param for _alias, _compiled, params in statements for param in params],
            )
            for index in range(len(statements)):
                if index and not cursor.nextset():
                    raise RuntimeError(f"{len(statements)} statements sent, {index} results came back")
                results.append(cursor.fetchall())
        else:
            for _alias, compiled, params in statements:
                cursor.execute(compiled.sql, params)
                results.append(cursor.fetchall())
    return [
        query._instances(alias, compiled, rows)
        for (query, _values), (alias, compiled, _params), rows in zip(reads, statements, results, strict=True)
    ]
