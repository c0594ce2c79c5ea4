"""Admin for support engineers: find a user, see their logins and where they log in from, the
service clients and the signing keys, and act through the auth service's own operations.

Nothing is edited in place (apps.core.admin.ReadOnlyAdmin): the actions call the services, so an
admin does what the API and the commands do, with their checks (the active signing key cannot be
retired). Secrets are never shown: passwords, client secrets and refresh tokens are hashes.
"""

from django.contrib import admin, messages

from apps.auth import keys, services
from apps.auth.models import LoginAddress, LoginFailure, RefreshToken, ServiceClient, SigningKey, User
from apps.core.admin import ReadOnlyAdmin


@admin.register(User)
class UserAdmin(ReadOnlyAdmin):
    list_display = ["email", "id", "is_active", "created_at", "last_login_at"]
    list_filter = ["is_active"]
    search_fields = ["email", "=id"]
    exclude = ["password"]
    actions = ["deactivate"]

    @admin.action(description="Deactivate the selected users and revoke their logins")
    def deactivate(self, request, queryset):
        for user_id in queryset.values_list("pk", flat=True):
            services.user_deactivate(user_id=user_id)
        self.message_user(request, f"Deactivated {queryset.count()} user(s); their refresh tokens are revoked.")


@admin.register(RefreshToken)
class RefreshTokenAdmin(ReadOnlyAdmin):
    list_display = ["id", "user", "family", "created_at", "expires_at", "used_at", "revoked_at", "revoked_reason"]
    list_filter = ["revoked_reason"]
    search_fields = ["user__email", "=family"]
    list_select_related = ["user"]
    exclude = ["token_hash"]
    actions = ["revoke_families"]

    @admin.action(description="Revoke the selected refresh tokens' logins (families)")
    def revoke_families(self, request, queryset):
        families = list(set(queryset.values_list("family", flat=True)))
        revoked = services.refresh_token_families_revoke(families=families, reason="admin")
        self.message_user(request, f"Revoked {revoked} refresh token(s) of {len(families)} login(s).")


@admin.register(LoginAddress)
class LoginAddressAdmin(ReadOnlyAdmin):
    list_display = ["user", "address", "last_login_at"]
    search_fields = ["user__email", "=address"]
    list_select_related = ["user"]


@admin.register(ServiceClient)
class ServiceClientAdmin(ReadOnlyAdmin):
    """Clients are provisioned by `manage.py service_client_ensure` from the deployment's secrets."""

    list_display = ["client_id", "scopes", "is_active", "created_at"]
    list_filter = ["is_active"]
    exclude = ["secret_hash"]
    actions = ["deactivate"]

    @admin.action(description="Deactivate the selected clients (no new tokens)")
    def deactivate(self, request, queryset):
        for client_id in queryset.values_list("client_id", flat=True):
            services.service_client_deactivate(client_id=client_id)
        self.message_user(request, f"Deactivated {queryset.count()} client(s).")


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ["kid", "created_at", "retired_at", "signs_new_tokens"]

    @admin.display(boolean=True, description="signs new tokens")
    def signs_new_tokens(self, key: SigningKey) -> bool:
        return key.kid == keys.active_key().kid

    actions = ["retire"]

    @admin.action(description="Retire the selected keys (never the one that signs new tokens)")
    def retire(self, request, queryset):
        for kid in queryset.values_list("kid", flat=True):
            try:
                keys.signing_key_retire(kid=kid)
            except (keys.SigningKeyActive, keys.SigningKeyUnknown) as refused:
                self.message_user(request, f"{kid}: {refused}", level=messages.ERROR)
            else:
                self.message_user(request, f"{kid}: retired; no longer published")


@admin.register(LoginFailure)
class LoginFailureAdmin(ReadOnlyAdmin):
    list_display = ["email", "remote_addr", "created_at"]
    search_fields = ["email", "=remote_addr"]
