"""Representations of payments and refunds: what the API answers and what idempotency records store.

They live apart from the views because a stored response is rendered by the service, inside the
transaction that did the work, so that the replayed answer is exactly the first one.
"""

from rest_framework import serializers


class RefundOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    payment_id = serializers.UUIDField()
    amount = serializers.IntegerField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class PaymentOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    order_id = serializers.UUIDField()
    user_id = serializers.UUIDField()
    amount = serializers.IntegerField()
    currency = serializers.CharField()
    payment_method = serializers.CharField()
    status = serializers.CharField()
    decline_code = serializers.CharField()
    refunded_amount = serializers.IntegerField()
    created_at = serializers.DateTimeField()


class RefundWithPaymentOutputSerializer(RefundOutputSerializer):
    currency = serializers.CharField(source="payment.currency")
    payment = PaymentOutputSerializer()
