"""Routes of the payments service under /api/payments/."""

from django.urls import path

from apps.payments import apis

urlpatterns = [
    path("api/payments/", apis.PaymentCreateApi.as_view(), name="payment-create"),
    path("api/payments/<uuid:payment_id>/", apis.PaymentDetailApi.as_view(), name="payment-detail"),
    path("api/payments/<uuid:payment_id>/refund/", apis.PaymentRefundApi.as_view(), name="payment-refund"),
]
