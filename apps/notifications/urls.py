"""Routes of the notifications service under /api/notifications/."""

urlpatterns: list = []
