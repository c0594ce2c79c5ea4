"""HTTP API of the orders service: a user places, lists, reads and cancels their own orders."""

import re

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import idempotency
from apps.core.api import PROBLEM, Pagination
from apps.core.direct_read import DirectReadApi
from apps.core.money import MAX_AMOUNT, AmountField, CurrencyField
from apps.core.permissions import IsUser
from apps.core.serializers import StrictInputSerializer, StrictIntegerField, output_of
from apps.orders import selectors, services

SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
PAYMENT_METHOD = re.compile(r"^pm_[a-z0-9_]{1,60}$")


class OrderLineOutputSerializer(serializers.Serializer):
    sku = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.IntegerField()
    line_total = serializers.IntegerField()


class OrderStatusChangeOutputSerializer(serializers.Serializer):
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class OrderOutputSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    status = serializers.CharField()
    total = serializers.IntegerField()
    currency = serializers.CharField()
    payment_method = serializers.CharField()
    lines = OrderLineOutputSerializer(many=True, source=selectors.LINES)
    payment_id = serializers.UUIDField(allow_null=True)
    decline_code = serializers.CharField()
    payment_error = serializers.CharField(help_text="Why payments refused the charge (status payment_refused).")
    refund_id = serializers.UUIDField(allow_null=True)
    refunded_amount = serializers.IntegerField()
    status_history = OrderStatusChangeOutputSerializer(many=True, source=selectors.HISTORY)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


def _order_body(order) -> dict:
    # Lines and history come from the database, so a new or replayed order reads as a fetched one.
    fresh = selectors.order_get(customer_id=str(order.customer_id), order_id=order.id)
    return output_of(OrderOutputSerializer, fresh)


class OrderListCreateApi(APIView):
    """GET lists the caller's orders (newest first); POST places one."""

    pagination_class = Pagination  # also what the OpenAPI document describes the list with
    permission_classes = [IsUser]

    class InputSerializer(StrictInputSerializer):
        class LineSerializer(StrictInputSerializer):
            sku = serializers.RegexField(SKU, help_text="1-64 letters, digits, dot, dash or underscore")
            quantity = StrictIntegerField(min_value=1, max_value=10_000)
            unit_price = AmountField(min_value=0, help_text="Minor units of the order's currency.")

            class Meta:
                ref_name = "OrderLineInput"

        currency = CurrencyField()
        lines = LineSerializer(many=True, allow_empty=False, max_length=100)
        payment_method = serializers.RegexField(PAYMENT_METHOD, help_text="e.g. pm_card_visa, pm_card_declined")

        class Meta:
            ref_name = "OrderCreateInput"

        def validate(self, attrs):
            total = sum(line["quantity"] * line["unit_price"] for line in attrs["lines"])
            if total < 1:
                raise serializers.ValidationError({"lines": ["The order's total must be at least 1 minor unit."]})
            if total > MAX_AMOUNT:
                raise serializers.ValidationError({"lines": [f"The order's total may not exceed {MAX_AMOUNT}."]})
            return attrs

    @extend_schema(
        responses={200: OrderOutputSerializer(many=True), 401: PROBLEM, 403: PROBLEM, 404: PROBLEM},
        summary="The caller's orders, newest first (paginated: ?page=, ?page_size= up to 100)",
    )
    def get(self, request):
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.order_list(customer_id=request.user.subject), request, view=self)
        return paginator.get_paginated_response([output_of(OrderOutputSerializer, order) for order in page])

    @extend_schema(
        request=InputSerializer,
        parameters=[
            idempotency.PARAMETER,
            idempotency.REPLAYED_PARAMETER,
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[503],
                description="Seconds to wait before retrying with the same Idempotency-Key",
            ),
        ],
        responses={
            201: OrderOutputSerializer,
            400: PROBLEM,
            401: PROBLEM,
            403: PROBLEM,
            409: OpenApiResponse(description="problem+json: another request with this key is settling the order"),
            422: OpenApiResponse(description="problem+json: the key was used for a different order"),
            502: OpenApiResponse(
                description="problem+json with `order_id`: payments' answer was not this order's payment; "
                "the order stays pending; retry with the same Idempotency-Key"
            ),
            503: OpenApiResponse(
                description="problem+json with `order_id`: payments gave no decision, the order stays pending; "
                "retry with the same Idempotency-Key"
            ),
        },
        summary="Place an order and charge it; 201 whatever the payment outcome (see `status`: paid, "
        "payment_failed, payment_refused)",
    )
    def post(self, request):
        key = idempotency.idempotency_key_from(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        placement = services.order_create(
            customer_id=request.user.subject,
            customer_email=request.user.email,  # from the verified token: no call to auth
            idempotency_key=key,
            **data.validated_data,
        )
        headers = idempotency.replayed_headers(request, replayed=placement.replayed)
        return Response(_order_body(placement.order), status=status.HTTP_201_CREATED, headers=headers)


class OrderDetailApi(DirectReadApi):
    """The hottest read: answered without DRF's dispatch when the caller is a user (DirectReadApi)."""

    @staticmethod
    def read(principal, order_id) -> dict:
        order = selectors.order_get(customer_id=principal.subject, order_id=order_id)
        return output_of(OrderOutputSerializer, order)

    @extend_schema(
        responses={200: OrderOutputSerializer, 401: PROBLEM, 403: PROBLEM, 404: PROBLEM},
        summary="One of the caller's orders, with its status history",
    )
    def get(self, request, order_id):
        return super().get(request, order_id=order_id)


class OrderCancelApi(APIView):
    permission_classes = [IsUser]

    class InputSerializer(StrictInputSerializer):
        class Meta:
            ref_name = "OrderCancelInput"

    @extend_schema(
        request=None,
        parameters=[
            OpenApiParameter(
                "Retry-After",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[202],
                description="Seconds to wait before reading the order (or cancelling again) to see it cancelled",
            ),
        ],
        responses={
            200: OrderOutputSerializer,
            202: OpenApiResponse(
                OrderOutputSerializer,
                description="status `cancelling`: the cancellation is recorded and the refund asked for, but "
                "payments has not confirmed it yet; it completes without the client (cancelling again is safe)",
            ),
            401: PROBLEM,
            403: PROBLEM,
            404: PROBLEM,
            409: OpenApiResponse(description="problem+json: the payment is not settled yet"),
        },
        summary="Cancel an order; a paid order is refunded in full. Cancelling again changes nothing.",
    )
    def post(self, request, order_id):
        self.InputSerializer(data=request.data or {}).is_valid(raise_exception=True)
        order = selectors.order_get(customer_id=request.user.subject, order_id=order_id)
        order = services.order_cancel(order=order)
        if order.status == order.Status.CANCELLING:
            return Response(
                _order_body(order),
                status=status.HTTP_202_ACCEPTED,
                headers={"Retry-After": str(services.RETRY_AFTER_SECONDS)},
            )
        return Response(_order_body(order))
