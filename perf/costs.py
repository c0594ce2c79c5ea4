"""In-process cost of one request to a hot endpoint: where a worker's CPU goes, without k6 or sockets.

    .venv/bin/python perf/costs.py order_detail                 # ms of CPU per request, SQLite
    .venv/bin/python perf/costs.py order_create --cprofile 30   # the 30 most expensive functions
    .venv/bin/python perf/costs.py order_detail --instructions     # instructions per request (valgrind)
    .venv/bin/python perf/costs.py empty_drf                    # the floor: an empty token-verified DRF view
    .venv/bin/python perf/costs.py order_detail --database-url postgres://postgres@127.0.0.1:5432/perfwork
    .venv/bin/python perf/costs.py empty_drf --middleware         # what each middleware adds to a request

`empty_drf` and `empty_django` are the floor under every endpoint: a DRF view that verifies the
caller's token and answers a small JSON body, and a plain Django view answering the same body, both
added to the URLconf by this tool and reached through the whole middleware. What an endpoint costs
above `empty_drf` is its own work; what `empty_django` costs above perf/bare's view (no middleware)
is the middleware's.

The process serves every service (SERVICE=all) with the production settings (DEBUG off, the
middleware, prometheus_client in multiprocess mode, JSON logs, tracing) and calls the WSGI
application as gunicorn's worker does. Calls between services (orders charging through payments,
the service token from auth) go through the same WSGI application in this process instead of a
socket, so `order_create` counts orders' and payments' work together. Log lines are made as in
production and written to /dev/null (a pod's stdout is a pipe, not a terminal); the result goes to
stderr.

`--middleware` measures the endpoint through the whole middleware chain, then with each middleware of
settings.MIDDLEWARE left out in turn, then with none: what each one adds to a request where it runs,
among everything else a request does. Timed alone, in a loop of its own, a part can cost half what it
costs in a request: the access log line's call took 19 µs in a loop and 38.6 µs timed in place (most
likely the processor's caches, which a loop keeps warm for it; this machine exposes no counters to
tell). The variants take turns, MIDDLEWARE_ROUNDS rounds of `--requests` each, and each one's best
round is reported, so that a machine busy for a moment does not land on one variant alone. A variant the endpoint cannot
be answered without (ProbeMiddleware, for a probe) is reported as such.

`--instructions` runs this script twice under valgrind's callgrind, with two numbers of requests:
the difference of their instruction counts, divided by the difference of requests, is what one
request costs without start-up. Instructions are what a busy, noisy machine cannot distort, where
milliseconds are. With `--database-url` both runs share that database, so a run without valgrind
migrates it first: otherwise the first run on an empty database counts every migration, and the
difference comes out too low, below zero for a cheap request.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

ENDPOINTS = ("healthz", "order_detail", "order_list", "order_create", "payment_create", "empty_drf", "empty_django")
EMPTY_DRF, EMPTY_DJANGO = "/perf/empty-drf/", "/perf/empty-django/"
_SIGNING_KEY_VARIABLE = "PERF_COSTS_SIGNING_KEY"


def environment(workdir: Path, database_url: str | None) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "apps.settings",
            "SERVICE": "all",
            "DEBUG": "false",
            "SECRET_KEY": uuid.uuid4().hex * 2,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATA_DIR": str(workdir),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
            "SERVICE_CLIENT_ID": "orders",
            "SERVICE_CLIENT_SECRET": uuid.uuid4().hex * 2,
            # The key `--instructions` made for both of its runs: an RSA key's generation is a
            # search for primes whose cost varies from run to run by more than a request costs.
            "AUTH_SIGNING_KEY": os.environ.get(_SIGNING_KEY_VARIABLE) or signing_key_pem(),
            "LOG_LEVEL": "INFO",
        }
    )
    (workdir / "metrics").mkdir()
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:  # the SQLite file in the temporary folder, whatever DATABASE_URL the shell has
        os.environ.pop("DATABASE_URL", None)


def signing_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


class WsgiAdapter:
    """A requests transport that hands each request to a WSGI application in this process."""

    def __init__(self, application):
        import requests  # noqa: PLC0415

        self.application = application
        self.requests = requests

    def send(self, request, **_kwargs):
        url = urlsplit(request.url)
        body = request.body or b""
        body = body.encode() if isinstance(body, str) else body
        environ = wsgi_environ(
            request.method, url.path, query=url.query, body=body, headers=dict(request.headers), port=url.port or 80
        )
        status, headers, content = wsgi_call(self.application, environ)
        response = self.requests.Response()
        response.status_code = status
        response.headers = self.requests.structures.CaseInsensitiveDict(headers)
        response._content = content
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def close(self):
        pass


def wsgi_environ(method: str, path: str, *, query: str = "", body: bytes = b"", headers: dict, port: int = 8000):
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    environ["HTTP_HOST"] = f"127.0.0.1:{port}"
    return environ


def wsgi_call(application, environ) -> tuple[int, list[tuple[str, str]], bytes]:
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = int(status.split()[0]), headers

    result = application(environ, start_response)
    try:
        content = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return started["status"], started["headers"], content


def empty_views_add() -> None:
    """Route EMPTY_DRF and EMPTY_DJANGO in the root URLconf, ahead of the services' routes."""
    from django.http import JsonResponse  # noqa: PLC0415
    from django.urls import clear_url_caches, path  # noqa: PLC0415
    from rest_framework.response import Response  # noqa: PLC0415
    from rest_framework.views import APIView  # noqa: PLC0415

    import apps.urls  # noqa: PLC0415
    from apps.core.permissions import IsUser  # noqa: PLC0415

    class EmptyApi(APIView):
        permission_classes = [IsUser]

        def get(self, request):
            return Response({"status": "ok", "service": "empty"})

    def empty(request):
        return JsonResponse({"status": "ok", "service": "empty"})

    apps.urls.urlpatterns[:0] = [path(EMPTY_DRF[1:], EmptyApi.as_view()), path(EMPTY_DJANGO[1:], empty)]
    clear_url_caches()


