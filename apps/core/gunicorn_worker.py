"""gunicorn's threaded worker, answering the requests gunicorn itself refuses as problem+json.

Some requests never reach Django: headers over gunicorn's limits (431), a request line over its
limit (414), a malformed request line or header (400). gunicorn answers those with an HTML page of
its own, written by `gunicorn.util.write_error`, which has no hook; this worker replaces that one
function in its own process before serving, so those answers keep the platform's error contract
(RFC 9457 problem+json with a request id) like every other.
"""

import json
import uuid
from http import HTTPStatus

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

from apps.core.problem_codes import status_code


def problem_error_write(sock, status_int: int, reason: str, mesg: str) -> None:
    """What gunicorn sends for a request it refused, as problem+json. `mesg` is not sent: it can
    repeat the refused request line or header, which is the client's input."""
    request_id = uuid.uuid4().hex
    code = status_code(status_int)
    try:
        title = HTTPStatus(status_int).phrase
    except ValueError:
        title = reason
    body = json.dumps(
        {
            "type": f"urn:problem-type:{code}",
            "title": title,
            "status": status_int,
            "detail": f"{title}: the request was refused before it reached the service.",
            "code": code,
            "request_id": request_id,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status_int} {title}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Request-ID: {request_id}\r\n"
        "\r\n"
    ).encode("latin-1")
    util.write_nonblock(sock, head + body)


class ThreadWorker(GunicornThreadWorker):
    """gthread (see platform/gunicorn.conf.py for why threads), with problem+json refusals."""

    def init_process(self):
        util.write_error = problem_error_write
        super().init_process()
