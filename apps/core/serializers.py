"""Serializer base for request bodies: unknown fields are an error, not silently dropped."""

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
