"""Serializers shared by the services: request bodies whose unknown fields are an error, not silently
dropped, and output serializers kept once per class instead of built per response."""

import threading
from collections.abc import Callable, Mapping
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.db.models.manager import BaseManager
from django.utils import timezone
from rest_framework import ISO_8601, fields, serializers
from rest_framework.fields import SkipField
from rest_framework.relations import PKOnlyObject
from rest_framework.settings import api_settings


class StrictInputSerializer(serializers.Serializer):
    """Rejects fields the endpoint does not know, so a typo (`emial`) fails loudly."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: DRF's own field would also take "5", 5.0 and true, which a typed API should refuse."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictUUIDField(serializers.UUIDField):
    """A UUID in its string form: DRF's own field also turns the JSON integer 7 into a UUID."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


# DRF's own representations that are a plain conversion of a value that is not None.
_CONVERSIONS = {fields.CharField.to_representation: str, fields.IntegerField.to_representation: int}


def _field_reader(field: serializers.Field) -> Callable[[object, object], object] | None:
    """How `field` represents a value that is not None, when that is DRF's own code for its class and
    can run without DRF's per-call machinery: `(value, tz) -> representation`, `tz` being the current
    time zone, looked up once per representation. None: the field's own `to_representation` it is."""
    method = type(field).to_representation
    conversion = _CONVERSIONS.get(method)
    if method is fields.UUIDField.to_representation and field.uuid_format == "hex_verbose":
        conversion = str
    if conversion is not None:
        return lambda value, tz: conversion(value)
    if method is fields.DateTimeField.to_representation:
        return _datetime_reader(field)
    if isinstance(field, serializers.ListSerializer):
        return _many_reader(field)
    if isinstance(field, serializers.Serializer):
        return _representation(field)
    return None


def _datetime_reader(field: fields.DateTimeField) -> Callable[[object, object], object] | None:
    if (
        type(field).enforce_timezone is not fields.DateTimeField.enforce_timezone
        or type(field).default_timezone is not fields.DateTimeField.default_timezone
        or hasattr(field, "timezone")
        or hasattr(field, "format")
    ):
        return None

    def datetime_representation(value, tz):
        # DRF's own, for the common case: an aware datetime in ISO 8601 with USE_TZ on; the rest (a
        # naive value, another format, an overflow) goes through the field.
        if tz is None or type(value) is not datetime or value.tzinfo is None or not _iso_8601():
            return field.to_representation(value)
        try:
            text = value.astimezone(tz).isoformat()
        except OverflowError:
            return field.to_representation(value)
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return datetime_representation


def _many_reader(field: serializers.ListSerializer) -> Callable[[object, object], object] | None:
    if type(field).to_representation is not serializers.ListSerializer.to_representation:
        return None
    child = _representation(field.child)
    if child is None:
        return None

    def many(value, tz):
        items = value.all() if isinstance(value, BaseManager) else value
        return [child(item, tz) for item in items]

    return many


def _iso_8601() -> bool:
    return api_settings.DATETIME_FORMAT is not None and api_settings.DATETIME_FORMAT.lower() == ISO_8601


def _generic(field: serializers.Field, instance, representation: dict) -> None:
    # Serializer.to_representation's own steps, for one field.
    try:
        attribute = field.get_attribute(instance)
    except SkipField:
        return
    check_for_none = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
    representation[field.field_name] = None if check_for_none is None else field.to_representation(attribute)


def _representation(serializer: serializers.Serializer) -> Callable[[object, object], dict] | None:
    """`serializer.to_representation` as one function of `(instance, tz)`, decided once: which attribute
    each field reads and how it represents it. DRF walks every field's machinery per call (a generator
    of readable fields, `get_attribute` with its error handling, `to_representation` looking up the
    format and the time zone again), which for an order and its lines costs more than the values do.

    The same result, value for value: a field is read directly only where its class uses DRF's own
    `get_attribute` on one plain attribute, and represented directly only where its class uses DRF's
    own `to_representation` (`_field_reader`); anything else, and anything unusual at run time (a
    missing attribute, a callable, a mapping), goes through the field as DRF would send it. None when
    the serializer's own `to_representation` is not DRF's."""
    if type(serializer).to_representation is not serializers.Serializer.to_representation:
        return None
    plan = []
    for field in serializer._readable_fields:
        direct = type(field).get_attribute is fields.Field.get_attribute and len(field.source_attrs) == 1
        reader = _field_reader(field) or (lambda value, tz, field=field: field.to_representation(value))
        plan.append((field, field.field_name, field.source_attrs[0] if direct else None, reader))

    def represent(instance, tz) -> dict:
        representation = {}
        if isinstance(instance, Mapping):
            for field, *_rest in plan:
                _generic(field, instance, representation)
            return representation
        for field, name, attribute, reader in plan:
            if attribute is None:
                _generic(field, instance, representation)
                continue
            try:
                value = getattr(instance, attribute)
            except (AttributeError, KeyError, ObjectDoesNotExist):
                _generic(field, instance, representation)  # a default, a null, a skip or DRF's error
                continue
            if callable(value):
                _generic(field, instance, representation)  # called, as DRF calls a method
            else:
                representation[name] = None if value is None else reader(value, tz)
        return representation

    return represent


_outputs: dict[type[serializers.Serializer], tuple[serializers.Serializer, Callable | None]] = {}
_outputs_lock = threading.Lock()


def output_of(serializer_class: type[serializers.Serializer], instance) -> dict:
    """What `serializer_class(instance).data` holds, from one serializer kept per class.

    A serializer builds its fields afresh each time it is made (a deep copy of every declared field,
    nested serializers included), which costs more than representing an order does. The fields of an
    output serializer keep no state between calls and need no context, so one set serves every
    request and thread, through its representation decided once (`_representation`). Only for
    serializers whose fields read nothing from `context`.
    """
    kept = _outputs.get(serializer_class)
    if kept is None:
        with _outputs_lock:
            kept = _outputs.get(serializer_class)
            if kept is None:
                serializer = serializer_class()
                serializer.fields  # noqa: B018 (bound once, here, rather than by two threads at once)
                kept = _outputs[serializer_class] = (serializer, _representation(serializer))
    serializer, represent = kept
    if represent is None:
        return serializer.to_representation(instance)
    return represent(instance, timezone.get_current_timezone() if settings.USE_TZ else None)
