"""URL root of a service process: the kernel's endpoints plus the routes of the service(s) it serves."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

# /healthz, /readyz, /version and /metrics are answered by apps.core.middleware.ProbeMiddleware.
urlpatterns = [
    path(settings.ADMIN_PATH, admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    *(path("", include(service.urls)) for service in settings.SERVED),
]

handler400 = "apps.core.problems.bad_request"
handler403 = "apps.core.problems.permission_denied"
handler404 = "apps.core.problems.page_not_found"
handler500 = "apps.core.problems.server_error"
