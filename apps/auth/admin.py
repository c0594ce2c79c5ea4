"""Admin for support engineers: find a user, see and revoke their logins, manage service clients.

Secrets are never shown: passwords and client secrets are hashes, refresh tokens are hashes.
"""

from django.contrib import admin
from django.utils import timezone

from apps.auth.models import LoginFailure, RefreshToken, ServiceClient, SigningKey, User


@admin.register(User)
class UserAdmin(admin.ModelAdmin):
    list_display = ["email", "id", "is_active", "created_at", "last_login_at"]
    list_filter = ["is_active"]
    search_fields = ["email", "=id"]
    readonly_fields = ["id", "password", "created_at", "last_login_at"]


@admin.action(description="Revoke the selected refresh tokens' families")
def revoke_families(modeladmin, request, queryset):
    families = set(queryset.values_list("family", flat=True))
    RefreshToken.objects.filter(family__in=families, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_reason="admin"
    )


@admin.register(RefreshToken)
class RefreshTokenAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "family", "created_at", "expires_at", "used_at", "revoked_at", "revoked_reason"]
    list_filter = ["revoked_reason"]
    search_fields = ["user__email", "=family"]
    list_select_related = ["user"]
    readonly_fields = [field.name for field in RefreshToken._meta.fields]
    actions = [revoke_families]

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(ServiceClient)
class ServiceClientAdmin(admin.ModelAdmin):
    list_display = ["client_id", "scopes", "is_active", "created_at"]
    list_filter = ["is_active"]
    readonly_fields = ["secret_hash", "created_at"]


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ["kid", "created_at", "retired_at"]
    readonly_fields = ["kid", "public_jwk", "created_at"]


@admin.register(LoginFailure)
class LoginFailureAdmin(admin.ModelAdmin):
    list_display = ["email", "remote_addr", "created_at"]
    search_fields = ["email"]
