"""MCP's Streamable HTTP transport on the WSGI app: POST, GET and DELETE /mcp.

POST carries one JSON-RPC message:

Case 1: a foreign ``Origin`` (not this server's, not in ``allowed_origins``) -> 403,
        whatever the token (DNS rebinding: a page of another site in the user's
        browser must not drive the kernels)
Case 2: a body that is not ``application/json`` -> 415; an ``Accept`` that takes
        neither ``application/json`` nor ``text/event-stream`` -> 406
Case 3: not JSON / not one JSON-RPC message -> 400 with the JSON-RPC error (-32700,
        -32600), as the SDK's own server answers
Case 4: ``initialize`` -> its result, and a new ``Mcp-Session-Id``
Case 5: anything else without a session id -> 400, with an unknown (or ended) one
        -> 404, with an ``MCP-Protocol-Version`` we do not speak -> 400
Case 6: a notification or a response -> 202, no body (``notifications/cancelled``
        cancels the execution the named request runs)
Case 7: a request -> 200: ``application/json``, or ``text/event-stream`` when the
        client takes it and a tools/call asked for progress (``_meta.progressToken``):
        progress notifications as the cell prints, then the response

GET -> 405 (no server-initiated stream: nothing here starts without a request);
DELETE -> 204, the session ends.  HTTP-level refusals (Cases 1, 2, 5, 401) are
problem+json as everywhere in this service; JSON-RPC errors are JSON-RPC objects.
"""

import logging
import queue
import threading
import time

from ..auth import own_origin
from ..dispatch import Response, encode_json
from ..errors import (BadRequest, Forbidden, McpSessionNotFound, McpSessionRequired,
                      NotAcceptable, UnsupportedMediaType)
from ..params import media_type
from . import jsonrpc
from .server import VERSIONS, McpServer
from .sessions import Sessions

log = logging.getLogger("wsgikernel")

JSON, SSE = "application/json", "text/event-stream"
HEARTBEAT = 15.0   # seconds of silence before a progress notification says "still running"


class Call:
    """The context of one tools/call (tools.py): where progress goes, how it is found."""

    def __init__(self, endpoint, session, version, request_id, token, notify):
        self.manager, self.config = endpoint.manager, endpoint.config
        self.sessions, self.session, self.version = endpoint.sessions, session, version
        self.request_id, self.token, self.notify = request_id, token, notify
        self.heartbeat, self.count = 1.0, 0

    def progress(self, message):
        if self.token is None or self.notify is None:
            return
        self.count += 1  # progress must increase, output or not
        self.notify(jsonrpc.notification("notifications/progress", {
            "progressToken": self.token, "progress": self.count, "message": message}))

    def running(self, env_id, n):
        if self.session is not None and n is not None:
            self.sessions.running(self.session, self.request_id, env_id, n)

    def bounded(self, events, wait):
        """``events`` until ``wait`` seconds have passed; heartbeats (None) at most every
        HEARTBEAT seconds."""
        deadline = time.monotonic() + wait
        quiet_since = time.monotonic()
        for event in events:
            now = time.monotonic()
            if event is not None or now - quiet_since >= HEARTBEAT:
                quiet_since = now
                yield event
            if now >= deadline:
                return


