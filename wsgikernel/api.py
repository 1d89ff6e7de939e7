"""REST handlers: service info, environments, executions.

Each handler reads ``environ['params']``, calls the manager and returns data
(a dict, or a ``Response`` for other statuses and headers); none of them talks
WSGI or catches errors: the dispatcher does both.  Links honour SCRIPT_NAME so
the service can be mounted under a prefix.
"""

from urllib.parse import quote

from . import __version__
from .config import MIN_MEMORY_LIMIT
from .dispatch import Response
from .errors import InvalidParam
from .openapi import build_document
from .params import boolean, count, json_object, optional, require, seconds, text


def base_url(environ):
    """The mount point (SCRIPT_NAME) with no trailing slash."""
    return environ.get("SCRIPT_NAME", "").rstrip("/")


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
        return build_document(self.app.routes, base_url(environ))

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

    # -- executions ------------------------------------------------------------

    def execute_code(self, environ):
        """Run code; 200 + record when done within the wait, else 202 + Location."""
        params = environ["params"]
        env = require(params, "id", env_id_param)
        request, wait = execution_request(params, self.config)
        record = self.manager.execute(env, request, wait)
        return execution_response(environ, env, record)


def env_id_param(value):
    from .params import env_id
    return env_id(value)


def read_limits(params):
    from .config import LIMIT_KEYS, size, seconds as config_seconds
    parsers = {"memory_limit": size, "cpu_limit": config_seconds, "file_size_limit": size,
               "open_files_limit": count}
    limits = {key: optional(params, key, parsers[key]) for key in LIMIT_KEYS}
    memory = limits.get("memory_limit")
    if memory is not None and memory < MIN_MEMORY_LIMIT:
        raise InvalidParam("memory_limit", "must be at least 256MiB")
    return limits


def execution_request(params, config):
    """(request for the kernel, seconds to wait or None) from the execute parameters."""
    silent = optional(params, "silent", boolean, False)
    timeout = optional(params, "timeout", seconds)
    if timeout is not None and config.max_timeout is not None and timeout > config.max_timeout:
        raise InvalidParam("timeout", "the server allows at most %g s (max_timeout)"
                           % config.max_timeout)
    wait = optional(params, "wait", seconds)
    if silent and (wait is not None or optional(params, "stream", boolean, False)):
        raise InvalidParam("silent", "silent executions are synchronous: "
                                     "do not combine them with wait or stream")
    request = {"code": require(params, "code", text), "silent": silent,
               "store_history": optional(params, "store_history", boolean, not silent),
               "user_expressions": optional(params, "user_expressions", json_object, {}),
               "stdin": optional(params, "stdin", text, ""), "timeout": timeout}
    if silent:
        return request, None
    return request, config.default_wait if wait is None else wait


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
