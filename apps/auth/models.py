"""The auth service's data. API users live here; Django's own users are this service's admin staff."""

import uuid

from django.db import models
from django.db.models.functions import Lower, Now

from apps.core.constraints import OneQueryCheckConstraints


class User(OneQueryCheckConstraints, models.Model):
    """An end user of the platform's API. Other services know a user only by `id`."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(max_length=254, unique=True)  # stored lower-cased
    password = models.CharField(max_length=128)  # a Django password hash, never the password
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "API user"
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=models.Q(email=Lower("email")), name="user_email_lowercase")]

    def __str__(self) -> str:
        return self.email


class RefreshToken(models.Model):
    """One refresh token of a login's rotation chain (its family). Only a hash of the token is kept.

    Using a token marks it used and issues its successor in the same family; presenting a used or
    revoked token again is reuse, and revokes the whole family.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="refresh_tokens")
    family = models.UUIDField(db_index=True)
    token_hash = models.CharField(max_length=64, unique=True)  # sha256 hex of the opaque token
    created_at = models.DateTimeField(db_default=Now())
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_reason = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"refresh token {self.pk} of family {self.family}"


class SigningKey(models.Model):
    """A public key that has signed access tokens. Published in the JWKS until retired.

    The private key never touches the database: it comes from AUTH_SIGNING_KEY(_FILE).
    """

    kid = models.CharField(max_length=64, primary_key=True)  # RFC 7638 thumbprint of the key
    public_jwk = models.JSONField()
    created_at = models.DateTimeField(db_default=Now())
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.kid


class ServiceClient(models.Model):
    """An OAuth2 client (a service) allowed the client-credentials grant, with the scopes it may use."""

    client_id = models.SlugField(max_length=64, unique=True)
    secret_hash = models.CharField(max_length=128)
    scopes = models.CharField(max_length=512, blank=True, help_text="Space-separated scopes.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["client_id"]

    def __str__(self) -> str:
        return self.client_id


class LoginFailure(models.Model):
    """A failed password login, counted per email to throttle guessing across all workers."""

    email = models.CharField(max_length=254)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        indexes = [models.Index(fields=["email", "created_at"])]

    def __str__(self) -> str:
        return f"{self.email} at {self.created_at}"


class LoginAddress(models.Model):
    """A client address a user has logged in from: the login throttle does not slow the user down
    there when guessers elsewhere are after the account (apps.auth.services.user_login)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="login_addresses")
    address = models.GenericIPAddressField()
    last_login_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "address"], name="login_address_user_address_unique")]

    def __str__(self) -> str:
        return f"{self.user_id} from {self.address}"
