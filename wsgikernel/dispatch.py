"""PathDispatcher: the route table, and the one place that talks WSGI.

``PathDispatcher.match(method, path)`` is pure: it returns ``(route, args)`` or
raises ``RouteNotFound`` / ``MethodNotAllowed`` (with ``Allow``); HEAD falls
back to GET.  ``__call__`` is the funnel every request goes through: match,
guard (auth, before the body is read), parse params into ``environ['params']``,
call the handler; any ``HTTPError`` is rendered as problem+json, and so is any
domain error of the control layer (``control/errors.py``), through the one
table that says which HTTP error each is (``DOMAIN_ERRORS``); any other
exception is logged with its traceback and answered with a bare 500.

Handlers are WSGI callables.  Most are written as functions of ``environ``
returning a dict or a ``Response``; ``endpoint()`` wraps them so that
``render()`` here is the only code that encodes JSON and calls
``start_response``.
"""

import logging
import re
import traceback

from . import errors as http
from . import jsonpolicy, requestid
from .control import errors as domain
from .errors import PROBLEM_JSON, HTTPError, InternalError, MethodNotAllowed, RouteNotFound
from .params import parse_params

log = logging.getLogger("wsgikernel")

JSON_TYPE = "application/json"
_SEGMENT = re.compile(r"\{(\w+)\}")


class Response:
    """What a handler returns when a bare dict (200, JSON) is not enough.

    ``body`` is a JSON-able value, ``bytes``, or an iterable of bytes (streamed,
    no Content-Length).
    """

    __slots__ = ("body", "status", "headers", "content_type")

    def __init__(self, body=None, *, status=200, headers=(), content_type=JSON_TYPE):
        self.body = body
        self.status = status
        self.headers = list(headers)
        self.content_type = content_type


class Route:
    """One (method, pattern) -> handler entry; ``public`` routes skip the guard."""

    def __init__(self, method, pattern, handler, *, public=False):
        self.method = method
        self.pattern = pattern
        self.handler = handler
        self.public = public
        self.arg_names = _SEGMENT.findall(pattern)
        self.regex = re.compile(_compile(pattern))

    @property
    def name(self):
        return getattr(self.handler, "__name__", repr(self.handler))

    def match(self, path):
        found = self.regex.fullmatch(path)
        return None if found is None else found.groupdict()

    def __repr__(self):
        return "<%s %s -> %s>" % (self.method, self.pattern, self.name)


def _compile(pattern):
    """'/envs/{id}/execute' -> '/envs/(?P<id>[^/]+)/execute'."""
    out, pos = [], 0
    for found in _SEGMENT.finditer(pattern):
        out.append(re.escape(pattern[pos:found.start()]))
        out.append("(?P<%s>[^/]+)" % found.group(1))
        pos = found.end()
    out.append(re.escape(pattern[pos:]))
    return "".join(out)


class PathDispatcher:
    """Maps (method, path pattern) to handlers and renders every outcome."""

    def __init__(self, *, max_body, guard=None):
        self.routes = []
        self.max_body = max_body
        self.guard = guard

    def register(self, method, pattern, handler, *, public=False):
        route = Route(method.upper(), pattern, handler, public=public)
        self.routes.append(route)
        return route

    def match(self, method, path):
        """(route, path args) for this request, else RouteNotFound / MethodNotAllowed."""
        allowed = set()
        for want in (method, "GET") if method == "HEAD" else (method,):
            for route in self.routes:
                args = route.match(path)
                if args is None:
                    continue
                if route.method == want:
                    return route, args
                allowed.add(route.method)
        if not allowed:
            raise RouteNotFound(path)
        if "GET" in allowed:
            allowed.add("HEAD")
        allowed.add("OPTIONS")
        if method == "OPTIONS":
            return None, sorted(allowed)
        raise MethodNotAllowed(method, allowed)

    # -- the funnel ----------------------------------------------------------

    def __call__(self, environ, start_response):
        extra = []  # headers every response of this request carries (CORS, no-store)
        environ["wsgikernel.response_headers"] = extra
        try:
            return self._dispatch(environ, start_response, extra)
        except HTTPError as exc:
            return render_error(environ, start_response, exc, extra)
        except domain.ControlError as exc:
            error = http_error(exc)
            if error is None:  # a domain error the table forgot: a bug, like any other
                self.log_unexpected(environ)
                error = InternalError()
            return render_error(environ, start_response, error, extra)
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception:
            self.log_unexpected(environ)
            return render_error(environ, start_response, InternalError(), extra)

    def _dispatch(self, environ, start_response, extra):
        if "wsgikernel.bad_request_id" in environ:  # see telemetry.py
            raise http.InvalidHeader(requestid.HEADER, "expected %s" % requestid.RULE_TEXT)
        method = environ["REQUEST_METHOD"].upper()
        try:
            route, args = self.match(method, request_path(environ))
        except HTTPError:
            # Credentials first: the route table is no oracle for anonymous clients.
            self._check_guard(environ, extra)
            raise
        if route is None:  # OPTIONS: browsers send preflights without credentials
            headers = [("Allow", ", ".join(args))]
            if self.guard is not None:
                headers += self.guard.preflight_headers(environ, args)
            return render(environ, start_response, Response(status=204, headers=headers), extra)
        environ["wsgikernel.route"] = route  # for telemetry.py: a 401 counts under it too
        environ["wsgikernel.path_args"] = args
        if not route.public:
            self._check_guard(environ, extra)
        environ["params"] = parse_params(environ, args, self.max_body,
                                         getattr(route, "raw_body", False))
        return route.handler(environ, start_response)

    def _check_guard(self, environ, extra):
        if self.guard is not None:
            extra.extend(self.guard.check(environ))

    @staticmethod
    def log_unexpected(environ):
        text = traceback.format_exc()
        log.error("unexpected error in %s %s\n%s", environ.get("REQUEST_METHOD"),
                  environ.get("PATH_INFO"), text)
        errors = environ.get("wsgi.errors")
        if errors is not None and not log.handlers and not logging.getLogger().handlers:
            errors.write(text)


