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
