"""Settings of the bare Django project: what `django-admin startproject` would keep for one JSON view.

No apps, no middleware, no database, DEBUG off: what is left is Django's request handling itself,
served by the platform's own gunicorn configuration. perf/ratios.py measures the services against it.
"""

import os

DEBUG = False
SECRET_KEY = os.environ.get("SECRET_KEY", "bare-benchmark-view-has-no-secret-to-keep")
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "perf.bare.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
LOGGING_CONFIG = None  # gunicorn's logging configuration (JSON lines) is the only one
