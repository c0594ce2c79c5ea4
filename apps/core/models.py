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


class RateLimitCounter(models.Model):
    """One rate limit's state for one key (apps.core.ratelimit), shared by every worker and pod.

    Keys are stored as digests: a counter needs to tell keys apart, not to know whose they are.
    """

    scope = models.CharField(max_length=64)  # which limit: "login:address", "login:account", ...
    key_digest = models.CharField(max_length=64)  # sha256 hex of the key (an address, an email, both)
    tokens = models.FloatField(default=0)  # token buckets: what is left to spend
    attempts = models.PositiveIntegerField(default=0)  # backoffs: attempts since the last reset
    updated_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key_digest"], name="rate_limit_scope_key_unique")]
        indexes = [models.Index(fields=["updated_at"], name="rate_limit_updated_at")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key_digest[:12]}"