class Endpoints:
    """The requests to measure, with what they need made beforehand (a user, a token, an order)."""

    def __init__(self, application):
        self.application = application
        self.calls = 0
        self.token = self._login()
        self.order_id = self._post_order("profile-setup")["id"]
        bearer = {"Authorization": f"Bearer {self.token}"}
        self.user_id = self._json("GET", "/api/auth/me/", None, headers=bearer, expect=200, port=8001)["id"]

    def _request(self, method: str, path: str, *, body: bytes = b"", headers: dict | None = None, port: int = 8002):
        status, _headers, content = wsgi_call(
            self.application, wsgi_environ(method, path, body=body, headers=headers or {}, port=port)
        )
        return status, content

    def _json(self, method: str, path: str, body: dict | None, *, headers: dict | None = None, expect: int, port: int):
        """The answer's JSON, sending `body` as JSON (None: no body)."""
        import json  # noqa: PLC0415

        if body is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        status, content = self._request(
            method, path, body=b"" if body is None else json.dumps(body).encode(), headers=headers, port=port
        )
        if status != expect:
            raise RuntimeError(f"{method} {path}: {status} {content[:500]!r}")
        return json.loads(content)

    def _login(self) -> str:
        credentials = {"email": f"profile-{uuid.uuid4().hex[:8]}@example.com", "password": "correct horse battery"}
        self._json("POST", "/api/auth/register/", credentials, expect=201, port=8001)
        return self._json("POST", "/api/auth/token/", credentials, expect=200, port=8001)["access_token"]

    def _post_order(self, key: str) -> dict:
        body = {
            "currency": "EUR",
            "lines": [
                {"sku": "BOOK-42", "quantity": 2, "unit_price": 1250},
                {"sku": "PEN-1", "quantity": 1, "unit_price": 300},
            ],
            "payment_method": "pm_card_visa",
        }
        headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key}
        return self._json("POST", "/api/orders/", body, headers=headers, expect=201, port=8002)

    def _charge(self) -> dict:
        """payments' part of a placement alone: a charge of a new order, sent as orders sends it (its
        service token, a key per order)."""
        from apps.core import service_calls  # noqa: PLC0415

        order_id = uuid.uuid4()
        body = {
            "order_id": str(order_id),
            "user_id": str(self.user_id),
            "amount": 2800,
            "currency": "EUR",
            "payment_method": "pm_card_visa",
            "receipt_email": "profile@example.com",
        }
        headers = {
            "Authorization": f"Bearer {service_calls.service_token.get()}",
            "Idempotency-Key": f"order-{order_id}-charge",
        }
        return self._json("POST", "/api/payments/", body, headers=headers, expect=201, port=8003)

    def run(self, endpoint: str) -> None:
        self.calls += 1
        bearer = {"Authorization": f"Bearer {self.token}"}
        if endpoint == "healthz":
            status, _ = self._request("GET", "/healthz")
        elif endpoint == "order_detail":
            status, _ = self._request("GET", f"/api/orders/{self.order_id}/", headers=bearer)
        elif endpoint == "empty_drf":
            status, _ = self._request("GET", EMPTY_DRF, headers=bearer)
        elif endpoint == "empty_django":
            status, _ = self._request("GET", EMPTY_DJANGO)
        elif endpoint == "order_list":
            status, _ = self._request("GET", "/api/orders/", headers=bearer)
        elif endpoint == "order_create":
            self._post_order(f"profile-{uuid.uuid4().hex}")
            return
        elif endpoint == "payment_create":
            self._charge()
            return
        else:
            raise ValueError(endpoint)
        if status != 200:
            raise RuntimeError(f"{endpoint}: {status}")


