"""A fake Prometheus HTTP API for the metrics gate's tests: canned answers to instant queries. A fake."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakePrometheus:
    """Answers GET /api/v1/query with the value of the first `answers` key found in the query."""

    def __init__(self, answers: dict[str, str | None]):
        self.answers = answers
        self.queries: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)["query"][0]
                fake.queries.append(query)
                value = next((v for key, v in fake.answers.items() if key in query), None)
                result = [] if value is None else [{"metric": {}, "value": [1767000000.0, value]}]
                data = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
