"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

    POST /v1/models/NAME[/versions/V | /labels/L]:predict   {"instances": ...} or {"inputs": ...}
    POST /v1/models/NAME[/versions/V | /labels/L]:classify  {"examples": [...], "context": {...}}; also :regress
    GET  /v1/models/NAME[/versions/V | /labels/L]           model status
    GET  /v1/models/NAME[/versions/V | /labels/L]/metadata  signature defs
    GET  /monitoring/prometheus/metrics                     the metrics, with a monitoring config enabling them
    GET  /                                                  the visual search page (serving/page.py)
    GET  /v1/models/NAME/versions/V/items/ID                a catalog item's thumbnail, for the page
    GET  /v1/models/NAME/versions/V/examples                the example queries the page offers: id, class, source
    GET  /v1/models/NAME/versions/V/examples/ID             an example query's image

Paths are matched as TF Serving matches them (case-insensitive; any other /v1/ path is a malformed request).
Errors are answered as {"error": "..."} with TF Serving's HTTP statuses (400 bad request, 404
unknown model or version, 413 a body over the size limit); no request stops the server. A body
comes with a Content-Length or chunked. `drain` stops taking connections, closes the idle ones,
and answers the requests under way with `Connection: close`.
"""

import json
import logging
import re
import selectors
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from tensorflow_serving.apis import classification_pb2, regression_pb2

from cnnpipe.core.names import SERVING_DEFAULT
from cnnpipe.serving import api, examples, inference, json_body, page, tensors
from cnnpipe.serving.errors import ServingError, invalid, not_found
from cnnpipe.serving.manager import ModelManager
from cnnpipe.serving.monitoring import CONTENT_TYPE, REST, Metrics
from cnnpipe.serving.request_log import RequestLog

# TF Serving's two paths (http_rest_api_util.cc): the model APIs for POST, status and metadata for GET.
VERSION = r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
PATHS = {"POST": re.compile(rf"/v1/models/(?P<name>[^/:]+){VERSION}:(?P<method>classify|regress|predict)", re.I),
         "GET": re.compile(rf"/v1/models(?:/(?P<name>[^/:]+))?{VERSION}(?:/(?P<method>metadata))?", re.I)}
API_NAMES = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}  # the metrics' names of the methods
API_PREFIX = re.compile(r"/v1/", re.I)  # TF Serving's REST handler takes every path under it
MAX_VERSION = (1 << 63) - 1  # a version is an int64
ITEM = re.compile(r"^/v1/models/(?P<name>[^/:]+)/versions/(?P<version>\d+)/(?P<table>items|examples)"
                  r"(?:/(?P<item>\d+))?$")
PAGE_PATHS = ("/", "/index.html")
MAX_LINE = 65536  # of a chunk size or trailer line, as of a header line
log = logging.getLogger("cnnpipe.serving")


class BodyRefused(Exception):
    """A request body this server does not take: answered with `status`, then the connection closes (what follows
    on it is not known to be a request)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class RestServer(ThreadingHTTPServer):
    """A thread per connection, predictions on `model_threads`; each connection counts in `in_flight` from its
    accept to its close, so that a drain waits for requests already sent on open connections."""

    daemon_threads = True  # a request still running at the drain deadline does not hold the process
    block_on_close = False  # the drain waits on `in_flight`, with a deadline

    def __init__(self, address: tuple[str, int], manager: ModelManager, max_request_bytes: int,
                 max_batch_images: int, in_flight: api.InFlight, metrics: Metrics,
                 request_log: Optional[RequestLog] = None, metrics_path: Optional[str] = None):
        super().__init__(address, RestHandler)
        self.manager, self.max_request_bytes, self.max_batch_images = manager, max_request_bytes, max_batch_images
        self.in_flight, self.metrics, self.request_log, self.metrics_path = (
            in_flight, metrics, request_log, metrics_path)
        self.model_threads = ThreadPoolExecutor(api.MODEL_THREADS, thread_name_prefix="rest-model")
        self.draining = False
        self._drain_signal, self._drain_trigger = socket.socketpair()  # readable once draining

    def process_request(self, request: socket.socket, client_address: tuple) -> None:
        self.in_flight.add(1)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        super().shutdown_request(request)
        self.in_flight.add(-1)

    def next_request(self, connection: socket.socket) -> bool:
        """Waits until `connection` has a request (True) or the server drains while it is idle (False)."""
        with selectors.DefaultSelector() as selector:
            selector.register(connection, selectors.EVENT_READ)
            selector.register(self._drain_signal, selectors.EVENT_READ)
            return any(key.fileobj is connection for key, _ in selector.select())

    def drain(self) -> None:
        """Stops accepting connections (returning once none is being accepted) and closes the idle ones; requests
        under way, and those already sent on open connections, are answered with `Connection: close`."""
        self.draining = True
        self._drain_trigger.send(b"\0")
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: tuple) -> None:
        """A client that went away is no fault of the server's; anything else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            log.debug("%s went away: %s", client_address[0], sys.exc_info()[1])
        else:
            log.exception("serving %s failed", client_address[0])


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    disable_nagle_algorithm = True  # small answers go out at once, not after the client's delayed ACK
    wbufsize = -1  # headers and body leave in one send when the request is done
    server: RestServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s " + format, self.address_string(), *args)

    def handle(self) -> None:
        """Answers requests until the client or an answer closes the connection, or the server drains while the
        connection is idle."""
        self.close_connection = False
        while not self.close_connection and (self._buffered() or self.server.next_request(self.connection)):
            self.handle_one_request()

    def _buffered(self) -> bool:
        """Whether a next request is already in this connection's read buffer (a pipelining client); never waits."""
        self.connection.setblocking(False)
        try:
            return bool(self.rfile.peek(1))
        except OSError:
            return False  # the connection broke: next_request sees it readable, and reading ends it
        finally:
            self.connection.setblocking(True)

    def _answer(self, status: int, body: dict) -> None:
        self._send(status, "application/json", json.dumps(body).encode())

    def _send(self, status: int, content_type: str, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection or self.server.draining:
            self.send_header("Connection", "close")  # and the connection closes after this answer
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, refusal: BodyRefused) -> None:
        self.close_connection = True
        self._answer(refusal.status, {"error": refusal.message})

    def _respond(self, answer: Callable[[], dict]) -> None:
        """Answers 200 with `answer()`, or the error it raises with TF Serving's status; counts the request in the
        metrics under the model and API it names."""
        start, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            status, body = 200, answer()
        except ServingError as error:
            code, status, body = error.code, error.http_status, {"error": error.message}
        except Exception as error:  # noqa: BLE001 - a bug answers 500 and the server goes on
            log.exception("%s %s failed", self.command, self.path)
            code, status, body = grpc.StatusCode.INTERNAL, 500, {"error": f"{type(error).__name__}: {error}"}
        self._answer(status, body)
        name, _, _, method = self._request_names()
        self.server.metrics.observe_request(name, API_NAMES.get(method, ""), REST, code, time.perf_counter() - start)

    def _request_names(self) -> tuple[str, Optional[str], str, str]:
        """The model name, version text, label and method the path names (empty where it names none)."""
        match = PATHS[self.command].fullmatch(self.path.split("?")[0]) if self.command in PATHS else None
        if not match:
            return "", None, "", ""
        return match["name"] or "", match["version"], match["label"] or "", (match["method"] or "").lower()

    def _route(self) -> tuple[str, Optional[int], str, str]:
        """The model name, version, label and method ("predict", "classify", "regress", "metadata" or "" for the
        status) of a request's path, or TF Serving's error for it."""
        if not PATHS[self.command].fullmatch(self.path.split("?")[0]):
            raise invalid(f"Malformed request: {self.command} {self.path}")
        name, version, label, method = self._request_names()
        if version is not None and int(version) > MAX_VERSION:
            raise invalid(f"Failed to convert version: {version} to numeric.")
        if not name:
            raise invalid("Missing model name in request.")
        return name, None if version is None else int(version), label, method

    # --- the body: Content-Length or chunked, up to --max-request-bytes ---

    def handle_expect_100(self) -> bool:
        """Refuses an announced oversized body before the client sends it."""
        try:
            if not self._chunked() and self._content_length() > self.server.max_request_bytes:
                raise BodyRefused(413, self._over_limit(f"of {self._content_length()} bytes"))
        except BodyRefused as refusal:
            self._refuse(refusal)
            return False
        super().handle_expect_100()
        self.wfile.flush()  # the client sends the body only after this 100 Continue
        return True

    def _chunked(self) -> bool:
        return self.headers.get("Transfer-Encoding", "").strip().lower().endswith("chunked")

    def _content_length(self) -> int:
        text = self.headers.get("Content-Length", "0").strip()
        if not (text.isascii() and text.isdigit()):
            raise BodyRefused(400, f"Content-Length {text!r} is not a number of bytes")
        return int(text)

    def _over_limit(self, size: str) -> str:
        return (f"the request body {size} is over this server's limit of {self.server.max_request_bytes} bytes; send "
                "fewer instances per request, or start the server with a larger --max-request-bytes")

    def _body(self) -> Optional[bytes]:
        """The request body; None when the client hung up before its end. An oversized body is read and dropped
        before it is refused, so that the client gets the answer rather than a reset connection."""
        if self._chunked():
            return self._chunked_body()
        length = remaining = self._content_length()
        if length > self.server.max_request_bytes:
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                remaining -= len(chunk)
            raise BodyRefused(413, self._over_limit(f"of {length} bytes"))
        body = self.rfile.read(length)
        return body if len(body) == length else None

    def _chunked_body(self) -> Optional[bytes]:
        """A chunked body (RFC 9112, 7.1): chunks after their size in hex, a last chunk of size 0, trailer lines."""
        parts, size = [], 0
        while chunk_size := self._chunk_size():
            chunk = self.rfile.read(chunk_size)
            if len(chunk) < chunk_size or not self.rfile.readline(MAX_LINE).endswith(b"\n"):
                return None
            size += chunk_size
            if size <= self.server.max_request_bytes:  # beyond it, read and dropped
                parts.append(chunk)
        if chunk_size is None:
            return None
        while (line := self.rfile.readline(MAX_LINE)) not in (b"\r\n", b"\n"):
            if not line.endswith(b"\n"):
                return None
        if size > self.server.max_request_bytes:
            raise BodyRefused(413, self._over_limit(f"of {size} bytes (chunked)"))
        return b"".join(parts)

    def _chunk_size(self) -> Optional[int]:
        """The size of the next chunk (0: the last); None when the client hung up."""
        line = self.rfile.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            return None
        size = line.split(b";")[0].strip()  # a chunk extension follows a ";"
        if not re.fullmatch(rb"[0-9a-fA-F]{1,16}", size):
            raise BodyRefused(400, f"malformed chunked body: a chunk size line reads {line[:40]!r}")
        return int(size, 16)

    # --- the API ---

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        path = self.path.split("?")[0]
        item = ITEM.match(path)
        if path in PAGE_PATHS:
            self._send(200, "text/html; charset=utf-8", page.page(self.server.manager.names()))
        elif path == self.server.metrics_path:
            self._send(200, CONTENT_TYPE, self.server.metrics.prometheus_text())
        elif item and (item["item"] or item["table"] == "examples"):
            self._search_asset(item["name"], int(item["version"]), item["table"], item["item"])
        elif API_PREFIX.match(path):
            self._respond(self._get)
        else:
            self._answer(404, {"error": f"GET {path}: no such resource; the API is under /v1/models/"})

    def _search_asset(self, name: str, version: int, table: str, item: Optional[str]) -> None:
        """Answers with a catalog item's thumbnail ("items"), an example query's image ("examples"), or the list of
        example queries (no item)."""
        try:
            servable = self.server.manager.servable(name, version)
            rows = servable.items if table == "items" else servable.examples
            if rows is None:
                raise not_found(f"{name} version {version} has no catalog (it was pushed without visual search)"
                                if table == "items" else f"{name} version {version} offers no example queries")
            if item is None:
                self._answer(200, {"examples": [{"id": i, "class_name": class_name, "source": source} for i, (
                    class_name, source) in enumerate(zip(rows.class_names, rows.sources))]})
                return
            if int(item) >= len(rows):
                raise not_found(f"{name} version {version} has no {table[:-1]} {item}: it holds {len(rows)} {table}")
        except ServingError as error:
            self._answer(error.http_status, {"error": error.message})
        else:
            image = rows.thumbnails[int(item)]
            self._send(200, page.image_type(image), image)

    def do_POST(self) -> None:  # noqa: N802
        try:
            body = self._body()
        except BodyRefused as refusal:
            self._refuse(refusal)
            return
        if body is None:
            log.debug("%s hung up in the middle of POST %s", self.address_string(), self.path)
            self.close_connection = True
        elif API_PREFIX.match(self.path):
            self._respond(lambda: self._post(body))
        else:
            self._answer(404, {"error": f"POST {self.path}: no such resource; the API is under /v1/models/"})

    def _get(self) -> dict:
        name, version, label, method = self._route()
        manager = self.server.manager
        if method == "metadata":
            servable = manager.servable(name, version, label)
            return {
                "model_spec": _as_json(api.model_spec(servable)),
                "metadata": {api.SIGNATURE_DEF: _as_json(api.signature_def_map(servable)),
                             **api.search_index(servable)},
            }
        if label:
            version = manager.servable(name, None, label).version
        return _as_json(api.model_status(manager, name, version))

    def _post(self, body: bytes) -> dict:
        name, version, label, method = self._route()
        request = self._json(body)
        signature_name = request.get("signature_name", "") if isinstance(request, dict) else ""
        if not isinstance(signature_name, str):
            raise invalid(f"JSON Value: {tensors.excerpt(request)} not formatted correctly. 'signature_name' key must "
                          "be a string value.")
        if method != "predict":
            return self._classify_or_regress(method, name, version, label, request)
        servable = self.server.manager.servable(name, version, label)
        if (signature_name or SERVING_DEFAULT) not in servable.signatures:
            raise invalid(f'Serving signature name: "{signature_name or SERVING_DEFAULT}" not found in signature def')
        _, signature = servable.signature(signature_name)
        with api.batch_of(tensors.rest_rows(request), self.server.max_batch_images):
            inputs, row_format = tensors.from_rest(request, signature.inputs)
            _, outputs = self.server.model_threads.submit(api.predict, servable, signature_name, inputs, (),
                                                          self.server.request_log).result()
            return tensors.to_rest(outputs, row_format)

    def _json(self, body: bytes) -> Any:
        if not body:
            raise invalid(f"JSON Parse error: The document is empty. POST {self.path} came without a body; send a "
                          'JSON object with "instances" or "inputs"')
        try:
            return json_body.loads(body)
        except json.JSONDecodeError as error:
            reason = next((words for start, words in PARSE_ERRORS if error.msg.startswith(start)), error.msg)
            raise invalid(f"JSON Parse error: {reason} at offset: {error.pos}") from None
        except UnicodeDecodeError as error:
            raise invalid(f"JSON Parse error: Invalid encoding in string. at offset: {error.start}") from None

    def _classify_or_regress(self, method: str, name: str, version: Optional[int], label: str, body: Any) -> dict:
        """A Classify or Regress request: its JSON examples (and context) as tf.Examples, the results as TF Serving
        words them: {"results": [[[label, score], ...], ...]} or {"results": [value, ...]}."""
        request = (classification_pb2.ClassificationRequest if method == "classify" else
                   regression_pb2.RegressionRequest)()
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        request.model_spec.version_label = label
        request.model_spec.signature_name = body.get("signature_name", "") if isinstance(body, dict) else ""
        examples.fill_input(body, method, request.input)
        servable = self.server.manager.servable(name, version, label)
        if method == "classify":
            result = inference.classify(servable, request).result
            return {"results": [[[entry.label, entry.score] for entry in classifications.classes]
                                for classifications in result.classifications]}
        return {"results": [regression.value for regression in inference.regress(servable, request).result.regressions]}


# Python's JSON errors in the words of TF Serving's parser (rapidjson), which clients match on.
PARSE_ERRORS = (("Expecting value", "Invalid value."),
                ("Extra data", "The document root must not be followed by other values."),
                ("Unterminated string", "Missing a closing quotation mark in string."),
                ("Expecting property name", "Missing a name for object member."),
                ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
                ("Expecting ',' delimiter", "Missing a comma or ']' after an array element."))


def _as_json(message: Message) -> dict:
    """A protobuf as TF Serving prints it: field names as in the proto, fields at their default values too."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True, including_default_value_fields=True)