MIDDLEWARE_ROUNDS = 5


def middleware_costs(endpoints: Endpoints, endpoint: str, requests: int) -> None:
    """The endpoint's CPU per request through the whole chain, without each middleware, and without any."""
    from django.conf import settings  # noqa: PLC0415
    from django.core.handlers.wsgi import WSGIHandler  # noqa: PLC0415
    from django.test.utils import override_settings  # noqa: PLC0415

    chain = list(settings.MIDDLEWARE)
    variants = {"the whole chain": chain}
    variants.update({f"without {path}": [kept for kept in chain if kept != path] for path in chain})
    variants["without any middleware"] = []
    handlers = {}
    for name, middleware in variants.items():
        with override_settings(MIDDLEWARE=middleware):
            handlers[name] = WSGIHandler()  # loads the chain the settings name now
    best: dict[str, float] = {}
    failed: dict[str, str] = {}
    whole = endpoints.application
    try:
        for _ in range(MIDDLEWARE_ROUNDS):
            for name, handler in handlers.items():
                if name in failed:
                    continue
                endpoints.application = handler
                try:
                    endpoints.run(endpoint)  # one unmeasured request through this chain first
                except RuntimeError as error:
                    failed[name] = str(error)
                    continue
                cpu = time.process_time()
                for _ in range(requests):
                    endpoints.run(endpoint)
                per_request = (time.process_time() - cpu) / requests * 1e6
                best[name] = min(best.get(name, per_request), per_request)
    finally:
        endpoints.application = whole
    full = best["the whole chain"]
    width = max(map(len, handlers))
    lines = [
        f"{endpoint}: µs of CPU per request, best of {MIDDLEWARE_ROUNDS} rounds of {requests}, "
        "the variants taking turns",
        f"{'':{width}}  {'µs':>8}  {'adds':>8}",
    ]
    for name in handlers:
        if name in failed:
            lines.append(f"{name:{width}}  not answered without it: {failed[name]}")
        else:
            adds = "" if name == "the whole chain" else f"{full - best[name]:8.1f}"
            lines.append(f"{name:{width}}  {best[name]:8.1f}  {adds}")
    sys.stderr.write("\n".join(lines) + "\n")


