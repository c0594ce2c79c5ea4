"""A faulty network line in front of a real service, for outage tests and failure drills.

`FaultLine` is a TCP listener on 127.0.0.1 that forwards every connection to the service behind it,
byte for byte (keep-alive connections and request bodies included). It can be told, at any moment,
to delay every request by some seconds (a slow dependency) or to hang: accept connections and read
requests but never answer, as a wedged process or a black hole in the network does (a refused port
would fail fast and hide the problem). `recover()` puts it back to forwarding.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

from tests.live import free_port


class FaultLine:
    """Forward to 127.0.0.1:`target_port` (or `target`, set once the service behind has a port);
    `slow(seconds)`, `hang()` and `recover()` change that."""

    def __init__(self, target_port: int | None = None):
        self.target = ("127.0.0.1", target_port) if target_port else None
        self.port = free_port()
        self.delay_seconds = 0.0
        self._healthy = threading.Event()  # cleared while hung: forwarding waits on it
        self._healthy.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.listen(128)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"fault-line-{self.port}").start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def slow(self, seconds: float) -> None:
        """Every request waits `seconds` before it is forwarded (the first bytes a client sends after
        the previous answer: a client that sends headers and body apart is delayed once)."""
        self.delay_seconds = seconds
        self._healthy.set()

    def hang(self) -> None:
        """Requests are read and held, never forwarded nor answered, until `recover()`."""
        self._healthy.clear()

    def recover(self) -> None:
        self.delay_seconds = 0.0
        self._healthy.set()

    def close(self) -> None:
        self._closed = True
        self.recover()
        with contextlib.suppress(OSError):
            self._server.close()
        with self._lock:
            for sock in list(self._sockets):
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _track(self, *sockets: socket.socket) -> None:
        with self._lock:
            self._sockets.update(sockets)

    def _serve(self, client: socket.socket) -> None:
        if self.target is None:
            client.close()
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the service behind is down: the caller sees the connection close
            return
        upstream.settimeout(None)
        self._track(client, upstream)
        new_request = threading.Event()  # set: the client's next bytes begin a request
        new_request.set()
        threading.Thread(target=self._pump, args=(upstream, client, False, new_request), daemon=True).start()
        self._pump(client, upstream, True, new_request)

    def _pump(self, source: socket.socket, sink: socket.socket, requests_direction: bool, new_request) -> None:
        try:
            while chunk := source.recv(65536):
                if requests_direction:
                    # Held while hung; the wait ends when the line recovers or closes.
                    while not self._healthy.wait(timeout=0.5):
                        if self._closed:
                            return
                    if self.delay_seconds and new_request.is_set():
                        time.sleep(self.delay_seconds)
                    new_request.clear()
                else:
                    new_request.set()  # an answer: what the client sends next is another request
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
