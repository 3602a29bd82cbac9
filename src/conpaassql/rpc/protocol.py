"""The ConPaaS JSON-RPC dialect: requests as parsed, replies as sent.

A ConPaaS request carries ``method``, ``params`` and ``id`` (GET query, JSON body
or multipart form); its reply is ``{"result", "error", "id"}`` with the error a
string. A request with ``"jsonrpc": "2.0"`` is answered in JSON-RPC 2.0 form,
the error an object with a code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from conpaassql.errors import ConpaasSQLError

JSONRPC2 = "2.0"

# JSON-RPC 2.0 codes for the protocol-level failures.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


@dataclass
class RpcRequest:
    method: str | None
    params: Any = field(default_factory=dict)
    id: Any = None
    version: str = "1.0"
    form: str = "GET"  # GET, POST or UPLOAD: how the request arrived


class ProtocolError(Exception):
    """A request that cannot be dispatched: it answers with an HTTP status."""

    def __init__(self, status: int, message: str, code: int, request_id: Any = None,
                 version: str = "1.0") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.request_id = request_id
        self.version = version


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("number out of range")
    return value


def loads(data: str | bytes) -> Any:
    """Strict JSON: no NaN or Infinity, no float that overflows."""
    return json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)


def parse_params_text(text: str | None) -> Any:
    """Params as given in a GET query or a form field: url-decoded JSON."""
    if text is None or text.strip() in ("", "null"):
        return {}
    try:
        return loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(400, f"Invalid JSON in params: {exc.msg}", PARSE_ERROR) from None
    except (ValueError, RecursionError):
        raise ProtocolError(400, "Invalid JSON in params", PARSE_ERROR) from None


def parse_json_body(body: bytes) -> RpcRequest:
    """Parse a POST body into a request (ConPaaS or JSON-RPC 2.0)."""
    try:
        data = loads(body)
    except json.JSONDecodeError as exc:
        raise ProtocolError(400, f"Invalid JSON: {exc.msg}", PARSE_ERROR) from None
    except UnicodeDecodeError:
        raise ProtocolError(400, "Invalid JSON: not UTF-8", PARSE_ERROR) from None
    except (ValueError, RecursionError):
        raise ProtocolError(400, "Invalid JSON", PARSE_ERROR) from None
    if not isinstance(data, dict):
        raise ProtocolError(400, "Invalid request: the body must be a JSON object",
                            INVALID_REQUEST)
    version = "2.0" if data.get("jsonrpc") == JSONRPC2 else "1.0"
    request_id = data.get("id")
    method = data.get("method")
    if method is None or method == "":
        raise ProtocolError(400, "Did not specify method", INVALID_REQUEST, request_id, version)
    if not isinstance(method, str):
        raise ProtocolError(400, "Invalid request: method must be a string", INVALID_REQUEST,
                            request_id, version)
    params = data.get("params", {})
    if params is None:
        params = {}
    return RpcRequest(method, params, request_id, version, "POST")


def success(request: RpcRequest, result: Any) -> dict[str, Any]:
    if request.version == JSONRPC2:
        return {"jsonrpc": JSONRPC2, "result": result, "id": request.id}
    return {"result": result, "error": None, "id": request.id}


def failure(version: str, request_id: Any, message: str, code: int,
            data: Any = None) -> dict[str, Any]:
    if version == JSONRPC2:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        return {"jsonrpc": JSONRPC2, "error": error, "id": request_id}
    return {"result": None, "error": message, "id": request_id}


def error_reply(request: RpcRequest, error: ConpaasSQLError) -> dict[str, Any]:
    return failure(request.version, request.id, error.message, error.code)
