"""WSGI entry point of the bare Django project: `gunicorn -c platform/gunicorn.conf.py perf.bare.wsgi:application`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "perf.bare.settings")

application = get_wsgi_application()
