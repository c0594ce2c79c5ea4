"""What a view requires of its caller, declared rather than checked by hand in each view."""

from rest_framework.permissions import BasePermission


class IsUser(BasePermission):
    """An end user's token (not a service client's)."""

    message = "This endpoint is for users; service tokens are not accepted."

    def has_permission(self, request, view) -> bool:
        principal = request.user
        return bool(principal and principal.is_authenticated and principal.kind == "user")


class HasServiceScope(BasePermission):
    """A service client's token carrying every scope in the view's `required_scopes`."""

    message = "This endpoint needs a service token with the required scope."

    def has_permission(self, request, view) -> bool:
        principal = request.user
        if not (principal and principal.is_authenticated and principal.is_service):
            return False
        return set(getattr(view, "required_scopes", ())) <= principal.scopes
