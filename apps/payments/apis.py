"""HTTP API of the payments service: charges and refunds for service clients, reads for their owners.

Only service clients charge and refund (scopes payments:charge, payments:refund): the orders service
is the authority on what an order costs. A user may read their own payments.
"""

import re

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import idempotency
from apps.core.api import PROBLEM
from apps.core.money import AmountField, CurrencyField
from apps.core.permissions import HasServiceScope, IsUser
from apps.core.serializers import StrictInputSerializer, StrictUUIDField, output_of
from apps.payments import selectors, services
from apps.payments.serializers import PaymentOutputSerializer, RefundWithPaymentOutputSerializer

PAYMENT_METHOD = re.compile(r"^pm_[a-z0-9_]{1,60}$")


def _answer(request, answer: services.Answer) -> Response:
    headers = idempotency.replayed_headers(request, replayed=answer.replayed)
    return Response(answer.body, status=answer.status, headers=headers)


class PaymentCreateApi(APIView):
    permission_classes = [HasServiceScope]
    required_scopes = ["payments:charge"]

    class InputSerializer(StrictInputSerializer):
        order_id = StrictUUIDField()
        user_id = StrictUUIDField(help_text="The customer the order belongs to.")
        amount = AmountField(help_text="The order's total in minor units.")
        currency = CurrencyField()
        payment_method = serializers.RegexField(PAYMENT_METHOD, help_text="e.g. pm_card_visa, pm_card_declined")
        receipt_email = serializers.EmailField(max_length=254, required=False, default="", allow_blank=True)

        class Meta:
            ref_name = "PaymentCreateInput"

    @extend_schema(
        request=InputSerializer,
        parameters=[idempotency.PARAMETER, idempotency.REPLAYED_PARAMETER],
        responses={
            201: PaymentOutputSerializer,
            400: PROBLEM,
            401: PROBLEM,
            403: PROBLEM,
            409: OpenApiResponse(description="problem+json: the key is in flight, or the order is already paid"),
            422: OpenApiResponse(description="problem+json: key reused with another body, or amount mismatch"),
        },
        summary="Charge an order (idempotent per Idempotency-Key; replays carry Idempotent-Replayed: true)",
    )
    def post(self, request):
        key = idempotency.idempotency_key_from(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        answer = services.payment_charge(
            client_id=request.user.subject, idempotency_key=key, path=request.path, **data.validated_data
        )
        return _answer(request, answer)


class PaymentDetailApi(APIView):
    permission_classes = [IsUser | HasServiceScope]
    required_scopes = ["payments:charge"]

    @extend_schema(
        responses={200: PaymentOutputSerializer, 401: PROBLEM, 403: PROBLEM, 404: PROBLEM},
        summary="A payment (users see only their own)",
    )
    def get(self, request, payment_id):
        user_id = None if request.user.is_service else request.user.subject
        payment = selectors.payment_get(payment_id=payment_id, user_id=user_id)
        return Response(output_of(PaymentOutputSerializer, payment))


class PaymentRefundApi(APIView):
    permission_classes = [HasServiceScope]
    required_scopes = ["payments:refund"]

    class InputSerializer(StrictInputSerializer):
        amount = AmountField(required=False, help_text="Minor units; default: everything still captured.")
        reason = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)

        class Meta:
            ref_name = "PaymentRefundInput"

    @extend_schema(
        request=InputSerializer,
        parameters=[idempotency.PARAMETER, idempotency.REPLAYED_PARAMETER],
        responses={
            201: RefundWithPaymentOutputSerializer,
            400: PROBLEM,
            401: PROBLEM,
            403: PROBLEM,
            404: PROBLEM,
            409: OpenApiResponse(description="problem+json: key in flight, nothing captured, or fully refunded"),
            422: OpenApiResponse(description="problem+json: key reused with another body, or more than captured"),
        },
        summary="Refund a payment, never more than captured (idempotent per Idempotency-Key)",
    )
    def post(self, request, payment_id):
        key = idempotency.idempotency_key_from(request)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        answer = services.payment_refund(
            client_id=request.user.subject,
            idempotency_key=key,
            path=request.path,
            payment_id=payment_id,
            amount=data.validated_data.get("amount"),
            reason=data.validated_data["reason"],
        )
        return _answer(request, answer)