def instructions(arguments: argparse.Namespace) -> int:
    """Instructions per request: two runs under callgrind that differ only in their number of requests."""
    import re  # noqa: PLC0415
    import subprocess  # noqa: PLC0415

    counts = {}
    few, many = arguments.warmup, arguments.warmup + arguments.requests
    # One signing key and one string hash seed for both runs, so that they differ only in requests.
    child_environment = {**os.environ, _SIGNING_KEY_VARIABLE: signing_key_pem(), "PYTHONHASHSEED": "0"}

    def script(requests: int, warmup: int) -> list[str]:
        command = [sys.executable, __file__, arguments.endpoint, "--requests", str(requests), "--warmup", str(warmup)]
        return command + (["--database-url", arguments.database_url] if arguments.database_url else [])

    if arguments.database_url:
        # Both runs share this database: the first to find it empty would count its migrations too.
        subprocess.run(script(1, 0), check=True, capture_output=True, env=child_environment)  # noqa: S603
    with tempfile.TemporaryDirectory(prefix="callgrind-") as folder:
        for requests in (few, many):
            out = Path(folder) / f"callgrind-{requests}.out"
            command = [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                *script(requests, arguments.warmup),
            ]
            subprocess.run(command, check=True, capture_output=True, env=child_environment)  # noqa: S603
            counts[requests] = int(re.search(r"^summary: (\d+)$", out.read_text(), re.MULTILINE)[1])
    per_request = (counts[many] - counts[few]) / (many - few)
    sys.stdout.write(f"{arguments.endpoint}: {per_request / 1e6:.2f} million instructions per request\n")
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("endpoint", choices=ENDPOINTS)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--cprofile", type=int, metavar="N", help="print the N functions with the most own time")
    parser.add_argument("--database-url", help="a PostgreSQL database (default: a SQLite file in a temporary folder)")
    parser.add_argument("--queries", action="store_true", help="print the SQL of one request (after the warm-up)")
    parser.add_argument("--sql-chars", type=int, default=300, help="--queries: characters of each statement shown")
    parser.add_argument(
        "--middleware",
        action="store_true",
        help="the request's cost without each middleware in turn (--requests per round)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under valgrind (--requests more than --warmup)",
    )
    arguments = parser.parse_args(argv)
    if arguments.instructions:
        return instructions(arguments)

    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (the logging configuration's stream, for the whole run)
    with tempfile.TemporaryDirectory(prefix="profile-") as folder:
        environment(Path(folder), arguments.database_url)
        import django  # noqa: PLC0415

        django.setup()
        from django.core.management import call_command  # noqa: PLC0415

        call_command("migrate", verbosity=0, interactive=False)
        from apps.core import service_calls, tracing  # noqa: PLC0415
        from apps.core.testing import service_client_provision  # noqa: PLC0415
        from apps.wsgi import application  # noqa: PLC0415

        tracing.configure("web")
        from django.conf import settings  # noqa: PLC0415

        service_client_provision(
            client_id="orders",
            secret=settings.SERVICE_CLIENT_SECRET,
            scopes=["payments:charge", "payments:refund", "notifications:publish"],
        )
        for retry_everything in (True, False):
            session = service_calls._session_for(retry_everything)
            session.mount("http://", WsgiAdapter(application))

        empty_views_add()
        endpoints = Endpoints(application)
        for _ in range(arguments.warmup):
            endpoints.run(arguments.endpoint)
        if arguments.queries:
            from django.db import connection  # noqa: PLC0415
            from django.test.utils import CaptureQueriesContext  # noqa: PLC0415

            with CaptureQueriesContext(connection) as captured:
                endpoints.run(arguments.endpoint)
            for number, query in enumerate(captured.captured_queries, 1):
                sys.stderr.write(f"{number:3d} {query['sql'][: arguments.sql_chars]}\n")
        if arguments.middleware:
            middleware_costs(endpoints, arguments.endpoint, arguments.requests)
            return 0
        profiler = cProfile.Profile() if arguments.cprofile else None
        cpu, wall = time.process_time(), time.perf_counter()
        with profiler or contextlib.nullcontext():
            for _ in range(arguments.requests):
                endpoints.run(arguments.endpoint)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        sys.stderr.write(
            f"{arguments.endpoint}: {arguments.requests} requests, {cpu / arguments.requests * 1000:.3f} ms CPU and "
            f"{wall / arguments.requests * 1000:.3f} ms wall per request\n"
        )
        if profiler is not None:
            stream = io.StringIO()
            stats = pstats.Stats(profiler, stream=stream)
            stats.sort_stats("tottime").print_stats(arguments.cprofile)
            stats.sort_stats("cumulative").print_stats(arguments.cprofile)
            sys.stderr.write(stream.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
