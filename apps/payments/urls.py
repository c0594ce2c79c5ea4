"""Routes of the payments service under /api/payments/."""

urlpatterns: list = []
