"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

    POST /v1/models/NAME[/versions/V | /labels/L]:predict   {"instances": ...} or {"inputs": ...}
    GET  /v1/models/NAME[/versions/V | /labels/L]           model status
    GET  /v1/models/NAME[/versions/V | /labels/L]/metadata  signature defs

Errors are answered as {"error": "..."} with TF Serving's HTTP statuses (400 bad request, 404
unknown model or version, 413 a body over the size limit); no request stops the server.
"""

import json
import logging
import re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import grpc
from google.protobuf import json_format

from cnnpipe.serving import api, tensors
from cnnpipe.serving.errors import ServingError, invalid, not_found
from cnnpipe.serving.manager import ModelManager

PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<action>:predict|:classify|:regress|/metadata)?$"
)
log = logging.getLogger("cnnpipe.serving")


class RestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], manager: ModelManager, max_request_bytes: int):
        super().__init__(address, RestHandler)
        self.manager, self.max_request_bytes = manager, max_request_bytes


class RestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection
    disable_nagle_algorithm = True  # small answers go out at once, not after the client's delayed ACK
    wbufsize = -1  # headers and body leave in one send when the request is done
    server: RestServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        log.debug("%s " + format, self.address_string(), *args)

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, error: ServingError) -> None:
        self._answer(error.http_status, {"error": error.message})

    def _route(self, method: str) -> tuple[str, Optional[int], str, str]:
        match = PATH.match(self.path.split("?")[0])
        if not match:
            raise not_found(f"{method} {self.path}: no such resource; the API is /v1/models/NAME[/versions/V]"
                            "[:predict | /metadata]")
        version = int(match["version"]) if match["version"] else None
        return match["name"], version, match["label"] or "", match["action"] or ""

    def handle_expect_100(self) -> bool:
        """Refuses an announced oversized body before the client sends it."""
        if self._too_large():
            self._refuse_oversized(sent=False)
            return False
        super().handle_expect_100()
        self.wfile.flush()  # the client sends the body only after this 100 Continue
        return True

    def _too_large(self) -> bool:
        return int(self.headers.get("Content-Length") or 0) > self.server.max_request_bytes

    def _refuse_oversized(self, sent: bool) -> None:
        """Answers 413 and closes the connection; a body already on its way is read and dropped first,
        so that the client gets the answer rather than a reset connection."""
        if sent:
            remaining = int(self.headers.get("Content-Length"))
            while remaining > 0 and (chunk := self.rfile.read(min(remaining, 1 << 16))):
                remaining -= len(chunk)
        self.close_connection = True
        self._answer(413, {"error": f"the request body of {self.headers.get('Content-Length')} bytes is over this "
                                    f"server's limit of {self.server.max_request_bytes} bytes; send fewer instances "
                                    "per request, or start the server with a larger --max-request-bytes"})

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        try:
            name, version, label, action = self._route("GET")
            if action not in ("", "/metadata"):
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED, f"use POST for {action}")
            if action == "/metadata":
                servable = self.server.manager.servable(name, version, label)
                self._answer(200, {
                    "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                    "metadata": {api.SIGNATURE_DEF: json_format.MessageToDict(
                        api.signature_def_map(servable), preserving_proto_field_name=True)},
                })
                return
            if label:
                version = self.server.manager.servable(name, None, label).version
            status = api.model_status(self.server.manager, name, version)
            self._answer(200, json_format.MessageToDict(status, preserving_proto_field_name=True,
                                                        including_default_value_fields=True))
        except ServingError as error:
            self._error(error)
        except Exception as error:  # noqa: BLE001 - a bug answers 500 and the server goes on
            log.exception("GET %s failed", self.path)
            self._answer(500, {"error": f"{type(error).__name__}: {error}"})

    def do_POST(self) -> None:  # noqa: N802
        if self._too_large():
            self._refuse_oversized(sent=True)
            return
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            name, version, label, action = self._route("POST")
            if action != ":predict":
                raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                   f"POST {self.path}: this server answers :predict; classify and regress need "
                                   "signatures of those kinds, which these models do not have")
            try:
                request = json.loads(body)
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise invalid(f"JSON Parse error: {error} in the body of POST {self.path}") from None
            servable = self.server.manager.servable(name, version, label)
            signature_name = request.get("signature_name", "") if isinstance(request, dict) else ""
            if not isinstance(signature_name, str):
                raise invalid('"signature_name" must be a string')
            _, signature = servable.signature(signature_name)
            inputs, row_format = tensors.from_rest(request, signature.inputs)
            _, outputs = api.predict(servable, signature_name, inputs)
            self._answer(200, tensors.to_rest(outputs, row_format))
        except ServingError as error:
            self._error(error)
        except Exception as error:  # noqa: BLE001
            log.exception("POST %s failed", self.path)
            self._answer(500, {"error": f"{type(error).__name__}: {error}"})
