from django.urls import path

from apps.auth import apis

urlpatterns = [
    path("api/auth/register/", apis.RegisterApi.as_view(), name="auth-register"),
    path("api/auth/token/", apis.TokenApi.as_view(), name="auth-token"),
    path("api/auth/token/refresh/", apis.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("api/auth/logout/", apis.LogoutApi.as_view(), name="auth-logout"),
    path("api/auth/me/", apis.MeApi.as_view(), name="auth-me"),
    path(".well-known/jwks.json", apis.JwksApi.as_view(), name="jwks"),
]
