"""WSGI entry point that gunicorn serves (`apps.wsgi:application`)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "apps.settings")

application = get_wsgi_application()
