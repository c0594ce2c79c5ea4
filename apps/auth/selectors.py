"""Reads of the auth service."""

from django.core.exceptions import ValidationError
from django.http import Http404

from apps.auth.models import User


def user_get(*, user_id: str) -> User:
    """The active user with this id; 404 when it does not exist or was deactivated."""
    try:
        user = User.objects.filter(pk=user_id, is_active=True).first()
    except ValidationError:  # not a UUID
        user = None
    if user is None:
        raise Http404("No such user.")
    return user
