"""JSON-RPC 2.0 as MCP uses it: one message per POST body, no batches.

``parse(raw)`` gives ``(kind, message)``:

Case 1: not JSON (or not UTF-8)             -> RpcError PARSE_ERROR (id null)
Case 2: JSON, but no single message (an array: MCP dropped batching in 2025-06-18;
        no ``jsonrpc: "2.0"``; an id that is neither string nor integer; a method that
        is not a string)                      -> RpcError INVALID_REQUEST
Case 3: a request (method and id)             -> ("request", message)
Case 4: a notification (method, no id)        -> ("notification", message)
Case 5: a response (result or error, with id) -> ("response", message)

Nothing here knows HTTP or MCP's methods.
"""

import json

from .. import jsonpolicy

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RpcError(Exception):
    """A JSON-RPC error answer: ``code``, ``message``, optional ``data``."""

    def __init__(self, code, message, data=None, id=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.id = id

    def answer(self, id=None):
        error = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return {"jsonrpc": "2.0", "id": self.id if id is None else id, "error": error}


def parse(raw):
    """(kind, message) of one POST body (see the module doc)."""
    try:
        message = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RpcError(PARSE_ERROR, "the body is not JSON (UTF-8)") from None
    if isinstance(message, list):
        raise RpcError(INVALID_REQUEST, "one JSON-RPC message per request: batches are not "
                       "part of MCP since 2025-06-18")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'not a JSON-RPC 2.0 message ("jsonrpc": "2.0")')
    if jsonpolicy.find_lone_surrogate(message):
        raise RpcError(PARSE_ERROR, "the body has a lone surrogate (\\ud800-\\udfff): not "
                       "valid Unicode text")
    has_id = "id" in message
    id = message.get("id")
    if has_id and (isinstance(id, bool) or not isinstance(id, (str, int))):
        raise RpcError(INVALID_REQUEST, "the id must be a string or an integer")
    if "method" in message:
        if not isinstance(message["method"], str):
            raise RpcError(INVALID_REQUEST, "the method must be a string", id=id)
        params = message.get("params", {})
        if not isinstance(params, dict):
            raise RpcError(INVALID_REQUEST, "params must be an object", id=id)
        return ("request" if has_id else "notification"), message
    if has_id and ("result" in message or "error" in message):
        return "response", message
    raise RpcError(INVALID_REQUEST, "neither a request, a notification nor a response",
                   id=id)


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def result(id, value):
    return {"jsonrpc": "2.0", "id": id, "result": value}


def notification(method, params):
    return {"jsonrpc": "2.0", "method": method, "params": params}
