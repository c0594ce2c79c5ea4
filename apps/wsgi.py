"""WSGI entry point that gunicorn serves (`apps.wsgi:application`).

gunicorn loads it once, in the arbiter, before forking the workers (platform/gunicorn.conf.py,
`preload_app`). Loading checks that the service has what it needs (apps.core.checks): one that lacks
its signing key or client credentials fails to boot, and gunicorn stops, instead of serving errors.
Then it does the work every worker's first requests would repeat (apps.core.warmup). Each worker
installs its own tracer provider once forked (apps.core.tracing, gunicorn's `post_worker_init`):
spans leave over OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and name the process that made them.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.settings")

application = get_wsgi_application()

from apps.core import warmup  # noqa: E402 (needs the app registry ready)
from apps.core.checks import platform_checks_raise  # noqa: E402

platform_checks_raise()
warmup.prepare()
