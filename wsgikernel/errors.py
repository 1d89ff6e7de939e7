"""The service's HTTP errors: one base class, rendered once as RFC 9457 problem+json.

Handlers and the HTTP layer raise these; the control layer below raises its own
domain errors (``control/errors.py``), which ``dispatch.DOMAIN_ERRORS`` maps to
these classes.  ``dispatch.PathDispatcher`` is the only place that turns them
into responses.  Each class carries its status, a stable ``type`` URN and a
title as class attributes; instances carry the detail and the identifiers the
client needs (``env_id``, ``param``...) as keyword fields, so the body is built
in one place: ``to_dict()``.

Anything raised that is neither an ``HTTPError`` nor a mapped domain error is a
bug in the service: the dispatcher logs its traceback and answers a generic
500 without one.
"""

from http import HTTPStatus

PROBLEM_JSON = "application/problem+json"


class HTTPError(Exception):
    """Base of every error the service answers with; subclasses set the class attributes."""

    status = 500
    type = "urn:wsgikernel:internal-error"
    title = "Internal Server Error"

    def __init__(self, detail=None, *, headers=None, **fields):
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers = list(headers or ())
        self.fields = fields

    def to_dict(self):
        """The problem+json body: the RFC 9457 members, then the class's extra fields."""
        body = {"type": self.type, "title": self.title, "status": self.status,
                "detail": self.detail}
        body.update(self.fields)
        return body

    @property
    def status_line(self):
        return "%d %s" % (self.status, HTTPStatus(self.status).phrase)

    def __repr__(self):
        return "<%s %d %r>" % (type(self).__name__, self.status, self.detail)


# 400 ---------------------------------------------------------------------

class BadRequest(HTTPError):
    status = 400
    type = "urn:wsgikernel:bad-request"
    title = "Bad Request"


class MalformedBody(BadRequest):
    type = "urn:wsgikernel:malformed-body"
    title = "Malformed request body"


class InvalidContentLength(BadRequest):
    type = "urn:wsgikernel:invalid-content-length"
    title = "Invalid Content-Length"


class InvalidHeader(BadRequest):
    type = "urn:wsgikernel:invalid-header"
    title = "Invalid header"

    def __init__(self, header, why):
        super().__init__("the %s header is invalid: %s" % (header, why), header=header)


class MissingParam(BadRequest):
    type = "urn:wsgikernel:missing-parameter"
    title = "Missing parameter"

    def __init__(self, name):
        super().__init__("the parameter %r is required" % name, param=name)


# 401, 403 ------------------------------------------------------------------

class Unauthorized(HTTPError):
    status = 401
    type = "urn:wsgikernel:unauthorized"
    title = "Unauthorized"

    def __init__(self, detail):
        super().__init__(detail, headers=[("WWW-Authenticate", 'Bearer realm="wsgikernel"')])


class Forbidden(HTTPError):
    status = 403
    type = "urn:wsgikernel:forbidden"
    title = "Forbidden"


# 404, 405 ------------------------------------------------------------------

class NotFound(HTTPError):
    status = 404
    type = "urn:wsgikernel:not-found"
    title = "Not Found"


class RouteNotFound(NotFound):
    type = "urn:wsgikernel:route-not-found"

    def __init__(self, path):
        super().__init__("no route matches %s" % path, path=path)


class EnvironmentNotFound(NotFound):
    type = "urn:wsgikernel:env-not-found"
    title = "Environment not found"

    def __init__(self, env_id):
        super().__init__("no environment has the id %r" % env_id, env_id=env_id)


class ExecutionNotFound(NotFound):
    type = "urn:wsgikernel:execution-not-found"
    title = "Execution not found"

    def __init__(self, env_id, execution_count):
        super().__init__("environment %r has no execution %s" % (env_id, execution_count),
                         env_id=env_id, execution_count=execution_count)


class CheckpointNotFound(NotFound):
    type = "urn:wsgikernel:checkpoint-not-found"
    title = "Checkpoint not found"

    def __init__(self, env_id, name):
        super().__init__("environment %r has no checkpoint %r: GET /envs/%s/checkpoints "
                         "lists them" % (env_id, name, env_id), env_id=env_id, name=name)


class MethodNotAllowed(HTTPError):
    status = 405
    type = "urn:wsgikernel:method-not-allowed"
    title = "Method Not Allowed"

    def __init__(self, method, allowed):
        allowed = sorted(allowed)
        super().__init__("%s is not allowed here; use %s" % (method, ", ".join(allowed)),
                         headers=[("Allow", ", ".join(allowed))], allowed=allowed)


# 409 -----------------------------------------------------------------------

class Conflict(HTTPError):
    status = 409
    type = "urn:wsgikernel:conflict"
    title = "Conflict"


class EnvironmentExists(Conflict):
    type = "urn:wsgikernel:env-exists"
    title = "Environment already exists"

    def __init__(self, env_id):
        super().__init__("an environment with the id %r already exists" % env_id,
                         env_id=env_id)


