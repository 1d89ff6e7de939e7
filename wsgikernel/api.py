"""REST handlers: service info, environments, executions.

Each handler reads ``environ['params']`` -- the parameters its route declares
in routes.py, already validated and converted, defaults filled in -- calls the
manager and returns data (a dict, or a ``Response`` for other statuses and
headers); none of them talks WSGI or catches errors: the dispatcher does both.
Links honour SCRIPT_NAME so the service can be mounted under a prefix.
"""

from urllib.parse import quote

from . import __version__
from .control.errors import ControlError
from .dispatch import PathDispatcher, Response, encode_json, http_error
from .config import LIMIT_KEYS
from .errors import (HTTPError, InternalError, InvalidParam, KernelUnavailable, NotReady,
                     RouteNotFound)
from .metrics.scrape import CONTENT_TYPE, Scraper
from .notebook import build_notebook
from .openapi import build_document


def base_url(environ):
    """The mount point (SCRIPT_NAME) with no trailing slash."""
    return environ.get("SCRIPT_NAME", "").rstrip("/")


NDJSON = "application/x-ndjson"
HEARTBEAT_SECONDS = 15.0  # proxies cut streams that stay silent longer
DEFAULT_PAGE = 100        # execution records per page when ``limit`` is absent or 0


class Api:
    def __init__(self, app):
        self.app = app
        self.manager = app.manager
        self.config = app.config
        self.scraper = Scraper(self.manager, self.manager.counts)

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

    def readiness(self, environ):
        """Readiness: the state dir takes writes and the kernel pool has started; 503
        with the checks that failed otherwise."""
        checks = self.manager.readiness()
        if any(why != "ok" for why in checks.values()):
            raise NotReady(checks)
        return {"status": "ready", "checks": checks}

    def metrics(self, environ):
        """Counts and gauges in the Prometheus text format (docs/operations.md)."""
        if not self.config.metrics:  # as if there were no such route
            raise RouteNotFound(environ.get("PATH_INFO", "/metrics"))
        return Response(self.scraper.scrape(), content_type=CONTENT_TYPE)

    def openapi_document(self, environ):
        """The OpenAPI 3.1 description of every route."""
        return build_document([route.operation for route in self.app.routes], base_url(environ))

    # -- environments --------------------------------------------------------

    def list_environments(self, environ):
        """Every environment with its state."""
        return {"envs": self.manager.list()}

    def create_environment(self, environ):
        """Create an environment (id optional); 201 + Location, 409 if the id is taken."""
        params = environ["params"]
        env, _ = self.manager.create(params["id"], limits=read_limits(params),
                                     **read_sandbox(params))
        return created(environ, env)

    def put_environment(self, environ):
        """Create the environment if absent (201), else return it (200): idempotent."""
        params = environ["params"]
        env, was_created = self.manager.create(params["id"], limits=read_limits(params),
                                               exist_ok=True, **read_sandbox(params))
        return created(environ, env) if was_created else env

    def get_environment(self, environ):
        """One environment."""
        return self.manager.describe(environ["params"]["id"])

    def delete_environment(self, environ):
        """Stop the kernel and remove the environment and its directory; 204."""
        self.manager.delete(environ["params"]["id"])
        return Response(status=204)

    def restart_environment(self, environ):
        """A fresh namespace under the same id; session + 1."""
        return self.manager.restart(environ["params"]["id"])

    def interrupt_environment(self, environ):
        """Interrupt the running cell (KeyboardInterrupt); the namespace survives."""
        return self.manager.interrupt(environ["params"]["id"])

    # -- checkpoints -------------------------------------------------------------

    def create_checkpoint(self, environ):
        """Park a copy of the namespace as the last cell left it; 201 + Location."""
        params = environ["params"]
        env = params["id"]
        checkpoint = self.manager.take_checkpoint(env, params["name"], params["force"])
        location = "%s/envs/%s/checkpoints/%s" % (base_url(environ), quote(env),
                                                  quote(checkpoint["name"]))
        return Response(checkpoint, status=201, headers=[("Location", location)])

    def list_checkpoints(self, environ):
        """The env's checkpoints, oldest first, with the memory each pins."""
        return self.manager.list_checkpoints(environ["params"]["id"])

    def delete_checkpoint(self, environ):
        """Drop a checkpoint (its process ends)."""
        params = environ["params"]
        self.manager.drop_checkpoint(params["id"], params["name"])
        return Response(status=204)

    def restore_checkpoint(self, environ):
        """Make the namespace the checkpoint's again (it stays for another restore)."""
        params = environ["params"]
        return self.manager.restore_checkpoint(params["id"], params["name"])

    def fork_environment(self, environ):
        """A new env with a copy of this one's namespace; 201 + Location (202 while it
        waits for the source's running cell)."""
        params = environ["params"]
        wait = self.config.default_wait if params["wait"] is None else params["wait"]
        env, done = self.manager.fork(params["source"], params["id"], params["force"], wait)
        response = created(environ, env)
        if not done:
            response.status = 202
        return response

    def undo_cell(self, environ):
        """Go back to the state before the last cell (auto_checkpoints); again: one more."""
        return self.manager.restore_checkpoint(environ["params"]["id"], undo=True)

    def late_output(self, environ):
        """Output that came after its execution's record was final (threads, fd writes)."""
        return {"late_output": self.manager.late_output(environ["params"]["id"])}

    # -- executions ------------------------------------------------------------

    def execute_code(self, environ):
        """Run code; 200 + record when done within the wait, else 202 + Location."""
        params = environ["params"]
        env, request = params["id"], execution_request(params)
        if wants_stream(environ, params):
            if request["silent"]:
                raise InvalidParam("stream", "silent executions cannot be streamed")
            return stream_response(self.manager.open_stream(
                env, "execute", request, HEARTBEAT_SECONDS), env)
        if request["silent"]:
            wait = None  # synchronous: no default_wait, no 202
        else:
            wait = self.config.default_wait if params["wait"] is None else params["wait"]
        return execution_response(environ, env, self.manager.execute(env, request, wait))

    def get_execution(self, environ):
        """One execution's record; long-polls with ``wait``, streams with ``stream=1``."""
        params = environ["params"]
        env, n = params["id"], params["n"]
        if wants_stream(environ, params):
            return stream_response(self.manager.open_stream(env, "attach", {"n": n},
                                                            HEARTBEAT_SECONDS), env)
        record = self.manager.execution(env, n, params["wait"])
        return execution_response(environ, env, record)

    def list_executions(self, environ):
        """Execution records oldest first, from ``since``, at most ``limit``; ``next`` pages."""
        params = environ["params"]
        records, following = self.manager.executions(params["id"], params["since"],
                                                     params["limit"] or DEFAULT_PAGE)
        return {"executions": records, "next": following}

    def cancel_execution(self, environ):
        """Drop a queued execution, or interrupt a running one; its record."""
        params = environ["params"]
        return self.manager.cancel(params["id"], params["n"])

    def answer_input(self, environ):
        """The line an execution that is waiting_input waits for; its record."""
        params = environ["params"]
        value = params["value"]
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
        if "\n" in value or "\r" in value:
            raise InvalidParam("value", "one line: input() never returns a newline")
        return self.manager.answer_input(params["id"], params["n"], value)

    def end_input(self, environ):
        """End of input for an execution that is waiting_input (its input() raises
        EOFError, as after Ctrl-D at a terminal); its record."""
        params = environ["params"]
        return self.manager.answer_input(params["id"], params["n"], None)

    # -- MCP -----------------------------------------------------------------------

    def mcp_post(self, environ):
        """One MCP message (JSON-RPC over Streamable HTTP): docs/mcp.md."""
        return self.mcp_endpoint(environ).post(environ)

    def mcp_delete(self, environ):
        """End an MCP session (its Mcp-Session-Id)."""
        return self.mcp_endpoint(environ).delete(environ)

    def mcp_endpoint(self, environ):
        if self.app.mcp is None:  # config mcp = false: as if there were no such route
            raise RouteNotFound(environ.get("PATH_INFO", "/mcp"))
        return self.app.mcp

    def export_notebook(self, environ):
        """The history as an nbformat v4 notebook (a download)."""
        env = environ["params"]["id"]
        record = self.manager.read(env)  # 404 for an unknown env
        document = build_notebook(env, self.manager.history(env).read(),
                                  record.get("forked_from"))
        return Response(document, content_type="application/x-ipynb+json", headers=[
            ("Content-Disposition", 'attachment; filename="%s.ipynb"' % env)])

    # -- introspection (answered even while a cell runs) ------------------------

    def complete_code(self, environ):
        """Completions at the cursor: matches, cursor_start, cursor_end, metadata."""
        return self.introspect(environ, "complete", "code", "cursor_pos")

    def inspect_code(self, environ):
        """What the name at the cursor is: signature, docstring, source (detail_level 1)."""
        return self.introspect(environ, "inspect", "code", "cursor_pos", "detail_level")

    def is_complete_code(self, environ):
        """Whether the code is complete, incomplete (with the next indent) or invalid."""
        return self.introspect(environ, "is_complete", "code")

    def list_variables(self, environ):
        """The env's variables: name, type, a bounded repr, len where cheap."""
        return self.introspect(environ, "variables", "all")

    def introspect(self, environ, kind, *names):
        params = environ["params"]
        return self.manager.introspect(params["id"], kind, {name: params[name] for name in names})


