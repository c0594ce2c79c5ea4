"""Per-request values that outlive the view: log lines and outbound calls read them from here."""

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")
# The caller's bearer token, forwarded when a service acts on the user's behalf.
caller_token: ContextVar[str] = ContextVar("caller_token", default="")
