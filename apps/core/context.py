"""Per-request values that outlive the view: log lines and outbound calls read them from here."""

import random
import uuid
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="")
# The caller's bearer token, forwarded when a service acts on the user's behalf.
caller_token: ContextVar[str] = ContextVar("caller_token", default="")


def request_id_new() -> str:
    """A fresh request id: a random (version 4) UUID's 32 hex digits.

    Drawn from the interpreter's generator, which `random` reseeds in every forked process (so two
    gunicorn workers never share a sequence), rather than from `os.urandom` as `uuid.uuid4()` does:
    an id correlates log lines and needs no secrecy, and urandom is a system call per request, one
    more point where a busy worker's thread hands the interpreter to another and waits to get it back.
    """
    return uuid.UUID(int=random.getrandbits(128), version=4).hex
