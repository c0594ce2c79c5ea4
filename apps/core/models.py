"""The kernel's own tables, present in every service's database."""

from django.db import models


class KeySetSnapshot(models.Model):
    """The last good JWKS document fetched from auth (apps.core.tokens), one row per JWKS URL.

    A worker or pod that starts while auth is down verifies tokens with it instead of answering 503.
    """

    source = models.CharField(max_length=500, primary_key=True)  # the JWKS URL
    document = models.JSONField()
    fetched_at = models.DateTimeField()

    class Meta:
        verbose_name = "signing key set snapshot"

    def __str__(self) -> str:
        return f"{self.source} at {self.fetched_at}"
