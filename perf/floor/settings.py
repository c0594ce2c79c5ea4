"""Settings of the benchmark's floor: a service's own settings, with one more route.

perf/ratios.py serves this with orders' environment (SERVICE=orders, its database, its keys) under
the platform's gunicorn configuration, so every request goes through exactly what an order read goes
through before the view reads anything: the middleware (trace span, request id, access log line,
metrics, security headers), URL resolution past the services' routes, and the bearer token checked
as the order read's is. Only the route's view differs (perf/floor/urls.py).
"""

from apps.settings import *  # noqa: F403 (a service's settings, unchanged but for the URLconf)

ROOT_URLCONF = "perf.floor.urls"