def read_limits(params):
    """The per-env limits of a create request (None: the server's)."""
    return {key: params[key] for key in LIMIT_KEYS}


def read_sandbox(params):
    """The per-env choices of a create request (None: the server's)."""
    return {"sandbox": params["sandbox"], "sandbox_network": params["sandbox_network"],
            "resources": params["resources"], "auto_checkpoints": params["auto_checkpoints"]}


def execution_request(params):
    """The request for the kernel from the (validated) execute parameters."""
    silent = params["silent"]
    store_history = params["store_history"]
    return {"code": params["code"], "silent": silent,
            "store_history": not silent if store_history is None else store_history,
            "user_expressions": params["user_expressions"], "stdin": params["stdin"],
            "allow_stdin": params["allow_stdin"],
            "timeout": params["timeout"], "stop_on_error": params["stop_on_error"],
            "figure_format": params["figure_format"]}


def wants_stream(environ, params):
    return params["stream"] or NDJSON in environ.get("HTTP_ACCEPT", "")


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
                last = event.get("event")
                yield encode_json(event)
            if last != "record":
                yield stream_error(KernelUnavailable(env, "its stream ended before the record"))
        except GeneratorExit:
            raise  # the client left: the execution goes on without it
        except HTTPError as exc:
            yield stream_error(exc)
        except ControlError as exc:
            yield stream_error(http_error(exc) or InternalError())
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
    environ["wsgikernel.execution_count"] = record.get("execution_count")  # for the log
    if record["status"] in ("queued", "running", "waiting_input"):
        return Response(record, status=202, headers=[
            ("Location", execution_url(environ, env, record["execution_count"]))])
    return record
