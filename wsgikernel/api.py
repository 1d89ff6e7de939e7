"""REST handlers: service info, environments, executions.

Each handler reads ``environ['params']``, calls the manager and returns data
(a dict, or a ``Response`` for other statuses and headers); none of them talks
WSGI or catches errors: the dispatcher does both.  Links honour SCRIPT_NAME so
the service can be mounted under a prefix.
"""

from urllib.parse import quote

from . import __version__
from .dispatch import PathDispatcher, Response, encode_json
from .errors import HTTPError, InternalError, InvalidParam, KernelUnavailable
from .notebook import build_notebook
from .openapi import build_document
from .protocol import KernelGone
from .params import boolean, count, json_object, optional, require, seconds, text


def base_url(environ):
    """The mount point (SCRIPT_NAME) with no trailing slash."""
    return environ.get("SCRIPT_NAME", "").rstrip("/")


NDJSON = "application/x-ndjson"
HEARTBEAT_SECONDS = 15.0  # proxies cut streams that stay silent longer
MAX_WAIT = 3600           # seconds one request may wait for an execution


class Api:
    def __init__(self, app):
        self.app = app
        self.manager = app.manager
        self.config = app.config

    def service_info(self, environ):
        """Service name, version, environment count and links."""
        base = base_url(environ)
        return {"name": "wsgikernel", "version": __version__,
                "envs": self.manager.count(),
                "links": {"envs": base + "/envs", "openapi": base + "/openapi.json",
                          "health": base + "/healthz", "ui": base + "/ui"}}

    def health(self, environ):
        """Liveness: answers without auth and without touching any kernel."""
        return {"status": "ok"}

    def openapi_document(self, environ):
        """The OpenAPI 3.1 description of every route."""
        return build_document(self.app.routes, base_url(environ), self.config)

    # -- environments --------------------------------------------------------

    def list_environments(self, environ):
        """Every environment with its state."""
        return {"envs": self.manager.list()}

    def create_environment(self, environ):
        """Create an environment (id optional); 201 + Location, 409 if the id is taken."""
        params = environ["params"]
        env_id = optional(params, "id", env_id_param)
        env, _ = self.manager.create(env_id, limits=read_limits(params))
        return created(environ, env)

    def put_environment(self, environ):
        """Create the environment if absent (201), else return it (200): idempotent."""
        params = environ["params"]
        env, was_created = self.manager.create(require(params, "id", env_id_param),
                                               limits=read_limits(params), exist_ok=True)
        return created(environ, env) if was_created else env

    def get_environment(self, environ):
        """One environment."""
        return self.manager.describe(require(environ["params"], "id", env_id_param))

    def delete_environment(self, environ):
        """Stop the kernel and remove the environment and its directory; 204."""
        self.manager.delete(require(environ["params"], "id", env_id_param))
        return Response(status=204)

    def restart_environment(self, environ):
        """A fresh namespace under the same id; session + 1."""
        return self.manager.restart(require(environ["params"], "id", env_id_param))

    def interrupt_environment(self, environ):
        """Interrupt the running cell (KeyboardInterrupt); the namespace survives."""
        return self.manager.interrupt(require(environ["params"], "id", env_id_param))

    def late_output(self, environ):
        """Output that came after its execution's record was final (threads, fd writes)."""
        return {"late_output": self.manager.late_output(
            require(environ["params"], "id", env_id_param))}

    # -- executions ------------------------------------------------------------

    def execute_code(self, environ):
        """Run code; 200 + record when done within the wait, else 202 + Location."""
        params = environ["params"]
        env = require(params, "id", env_id_param)
        request, wait = execution_request(params, self.config)
        if wants_stream(environ, params):
            if request["silent"]:
                raise InvalidParam("stream", "silent executions cannot be streamed")
            return stream_response(self.manager.open_stream(
                env, dict(request, op="execute", stream=True), HEARTBEAT_SECONDS), env)
        record = self.manager.execute(env, request, wait)
        return execution_response(environ, env, record)


    def get_execution(self, environ):
        """One execution's record; long-polls with ``wait``, streams with ``stream=1``."""
        params = environ["params"]
        env = require(params, "id", env_id_param)
        n = require(params, "n", count)
        if wants_stream(environ, params):
            return stream_response(self.manager.open_stream(env, {"op": "attach", "n": n},
                                                            HEARTBEAT_SECONDS), env)
        record = self.manager.execution(env, n, optional(params, "wait", wait_seconds, 0))
        return execution_response(environ, env, record)

    def list_executions(self, environ):
        """Execution records oldest first, from ``since``, at most ``limit``; ``next`` pages."""
        params = environ["params"]
        records, following = self.manager.executions(
            require(params, "id", env_id_param), optional(params, "since", count, 0),
            optional(params, "limit", count, 100) or 100)
        return {"executions": records, "next": following}

    def cancel_execution(self, environ):
        """Drop a queued execution, or interrupt a running one; its record."""
        params = environ["params"]
        return self.manager.cancel(require(params, "id", env_id_param),
                                   require(params, "n", count))

    def export_notebook(self, environ):
        """The history as an nbformat v4 notebook (a download)."""
        env = require(environ["params"], "id", env_id_param)
        self.manager.read(env)  # 404 for an unknown env
        document = build_notebook(env, self.manager.history(env).read())
        return Response(document, content_type="application/x-ipynb+json", headers=[
            ("Content-Disposition", 'attachment; filename="%s.ipynb"' % env)])

    # -- introspection (answered even while a cell runs) ------------------------

    def complete_code(self, environ):
        """Completions at the cursor: matches, cursor_start, cursor_end, metadata."""
        params = environ["params"]
        return self.manager.introspect(require(params, "id", env_id_param), {
            "op": "complete", "code": require(params, "code", text),
            "cursor_pos": optional(params, "cursor_pos", count)})

    def inspect_code(self, environ):
        """What the name at the cursor is: signature, docstring, source (detail_level 1)."""
        params = environ["params"]
        detail = optional(params, "detail_level", count, 0)
        if detail not in (0, 1):
            raise InvalidParam("detail_level", "must be 0 or 1")
        return self.manager.introspect(require(params, "id", env_id_param), {
            "op": "inspect", "code": require(params, "code", text),
            "cursor_pos": optional(params, "cursor_pos", count), "detail_level": detail})

    def is_complete_code(self, environ):
        """Whether the code is complete, incomplete (with the next indent) or invalid."""
        params = environ["params"]
        return self.manager.introspect(require(params, "id", env_id_param), {
            "op": "is_complete", "code": require(params, "code", text)})

    def list_variables(self, environ):
        """The env's variables: name, type, a bounded repr, len where cheap."""
        params = environ["params"]
        return self.manager.introspect(require(params, "id", env_id_param), {
            "op": "variables", "all": optional(params, "all", boolean, False)})


