"""An HTTP server on 127.0.0.1 for tests: records every request (method, path, JSON body) and answers as told."""

import contextlib
import http.server
import json
import threading
from typing import Callable, Iterator

Request = tuple[str, str, dict]  # method, path (without the query), JSON body ({} without one)
Answer = Callable[[str, str], tuple[int, dict]]  # (method, path) -> status and JSON body


@contextlib.contextmanager
def http_sink(port: int, answer: Answer = lambda method, path: (200, {})) -> Iterator[list[Request]]:
    """Serves http://127.0.0.1:`port` while the block runs, answering each request with `answer`; yields the requests
    received, in order."""
    requests: list[Request] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def respond(self) -> None:
            path = self.path.split("?")[0]
            length = int(self.headers.get("Content-Length") or 0)
            requests.append((self.command, path, json.loads(self.rfile.read(length) or b"{}")))
            status, body = answer(self.command, path)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

        do_GET = do_POST = respond  # noqa: N815 - the names http.server calls

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield requests
    finally:
        server.shutdown()
        server.server_close()
