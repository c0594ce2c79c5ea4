"""tests/faults.py's FaultLine in front of a real HTTP server: it forwards, slows down and hangs."""

import http.server
import threading
import time

import pytest
import requests

from tests.faults import FaultLine


class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the services' clients use it

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def line():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    fault_line = FaultLine(server.server_address[1])
    yield fault_line
    fault_line.close()
    server.shutdown()


def post(session, line, body: bytes, timeout: float = 5) -> requests.Response:
    return session.post(line.url, data=body, timeout=timeout)


def test_it_forwards_request_bodies_over_one_kept_alive_connection(line):
    with requests.Session() as session:
        answers = [post(session, line, f"body {index}".encode() * 1000).content for index in range(3)]
    assert answers == [f"body {index}".encode() * 1000 for index in range(3)]


def test_slow_delays_every_request_and_recover_ends_it(line):
    with requests.Session() as session:
        post(session, line, b"warm")
        line.slow(0.4)
        started = time.monotonic()
        assert post(session, line, b"slow").content == b"slow"
        slow = time.monotonic() - started
        started = time.monotonic()
        post(session, line, b"x" * 200_000)  # sent in many chunks: delayed once
        slow_large = time.monotonic() - started
        line.recover()
        started = time.monotonic()
        post(session, line, b"fast")
        fast = time.monotonic() - started
    assert slow >= 0.4
    assert 0.4 <= slow_large < 0.8
    assert fast < 0.4


def test_hang_answers_nothing_on_new_and_kept_alive_connections_until_recover(line):
    with requests.Session() as kept_alive:
        post(kept_alive, line, b"before")
        line.hang()
        with pytest.raises(requests.ReadTimeout):
            post(kept_alive, line, b"hung", timeout=0.5)
        with pytest.raises(requests.ReadTimeout):
            post(requests, line, b"new connection", timeout=0.5)
    line.recover()
    assert post(requests, line, b"after").content == b"after"


def test_nothing_behind_the_line_closes_the_connection():
    line = FaultLine()
    try:
        with pytest.raises(requests.ConnectionError):
            requests.get(line.url, timeout=2)
    finally:
        line.close()