def wait_seconds(value):
    """A long-poll wait: seconds, at most MAX_WAIT (a proxy would cut a longer one)."""
    number = seconds(value)
    if number > MAX_WAIT:
        raise ValueError("at most %d seconds; poll again for longer" % MAX_WAIT)
    return number


def env_id_param(value):
    from .params import env_id
    return env_id(value)


def read_limits(params):
    from .config import LIMIT_KEYS, check_limit, size, seconds as config_seconds
    parsers = {"memory_limit": size, "cpu_limit": config_seconds, "file_size_limit": size,
               "open_files_limit": count}
    limits = {key: optional(params, key, parsers[key]) for key in LIMIT_KEYS}
    for key, value in limits.items():
        try:
            check_limit(key, value)
        except ValueError as exc:
            raise InvalidParam(key, str(exc)) from None
    return limits


def execution_request(params, config):
    """(request for the kernel, seconds to wait or None) from the execute parameters."""
    silent = optional(params, "silent", boolean, False)
    timeout = optional(params, "timeout", seconds)
    if timeout is not None and config.max_timeout is not None and timeout > config.max_timeout:
        raise InvalidParam("timeout", "the server allows at most %g s (max_timeout)"
                           % config.max_timeout)
    wait = optional(params, "wait", wait_seconds)
    if silent and (wait is not None or optional(params, "stream", boolean, False)):
        raise InvalidParam("silent", "silent executions are synchronous: "
                                     "do not combine them with wait or stream")
    request = {"code": require(params, "code", text), "silent": silent,
               "store_history": optional(params, "store_history", boolean, not silent),
               "user_expressions": optional(params, "user_expressions", json_object, {}),
               "stdin": optional(params, "stdin", text, ""), "timeout": timeout,
               "stop_on_error": optional(params, "stop_on_error", boolean, False)}
    if silent:
        return request, None
    return request, config.default_wait if wait is None else wait


def wants_stream(environ, params):
    return (optional(params, "stream", boolean, False)
            or NDJSON in environ.get("HTTP_ACCEPT", ""))


def stream_response(events, env):
    """NDJSON: one event per line, flushed as it happens; heartbeats fill silences.

    The status line is sent before the first event, so a failure after that
    cannot become an HTTP error: the stream then ends with one
    ``{"event": "error", "problem": {...}}`` line carrying the problem object
    the error would have been, and a client reading line by line always sees a
    well-formed last line (the ``record`` or that ``error``).
    """
    def lines():
        try:
            last = None
            for event in events:
                if event is None:
                    event = {"event": "heartbeat"}
                else:
                    event.pop("ok", None)
                last = event.get("event")
                yield encode_json(event)
            if last != "record":
                yield stream_error(KernelUnavailable(env, "its stream ended before the record"))
        except GeneratorExit:
            raise  # the client left: the execution goes on without it
        except HTTPError as exc:
            yield stream_error(exc)
        except KernelGone:
            yield stream_error(KernelUnavailable(env, "it stopped answering during the stream"))
        except Exception:
            PathDispatcher.log_unexpected({"PATH_INFO": "stream of %s" % env})
            yield stream_error(InternalError())
        finally:
            events.close()
    return Response(lines(), content_type=NDJSON)


def stream_error(exc):
    """The last line of a stream that failed after it started."""
    problem = exc.to_dict()
    return encode_json({"event": "error", "detail": problem["detail"], "problem": problem})


def execution_url(environ, env, n):
    return "%s/envs/%s/executions/%s" % (base_url(environ), quote(env), n)


def created(environ, env):
    location = "%s/envs/%s" % (base_url(environ), quote(env["id"]))
    return Response(env, status=201, headers=[("Location", location)])


def execution_response(environ, env, record):
    if record["status"] in ("queued", "running"):
        return Response(record, status=202, headers=[
            ("Location", execution_url(environ, env, record["execution_count"]))])
    return record
