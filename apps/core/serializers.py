"""Serializers shared by the services: request bodies whose unknown fields are an error, not silently
dropped, and output serializers kept once per class instead of built per response."""

import threading

from rest_framework import serializers


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


_outputs: dict[type[serializers.Serializer], serializers.Serializer] = {}
_outputs_lock = threading.Lock()


def output_of(serializer_class: type[serializers.Serializer], instance) -> dict:
    """What `serializer_class(instance).data` holds, from one serializer kept per class.

    A serializer builds its fields afresh each time it is made (a deep copy of every declared field,
    nested serializers included), which costs more than representing an order does. The fields of an
    output serializer keep no state between calls and need no context, so one set serves every
    request and thread. Only for serializers whose fields read nothing from `context`.
    """
    serializer = _outputs.get(serializer_class)
    if serializer is None:
        with _outputs_lock:
            serializer = _outputs.get(serializer_class)
            if serializer is None:
                serializer = serializer_class()
                serializer.fields  # noqa: B018 (bound once, here, rather than by two threads at once)
                _outputs[serializer_class] = serializer
    return serializer.to_representation(instance)
