"""The example app of the compose test cluster: a tiny HTTP service, standard library only.

It plays the `flask-app` pods that zones/services.yaml's my-service selects (port 80 ->
targetPort 5000), without Flask, so it runs on a bare Python with nothing to install:

    GET /         -> "hello from <pod name>" (POD_NAME, which `kdns register` sets; else the host name)
    GET /healthz  -> 200 "ok", for the readinessProbe

    python app.py [--address 0.0.0.0] [--port 5000]

SIGTERM and SIGINT stop it with exit code 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Handler(BaseHTTPRequestHandler):
    server_version = "flask-app-example/1"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # the http.server spelling
        if self.path == "/healthz":
            self._reply(200, "ok\n")
        elif self.path == "/":
            self._reply(200, f"hello from {self.server.pod_name}\n")  # type: ignore[attr-defined]
        else:
            self._reply(404, "not found\n")

    def _reply(self, code: int, text: str) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stderr, as `docker compose logs` shows it; not the probes,
        # which come every second.
        if getattr(self, "path", "") != "/healthz":
            sys.stderr.write(f"{self.address_string()} {format % args}\n")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    pod_name = ""

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A tcpSocket probe connects and resets at once: that is no error worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The compose test cluster's example app.")
    parser.add_argument("--address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    args = parser.parse_args(argv)
    server = Server((args.address, args.port), Handler)
    server.pod_name = os.environ.get("POD_NAME") or socket.gethostname()
    stopping = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            # shutdown() waits for serve_forever, which runs in this thread: ask from another.
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"flask-app: {server.pod_name} listening on {host}:{port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
