"""WSGI entry point that gunicorn serves (`apps.wsgi:application`).

Each worker checks, as it starts, that the service has what it needs (apps.core.checks): one that
lacks its signing key or client credentials fails to boot, and gunicorn stops, instead of serving
errors. Then it installs its tracer provider (apps.core.tracing): spans leave over OTLP when
OTEL_EXPORTER_OTLP_ENDPOINT is set.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.settings")

application = get_wsgi_application()

from apps.core import tracing  # noqa: E402 (needs the app registry ready)
from apps.core.checks import platform_checks_raise  # noqa: E402

platform_checks_raise()
tracing.configure("web")
