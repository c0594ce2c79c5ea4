"""Routes of the orders service under /api/orders/."""

urlpatterns: list = []