# -- domain errors as HTTP errors: the one table ---------------------------------------

DOMAIN_ERRORS = {
    domain.EnvironmentNotFound: lambda e: http.EnvironmentNotFound(e.env_id),
    domain.EnvironmentExists: lambda e: http.EnvironmentExists(e.env_id),
    domain.EnvironmentNotRunning: lambda e: http.EnvironmentNotRunning(e.env_id, e.state),
    domain.ExecutionNotFound: lambda e: http.ExecutionNotFound(e.env_id, e.execution_count),
    domain.ExecutionNotWaiting: lambda e: http.ExecutionNotWaiting(e.env_id,
                                                                   e.execution_count, e.why),
    domain.KernelUnavailable: lambda e: http.KernelUnavailable(e.env_id, e.why),
    domain.KernelQueued: lambda e: http.KernelUnavailable(e.env_id, e.why),
    domain.KernelIncompatible: lambda e: http.KernelIncompatible(e.env_id, e.why),
    # A full queue empties as cells end; an env slot frees only when one is deleted.
    domain.QueueFull: lambda e: http.QuotaExceeded("max_queue", e.limit, retry_after=1),
    domain.QuotaExceeded: lambda e: http.QuotaExceeded(e.name, e.limit, retry_after=5),
    domain.InvalidEnvId: lambda e: http.InvalidParam("id", e.why),
    domain.InvalidLimit: lambda e: http.InvalidParam(e.name, e.why),
    domain.InvalidSandbox: lambda e: http.InvalidParam(e.name, e.why),
    domain.InvalidResources: lambda e: http.InvalidParam("resources", e.why),
    domain.SandboxUnavailable: lambda e: http.SandboxUnavailable(e.why),
    domain.CheckpointNotFound: lambda e: http.CheckpointNotFound(e.env_id, e.name),
    domain.CheckpointConflict: lambda e: http.CheckpointConflict(e.env_id, e.why),
}


def http_error(exc):
    """The HTTPError that domain error ``exc`` is answered with (its class's entry in
    DOMAIN_ERRORS, or its nearest base's); None if the table has none."""
    for cls in type(exc).__mro__:
        build = DOMAIN_ERRORS.get(cls)
        if build is not None:
            return build(exc)
    return None


def request_path(environ):
    """PATH_INFO as text: PEP 3333 decodes it as latin-1, clients mean UTF-8."""
    path = environ.get("PATH_INFO", "") or "/"
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


# -- turning data into WSGI responses (nowhere else) ------------------------

def endpoint(func):
    """Wrap ``func(environ) -> dict | Response`` as a WSGI handler."""
    def handler(environ, start_response):
        return render(environ, start_response, func(environ))
    handler.__name__ = func.__name__
    handler.__qualname__ = func.__qualname__
    handler.__doc__ = func.__doc__
    handler.endpoint = func
    return handler


def status_line(status):
    from http import HTTPStatus
    return "%d %s" % (status, HTTPStatus(status).phrase)


def render(environ, start_response, result, extra=None, exc_info=None):
    """The only place a handler's data becomes status, headers and body."""
    if not isinstance(result, Response):
        result = Response(result)
    headers = list(result.headers)
    if extra is None:
        extra = environ.get("wsgikernel.response_headers", ())
    headers.extend(extra)
    if not any(name.lower() == "cache-control" for name, _ in headers):
        headers.append(("Cache-Control", "no-store"))  # answers hold live session state
    body = result.body
    if body is None:
        chunks = []
    elif isinstance(body, bytes):
        chunks = [body]
    elif isinstance(body, (dict, list)):  # JSON, whatever the declared flavour (+json)
        chunks = [encode_json(body)]
    else:
        chunks = None  # a stream: no Content-Length, the server delimits it
    if result.status != 204 and (body is not None or result.status != 304):
        if result.content_type and body is not None:
            headers.append(("Content-Type", result.content_type))
    if chunks is not None and result.status != 204:
        headers.append(("Content-Length", str(sum(map(len, chunks)))))
    start_response(status_line(result.status), headers, exc_info)
    if environ["REQUEST_METHOD"].upper() == "HEAD":
        close = getattr(body, "close", None)
        if chunks is None and close is not None:
            close()
        return []
    return chunks if chunks is not None else body


def encode_json(value):
    """One JSON body or NDJSON line, under the service's one JSON policy."""
    return jsonpolicy.encode(value) + b"\n"


def render_error(environ, start_response, exc, extra=()):
    """An HTTPError as application/problem+json."""
    response = Response(exc.to_dict(), status=exc.status, headers=exc.headers,
                        content_type=PROBLEM_JSON)
    # No exc_info: no path that gets here has called start_response yet, and uWSGI's
    # start_response re-raises a given exc_info (the answer is then cut off).
    return render(environ, start_response, response, list(extra))