class EnvironmentNotRunning(Conflict):
    type = "urn:wsgikernel:env-not-running"
    title = "Environment is not running"

    def __init__(self, env_id, state):
        super().__init__("environment %r is %s: POST /envs/%s/restart to start a fresh kernel"
                         % (env_id, state, env_id), env_id=env_id, state=state)


class CheckpointConflict(Conflict):
    type = "urn:wsgikernel:checkpoint-conflict"
    title = "Checkpoint not possible now"

    def __init__(self, env_id, why):
        super().__init__("environment %r: %s" % (env_id, why), env_id=env_id)


class ExecutionNotWaiting(Conflict):
    type = "urn:wsgikernel:execution-not-waiting"
    title = "Execution not waiting for input"

    def __init__(self, env_id, execution_count, why):
        super().__init__("execution %s of environment %r does not wait for input (%s); "
                         "input is answered only while its status is waiting_input"
                         % (execution_count, env_id, why), env_id=env_id,
                         execution_count=execution_count)


class KernelIncompatible(Conflict):
    type = "urn:wsgikernel:kernel-incompatible"
    title = "Kernel of another version"

    def __init__(self, env_id, why):
        super().__init__("%s: POST /envs/%s/restart to start a kernel of this version"
                         % (why, env_id), env_id=env_id)


# 411, 413, 414, 415, 422, 429, 431 ------------------------------------------------------

class LengthRequired(HTTPError):
    status = 411
    type = "urn:wsgikernel:length-required"
    title = "Length Required"


class PayloadTooLarge(HTTPError):
    status = 413
    type = "urn:wsgikernel:payload-too-large"
    title = "Payload Too Large"

    def __init__(self, length, limit):
        super().__init__("the body is %d bytes; the limit (max_body) is %d" % (length, limit),
                         max_body=limit)


class NotAcceptable(HTTPError):
    status = 406
    type = "urn:wsgikernel:not-acceptable"
    title = "Not Acceptable"


class McpSessionRequired(BadRequest):
    type = "urn:wsgikernel:mcp-session-required"
    title = "MCP session required"


class McpSessionNotFound(NotFound):
    type = "urn:wsgikernel:mcp-session-not-found"
    title = "MCP session not found"


class UnsupportedMediaType(HTTPError):
    status = 415
    type = "urn:wsgikernel:unsupported-media-type"
    title = "Unsupported Media Type"

    def __init__(self, content_type, supported):
        super().__init__("cannot read a %s body; send one of %s"
                         % (content_type, ", ".join(supported)), supported=list(supported))


class InvalidParam(HTTPError):
    status = 422
    type = "urn:wsgikernel:invalid-parameter"
    title = "Invalid parameter"

    def __init__(self, name, why):
        super().__init__("the parameter %r is invalid: %s" % (name, why), param=name)


class QuotaExceeded(HTTPError):
    status = 429
    type = "urn:wsgikernel:quota-exceeded"
    title = "Too Many Requests"

    def __init__(self, name, limit, *, retry_after=1, detail=None):
        super().__init__(detail or "the limit %s=%d is reached" % (name, limit),
                         headers=[("Retry-After", str(retry_after))], quota=name, limit=limit)


class URITooLong(HTTPError):
    status = 414
    type = "urn:wsgikernel:uri-too-long"
    title = "URI Too Long"


class HeadersTooLarge(HTTPError):
    status = 431
    type = "urn:wsgikernel:headers-too-large"
    title = "Request Header Fields Too Large"


# 5xx -----------------------------------------------------------------------

class InternalError(HTTPError):
    """What the client sees of an unexpected exception: no traceback, no message."""

    def __init__(self):
        super().__init__("the service failed to handle this request; its log has the details")


class KernelUnavailable(HTTPError):
    status = 503
    type = "urn:wsgikernel:kernel-unavailable"
    title = "Kernel unavailable"

    def __init__(self, env_id, why):
        super().__init__("the kernel of environment %r is unavailable: %s" % (env_id, why),
                         env_id=env_id, headers=[("Retry-After", "1")])


class SandboxUnavailable(HTTPError):
    status = 503
    type = "urn:wsgikernel:sandbox-unavailable"
    title = "Sandbox unavailable"

    def __init__(self, why):
        super().__init__("a sandboxed environment cannot be created on this server: %s "
                         "(environments with sandbox none still can)" % why)


class NotReady(HTTPError):
    status = 503
    type = "urn:wsgikernel:not-ready"
    title = "Not ready"

    def __init__(self, checks):
        failed = "; ".join("%s: %s" % (name, why) for name, why in checks.items()
                           if why != "ok")
        super().__init__("this server is not ready to serve: %s" % failed, checks=checks,
                         headers=[("Retry-After", "1")])


class VersionNotSupported(HTTPError):
    status = 505
    type = "urn:wsgikernel:http-version-not-supported"
    title = "HTTP Version Not Supported"