class McpEndpoint:
    def __init__(self, app):
        self.manager, self.config = app.manager, app.config
        self.allowed_origins = frozenset(o.rstrip("/").lower()
                                         for o in app.config.allowed_origins)
        self.server = McpServer(app.manager, app.config)
        self.sessions = Sessions(app.config.state_dir)

    # -- POST ------------------------------------------------------------------------

    def post(self, environ):
        self.check_origin(environ)
        kind, _ = media_type(environ)
        if kind != JSON:
            raise UnsupportedMediaType(kind or "(no Content-Type)", (JSON,))
        accept = environ.get("HTTP_ACCEPT", "") or "*/*"
        takes_json = any(m in accept for m in (JSON, "application/*", "*/*"))
        takes_sse = any(m in accept for m in (SSE, "text/*", "*/*"))
        if not (takes_json or takes_sse):
            raise NotAcceptable("MCP answers application/json or text/event-stream: accept "
                                "them (Accept: application/json, text/event-stream)")
        try:
            kind, message = jsonrpc.parse(environ.get("wsgikernel.body", b""))
        except jsonrpc.RpcError as error:
            return Response(error.answer(), status=400)
        method, params = message.get("method"), message.get("params") or {}
        if kind == "request" and method == "initialize":
            return self.initialize(message, params)
        session, version = self.session_of(environ)
        if kind != "request":
            if method == "notifications/cancelled":
                self.server.cancel(params, Call(self, session, version, None, None, None))
            return Response(status=202)
        meta = params.get("_meta")
        token = meta.get("progressToken") if isinstance(meta, dict) else None
        if isinstance(token, bool) or not isinstance(token, (str, int)):
            token = None  # the spec's progress tokens are strings or integers
        if method == "tools/call" and token is not None and takes_sse:
            return self.streamed(message, params, session, version, token)
        answer = self.respond(message, params, Call(self, session, version, message["id"],
                                                    None, None))
        if takes_json:
            return Response(answer)
        return Response(sse_event(answer), content_type=SSE)

    def initialize(self, message, params):
        version = McpServer.negotiate(params)
        client = params.get("clientInfo") if isinstance(params.get("clientInfo"), dict) else {}
        session = self.sessions.begin(version, {key: str(client.get(key))[:200]
                                               for key in ("name", "version") if key in client})
        result = self.respond(message, params, Call(self, session, version, message["id"],
                                                    None, None))
        return Response(result, headers=[("Mcp-Session-Id", session)])

    def session_of(self, environ):
        """(session id, its protocol version) of a request after initialize (Case 5)."""
        asked = environ.get("HTTP_MCP_PROTOCOL_VERSION")
        if asked is not None and asked not in VERSIONS:
            raise BadRequest("MCP-Protocol-Version %.40r is not one this server speaks (%s)"
                             % (asked, ", ".join(VERSIONS)), supported=list(VERSIONS))
        session = environ.get("HTTP_MCP_SESSION_ID")
        if not session:
            raise McpSessionRequired("send the Mcp-Session-Id that initialize answered with "
                                     "(or initialize first)")
        found = self.sessions.find(session)
        if found is None:
            raise McpSessionNotFound("no MCP session %.80r: it ended or never began; "
                                     "initialize again" % session)
        negotiated = found.get("protocol") or VERSIONS[-1]
        if asked is not None and asked != negotiated:
            raise BadRequest("MCP-Protocol-Version %s is not the version this session "
                             "negotiated (%s)" % (asked, negotiated),
                             supported=[negotiated])
        return session, negotiated

    def respond(self, message, params, call):
        """The JSON-RPC response to a request (errors included)."""
        try:
            return jsonrpc.result(message["id"], self.server.answer(message["method"],
                                                                    params, call))
        except jsonrpc.RpcError as error:
            return error.answer(message["id"])
        except Exception:  # a bug: logged, answered without a traceback
            log.exception("MCP %s failed", message.get("method"))
            return jsonrpc.RpcError(jsonrpc.INTERNAL_ERROR, "internal error: see the "
                                    "server's log").answer(message["id"])
        finally:
            if call.session is not None and message.get("method") == "tools/call":
                self.sessions.finished(call.session, message["id"])

    def streamed(self, message, params, session, version, token):
        """Case 7 with progress: the call runs on a thread; its notifications, then its
        response, are SSE events as they come.  A client that leaves does not stop it
        (a cancel does)."""
        events = queue.Queue()
        call = Call(self, session, version, message["id"], token, events.put)

        def work():
            answer = None
            try:
                answer = self.respond(message, params, call)
            finally:  # whatever ends the thread, the response stream ends
                events.put(("done", answer or jsonrpc.RpcError(
                    jsonrpc.INTERNAL_ERROR, "internal error: see the server's log").answer(
                        message["id"])))
        threading.Thread(target=work, name="mcp-call", daemon=True).start()

        def body():
            while True:
                item = events.get()
                done = isinstance(item, tuple)
                yield sse_event(item[1] if done else item)
                if done:
                    return
        return Response(body(), content_type=SSE)

    # -- DELETE (GET: 405 from the route table) -------------------------------------------

    def delete(self, environ):
        self.check_origin(environ)
        session = environ.get("HTTP_MCP_SESSION_ID")
        if not session:
            raise McpSessionRequired("send the Mcp-Session-Id of the session to end")
        if not self.sessions.end(session):
            raise McpSessionNotFound("no MCP session %.80r" % session)
        return Response(status=204)

    def check_origin(self, environ):
        origin = environ.get("HTTP_ORIGIN")
        if origin and origin.rstrip("/").lower() not in self.allowed_origins | {
                own_origin(environ)}:
            raise Forbidden("the Origin %r may not use /mcp (allowed_origins)" % origin,
                            origin=origin)


def sse_event(message):
    """One SSE event of type ``message`` (what MCP clients read) holding ``message``."""
    return b"event: message\ndata: " + encode_json(message) + b"\n"
