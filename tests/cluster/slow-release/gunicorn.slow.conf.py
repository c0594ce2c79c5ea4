"""The platform's gunicorn configuration, and 0.8 s of sleep before every API request."""

import runpy
import time

globals().update(
    {
        name: value
        for name, value in runpy.run_path("/app/platform/gunicorn.conf.py").items()
        if not name.startswith("__")
    }
)

UNSLOWED = ("/healthz", "/readyz", "/livez", "/metrics", "/version")


def pre_request(worker, req):
    if not req.path.startswith(UNSLOWED):
        time.sleep(0.8)
