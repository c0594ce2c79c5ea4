"""Django settings for every service of the platform, read from the environment (12-factor).

`SERVICE` decides which service app this process installs and routes (see `apps.services`).
With DEBUG off (the default) the settings refuse insecure values instead of falling back to them.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from apps.services import ALL, services_for

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_rate(name: str, default: str):
    from apps.core.rates import Rate  # noqa: PLC0415 (plain values: nothing needs the app registry)

    return Rate.parse(os.environ.get(name) or default, name=name)


def env_networks(name: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    try:
        return [ipaddress.ip_network(item, strict=False) for item in env_list(name)]
    except ValueError as error:
        raise ImproperlyConfigured(f"{name}: {error}") from None


DEBUG = env_bool("DEBUG")

# --- which service this process is -------------------------------------------------------------
# A missing SERVICE is only tolerated in development, where `all` is the convenient default.
SERVICE = os.environ.get("SERVICE", ALL if DEBUG else "")
if not SERVICE:
    raise ImproperlyConfigured("SERVICE is not set; choose one of: auth, orders, payments, notifications, all")
SERVED = services_for(SERVICE)  # raises UnknownServiceError for a name that is not ours
SERVED_NAMES = frozenset(service.name for service in SERVED)

APP_VERSION = os.environ.get("APP_VERSION", "dev")
GIT_SHA = os.environ.get("GIT_SHA", "unknown")
DEPLOY_COLOR = os.environ.get("DEPLOY_COLOR", "")
if DEPLOY_COLOR not in {"", "blue", "green"}:
    raise ImproperlyConfigured(f"DEPLOY_COLOR={DEPLOY_COLOR!r} must be blue, green or empty")

# --- secrets and hosts: production refuses the development fallbacks ------------------------------
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off")
    SECRET_KEY = "django-insecure-development-only-key-never-used-with-debug-off"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "*" if DEBUG else "")
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required when DEBUG is off (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

# --- where the other services are -----------------------------------------------------------------
AUTH_URL = os.environ.get("AUTH_URL", "http://127.0.0.1:8001").rstrip("/")
ORDERS_URL = os.environ.get("ORDERS_URL", "http://127.0.0.1:8002").rstrip("/")
PAYMENTS_URL = os.environ.get("PAYMENTS_URL", "http://127.0.0.1:8003").rstrip("/")
NOTIFICATIONS_URL = os.environ.get("NOTIFICATIONS_URL", "http://127.0.0.1:8004").rstrip("/")

# This service's own OAuth2 client credentials, used for service-to-service calls.
SERVICE_CLIENT_ID = os.environ.get("SERVICE_CLIENT_ID", "")
SERVICE_CLIENT_SECRET = os.environ.get("SERVICE_CLIENT_SECRET", "")

# --- tokens -----------------------------------------------------------------------------------
JWT_ALGORITHM = "RS256"  # asymmetric: services verify with the public key only
JWT_ISSUER = os.environ.get("JWT_ISSUER", AUTH_URL)
JWT_AUDIENCE = os.environ.get("JWT_AUDIENCE", "platform-api")
JWT_LEEWAY_SECONDS = env_int("JWT_LEEWAY_SECONDS", 10)  # tolerated clock skew between pods
ACCESS_TOKEN_TTL_SECONDS = env_int("ACCESS_TOKEN_TTL_SECONDS", 300)
CLIENT_TOKEN_TTL_SECONDS = env_int("CLIENT_TOKEN_TTL_SECONDS", 600)
REFRESH_TOKEN_TTL_SECONDS = env_int("REFRESH_TOKEN_TTL_SECONDS", 14 * 24 * 3600)
# How long a JWKS answer is fresh; older keys stay in use while a background refresh fetches new ones.
JWKS_CACHE_SECONDS = env_float("JWKS_CACHE_SECONDS", 600)
# At most one JWKS fetch per process per this many seconds, whatever asks (expiry, an unknown kid).
JWKS_MIN_REFRESH_INTERVAL_SECONDS = env_float("JWKS_MIN_REFRESH_INTERVAL_SECONDS", 5)
# After failed fetches the pause doubles from the interval up to this: an outage costs auth nothing.
JWKS_MAX_BACKOFF_SECONDS = env_float("JWKS_MAX_BACKOFF_SECONDS", 60)
# Read timeout of one JWKS fetch attempt (it runs in the background, so it only bounds the fetch).
JWKS_FETCH_TIMEOUT_SECONDS = env_float("JWKS_FETCH_TIMEOUT_SECONDS", 2.0)
# How long a request with an unknown kid (or a process with no key yet) waits on the fetch under way.
# A healthy auth answers in milliseconds; short, so that forged kids cannot hold threads for long.
JWKS_FETCH_WAIT_SECONDS = env_float("JWKS_FETCH_WAIT_SECONDS", 0.5)
# The auth service's private signing key: a PEM file (a mounted Secret) or the PEM itself.
AUTH_SIGNING_KEY_FILE = os.environ.get("AUTH_SIGNING_KEY_FILE", "")
AUTH_SIGNING_KEY = os.environ.get("AUTH_SIGNING_KEY", "")

# --- rate limits of the unauthenticated endpoints (apps.core.ratelimit; counted in the database) -----
# Per client address, a token bucket per endpoint: bounds the password hashing (about 0.3 s of CPU
# each) one address can make a pod do. "N/period": N in a burst, then N per period.
RATE_LIMIT_REGISTER_PER_ADDRESS = env_rate("RATE_LIMIT_REGISTER_PER_ADDRESS", "20/minute")
RATE_LIMIT_REGISTER_PER_EMAIL = env_rate("RATE_LIMIT_REGISTER_PER_EMAIL", "5/hour")
RATE_LIMIT_LOGIN_PER_ADDRESS = env_rate("RATE_LIMIT_LOGIN_PER_ADDRESS", "30/minute")
RATE_LIMIT_REFRESH_PER_ADDRESS = env_rate("RATE_LIMIT_REFRESH_PER_ADDRESS", "120/minute")
RATE_LIMIT_REFRESH_PER_USER = env_rate("RATE_LIMIT_REFRESH_PER_USER", "30/minute")
RATE_LIMIT_CLIENT_TOKEN_PER_ADDRESS = env_rate("RATE_LIMIT_CLIENT_TOKEN_PER_ADDRESS", "60/minute")
# Password guessing slows down instead of locking anyone out: per (address, account) the first
# LOGIN_FREE_ATTEMPTS_PER_ADDRESS pass, then each attempt waits twice as long as the one before
# (from LOGIN_DELAY_BASE_SECONDS up to LOGIN_DELAY_MAX_SECONDS). Per account over all addresses the
# same with LOGIN_FREE_ATTEMPTS_PER_ACCOUNT, but not for addresses the account has logged in from
# before: a distributed guesser slows down without keeping the real user out. A correct password
# resets both; attempts are forgotten after LOGIN_FAILURE_WINDOW_SECONDS without one.
LOGIN_FREE_ATTEMPTS_PER_ADDRESS = env_int("LOGIN_FREE_ATTEMPTS_PER_ADDRESS", 5)
LOGIN_FREE_ATTEMPTS_PER_ACCOUNT = env_int("LOGIN_FREE_ATTEMPTS_PER_ACCOUNT", 20)
LOGIN_DELAY_BASE_SECONDS = env_float("LOGIN_DELAY_BASE_SECONDS", 1.0)
LOGIN_DELAY_MAX_SECONDS = env_float("LOGIN_DELAY_MAX_SECONDS", 900.0)
LOGIN_FAILURE_WINDOW_SECONDS = env_int("LOGIN_FAILURE_WINDOW_SECONDS", 3600)
# An address an account logged in from within this many days is known for it (see above).
LOGIN_KNOWN_ADDRESS_DAYS = env_int("LOGIN_KNOWN_ADDRESS_DAYS", 30)
# Proxies (addresses or networks) whose X-Forwarded-For is believed: the ingress or gateway pods.
# Empty: REMOTE_ADDR is the client. Behind a proxy not listed, every client shares its address.
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
TRUSTED_PROXY_NETWORKS = env_networks("TRUSTED_PROXIES")

# --- outbound calls ------------------------------------------------------------------------------
# Timeouts of one attempt; the whole retry budget of a caller stays below its own callers' timeout.
SERVICE_CALL_CONNECT_TIMEOUT = env_float("SERVICE_CALL_CONNECT_TIMEOUT", 1.0)
SERVICE_CALL_READ_TIMEOUT = env_float("SERVICE_CALL_READ_TIMEOUT", 5.0)
SERVICE_CALL_RETRIES = env_int("SERVICE_CALL_RETRIES", 2)
# The bulkhead: calls to one service in flight at a time per process. All of gunicorn's threads but
# one, so a slow callee always leaves a thread for the requests that do not need it (perf/drills.py
# payments-slow shows why); fewer would refuse calls a merely busy callee answers in time.
SERVICE_CALL_MAX_IN_FLIGHT = env_int("SERVICE_CALL_MAX_IN_FLIGHT", max(1, env_int("GUNICORN_THREADS", 4) - 1))
# How long a call waits for a slot when the bulkhead is full: a burst passes, a slow callee does not.
SERVICE_CALL_BULKHEAD_WAIT_SECONDS = env_float("SERVICE_CALL_BULKHEAD_WAIT_SECONDS", 0.1)
if SERVICE_CALL_MAX_IN_FLIGHT < 1:
    raise ImproperlyConfigured("SERVICE_CALL_MAX_IN_FLIGHT must be 1 or more: 0 would refuse every service call")

# --- apps and routes -------------------------------------------------------------------------------
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",  # staff accounts of this service's admin, not the API's users
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_prometheus",
    "apps.core",
    *(service.app for service in SERVED),
]

MIDDLEWARE = [
    # First: the request's trace span encloses everything, the access log line included.
    "apps.core.middleware.TraceMiddleware",
    # Then: every answer, a probe's or an error page's included, carries the request id.
    "apps.core.middleware.RequestIdMiddleware",
    # Probes and scrapes answer before host validation: kubelet and Prometheus use the pod IP.
    "apps.core.middleware.ProbeMiddleware",
    # Outside everything that can fail: whatever answers an error, it leaves as problem+json.
    "apps.core.middleware.ProblemResponseMiddleware",
    "apps.core.middleware.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    # Sessions, CSRF, staff login and messages (ADMIN_MIDDLEWARE), on the admin's pages only.
    "apps.core.middleware.AdminOnlyMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Each request counted and timed (apps.core.metrics), from here to its answer.
    "apps.core.metrics.RequestMetrics",
    # Innermost: a view that lost its database connection answers 503, not 500.
    "apps.core.middleware.DatabaseUnavailableMiddleware",
]

# The admin's pages (apps.urls), and the middlewares only they need: the API keeps no session and
# checks no CSRF token, since every API request carries its bearer token (apps.core.tokens).
ADMIN_PATH = "admin/"
ADMIN_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "apps.urls"
WSGI_APPLICATION = "apps.wsgi.application"
APPEND_SLASH = False  # a POST to a path without its slash must 404, not lose its body in a redirect

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- data ---------------------------------------------------------------------------------------
# Default: one SQLite file per service in a folder git ignores; production sets DATABASE_URL.
DATA_DIR = Path(os.environ.get("DATA_DIR", BASE_DIR / "data"))
DATABASE_URL = os.environ.get("DATABASE_URL", "") or f"sqlite:///{DATA_DIR / f'{SERVICE}.sqlite3'}"
_database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60), conn_health_checks=True)
# django-prometheus' histograms' buckets (requests and queries): from 1 ms, since most queries and many requests
# take a few; 1.0 is the latency SLO's threshold (platform/prometheus/rules/slos.yml).
PROMETHEUS_LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"),
)  # fmt: skip
# The platform's backends (apps/core/db): Django's, with django-prometheus' query metrics recorded at
# less cost per statement, and PostgreSQL's connection health check without a round trip per request.
_database["ENGINE"] = {
    "django.db.backends.sqlite3": "apps.core.db.sqlite3",
    "django.db.backends.postgresql": "apps.core.db.postgresql",
}.get(_database["ENGINE"], _database["ENGINE"].replace("django.db.backends.", "django_prometheus.db.backends."))
if _database["ENGINE"].endswith("sqlite3"):
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    _database["OPTIONS"] = {
        # Several gunicorn workers write one file: WAL lets readers go on, IMMEDIATE avoids
        # lock-upgrade deadlocks, and the timeout waits for a writer instead of failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
    _database["CONN_MAX_AGE"] = 0 if DEBUG else _database["CONN_MAX_AGE"]
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- static files: collected at image build, served by the app itself --------------------------
STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve straight from the apps' folders when nothing was collected (local runs without a build).
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)

# --- request handling ------------------------------------------------------------------------------
# Bodies above this are refused with 413 before anything parses them.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 256 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES
# Python's JSON parser recurses per level: deeper bodies are a 400 before they can exhaust the stack.
JSON_MAX_DEPTH = env_int("JSON_MAX_DEPTH", 32)
# A CSRF failure (the admin's forms) is a problem like any other error, not Django's HTML page.
CSRF_FAILURE_VIEW = "apps.core.problems.csrf_failure"
# Draining: while this file exists /readyz answers 503 (the pod's preStop hook creates it).
DRAIN_FILE = os.environ.get("DRAIN_FILE", "/tmp/draining")  # noqa: S108

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["apps.core.tokens.JwtAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "apps.core.api.ContentNegotiation",
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.Pagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "apps.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.problems.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": f"{SERVICE} service API",
    "DESCRIPTION": "Errors are application/problem+json (RFC 9457) and carry the request id.",
    "VERSION": APP_VERSION,
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Swagger UI assets ship in the image (sidecar), no CDN at run time.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- logging: one JSON object per line on stdout -------------------------------------------------
LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
# Lines below WARNING (the access lines) are written together, at most this long after they are
# logged; a WARNING or worse at once (apps.core.logging.StdoutHandler). 0: each line as it is logged.
LOG_WRITE_INTERVAL_SECONDS = env_float("LOG_WRITE_INTERVAL_SECONDS", 0.05)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "apps.core.logging.ContextFilter"}},
    "formatters": {"json": {"()": "apps.core.logging.JsonFormatter"}},
    "handlers": {
        "stdout": {
            "class": "apps.core.logging.StdoutHandler",
            "stream": "ext://sys.stdout",
            "formatter": "json",
            "filters": ["context"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # The request log line is written by our middleware; Django's own would duplicate 4xx/5xx.
        "django.request": {"level": "ERROR", "handlers": ["stdout"], "propagate": False},
        "django.server": {"level": "WARNING"},
    },
}

# --- production hardening ------------------------------------------------------------------------------
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = 0 if DEBUG else env_int("SECURE_HSTS_SECONDS", 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# TLS ends at the ingress, which forwards the scheme it saw.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")
# The admin's checks, and Django's check for CSRF protection, look for their middlewares in
# MIDDLEWARE; they run from ADMIN_MIDDLEWARE, for the admin's paths (AdminOnlyMiddleware), and
# apps.core.checks checks them there.
SILENCED_SYSTEM_CHECKS = ["admin.E408", "admin.E409", "admin.E410", "security.W003"]
if not SECURE_SSL_REDIRECT:
    # The ingress redirects HTTP to HTTPS; inside the cluster probes, scrapes and service calls
    # are plain HTTP between pods, and a redirect here would break every one of them.
    SILENCED_SYSTEM_CHECKS.append("security.W008")
if not SECURE_HSTS_PRELOAD:
    # Joining browsers' preload list binds the whole domain for months: the operator opts in.
    SILENCED_SYSTEM_CHECKS.append("security.W021")

# --- email (notifications) ---------------------------------------------------------------------------
# Development prints emails; production sends them through an SMTP relay. The console backend is never
# the production default: it would write every recipient and message into the logs and send nothing.
EMAIL_BACKEND = os.environ.get(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = os.environ.get("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
# Seconds per SMTP socket operation. Only the email worker (`manage.py email_deliver`) waits on it,
# never a request: its lease on one email is derived from it (apps/notifications/services.py).
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "no-reply@platform.local")

# --- payments' simulated processor ---------------------------------------------------------------------
# Drills only: while this file exists the simulated processor fails every call, as on an outage.
PAYMENTS_PROVIDER_FAULT_FILE = os.environ.get("PAYMENTS_PROVIDER_FAULT_FILE", "")
