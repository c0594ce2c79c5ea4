"""Routes of the orders service under /api/orders/."""

from django.urls import path

from apps.orders import apis

urlpatterns = [
    path("api/orders/", apis.OrderListCreateApi.as_view(), name="order-list-create"),
    path("api/orders/<uuid:order_id>/", apis.OrderDetailApi.as_view(), name="order-detail"),
    path("api/orders/<uuid:order_id>/cancel/", apis.OrderCancelApi.as_view(), name="order-cancel"),
]
