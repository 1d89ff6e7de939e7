"""The route table: every route with its parameters, answers and errors, declared once.

Each ``Operation`` names its method, path pattern and handler, and declares
its parameters: where each comes from (path, query or body), the converter
that validates it (which also carries the JSON schema of what it accepts, see
converters.py), whether it is required and its default.  The same entry is used
three ways, so what runs and what is published cannot disagree:

* ``app.make_app`` registers it with the dispatcher;
* ``Operation.read`` validates a request's merged parameters before the handler
  runs (400 missing, 422 invalid) and hands the handler the converted values in
  ``environ['params']``;
* ``openapi.build_document`` describes it: parameters, request bodies (JSON,
  form and multipart), responses, and errors — the 400 and 422 of parameter
  validation are added from the declarations.

Some converters depend on the server's configuration (``code`` is bounded by
``max_body``, ``timeout`` by ``max_timeout``, a limit by the server's own):
``Configured`` defers them until ``bind(config)``.
"""

import functools

from . import config as settings
from .converters import (MAX_SECONDS, Anything, Boolean, Choice, Count, Pattern, Seconds, Size,
                         FalseOnly, Resources, Strings, Text, Word)
from .errors import InvalidParam
from .params import ENV_ID_RULE, ENV_ID_RULE_TEXT, optional, require

PATH, QUERY, BODY = "path", "query", "body"
MAX_WAIT = 3600        # seconds one request may wait; longer waits are a series of polls
MAX_PAGE = 10000       # execution records in one page


class Configured:
    """A converter built from the server's configuration at ``bind()``."""

    def __init__(self, build):
        self.build = build


class Param:
    """One declared parameter of an operation."""

    def __init__(self, name, where, converter, *, required=False, default=None,
                 description=None, example=None):
        self.name, self.where, self.converter = name, where, converter
        self.required = required or where == PATH
        self.default, self.description, self.example = default, description, example

    def bind(self, config):
        if not isinstance(self.converter, Configured):
            return self
        bound = Param(self.name, self.where, self.converter.build(config),
                      required=self.required, default=self.default,
                      description=self.description, example=self.example)
        return bound

    def read(self, params):
        if self.required:
            return require(params, self.name, self.converter)
        return optional(params, self.name, self.converter, self.default)

    @property
    def checked(self):
        """False for parameters the handler checks itself (the original API's, ui files)."""
        return not isinstance(self.converter, Anything)

    def __repr__(self):
        return "<Param %s in %s>" % (self.name, self.where)


class Conflict:
    """When ``when`` is given (true), each of ``forbids`` must not be (422 naming ``when``)."""

    def __init__(self, when, forbids, why):
        self.when, self.forbids, self.why = when, forbids, why


def given(value):
    return value is not None and value is not False


class Operation:
    """One route: method, pattern, handler name, parameters, answers, errors."""

    def __init__(self, method, pattern, name, *, tag, params=(), responses=None, headers=None,
                 errors=(), public=False, body_required=False, example=None, conflicts=(),
                 raw_body=False):
        self.method, self.pattern, self.name, self.tag = method, pattern, name, tag
        self.params = tuple(params)
        self.responses = responses or {"200": {"application/json": {"type": "object"}}}
        self.headers = headers or {}
        self.errors = tuple(str(status) for status in errors)
        self.public, self.body_required, self.example = public, body_required, example
        self.conflicts = tuple(conflicts)
        self.raw_body = raw_body  # the handler reads the body itself (JSON-RPC)
        self.summary = None  # the handler's docstring, set when the app registers it

    def bind(self, config):
        """A copy whose configured converters are built from ``config``."""
        bound = Operation.__new__(Operation)
        bound.__dict__.update(self.__dict__)
        bound.params = tuple(param.bind(config) for param in self.params)
        if isinstance(self.public, str):  # the name of the setting that makes it public
            bound.public = bool(getattr(config, self.public))
        return bound

    def where(self, where):
        return [param for param in self.params if param.where == where]

    def read(self, params):
        """The declared parameters, converted (defaults filled in); MissingParam/InvalidParam."""
        values = {param.name: param.read(params) for param in self.params}
        for conflict in self.conflicts:
            if given(values[conflict.when]) and any(given(values[name])
                                                    for name in conflict.forbids):
                raise InvalidParam(conflict.when, conflict.why)
        return values

    def wrap(self, func):
        """``func(environ)``, called with the validated parameters in environ['params']."""
        @functools.wraps(func)
        def validated(environ):
            environ["params"] = self.read(environ["params"])
            return func(environ)
        self.summary = (func.__doc__ or self.name).strip().splitlines()[0]
        return validated

    def __repr__(self):
        return "<%s %s -> %s>" % (self.method, self.pattern, self.name)


# -- parameters ---------------------------------------------------------------------

ENV_ID = Pattern(ENV_ID_RULE, ENV_ID_RULE_TEXT)
ENV = Param("id", PATH, ENV_ID, description="the environment id", example="demo")
EXECUTION = Param("n", PATH, Count(1), description="the execution_count", example=1)
CODE = Configured(lambda config: Text(max_length=config.max_body))
CURSOR = Param("cursor_pos", BODY, Count(), description="character offset (default: the end)")
WAIT = Seconds(MAX_WAIT)
BOOLEAN = Boolean()
CHECKPOINT_NAME = Pattern(ENV_ID_RULE, "a checkpoint name is " + ENV_ID_RULE_TEXT)
CHECKPOINT = Param("name", PATH, CHECKPOINT_NAME, description="the checkpoint's name",
                   example="before-cleanup")


def limit_converter(limit, config):
    """A limit's converter: its minimum, and the server's own limit (else RLIMIT_MAX) on top."""
    ceiling = getattr(config, limit.key, None)
    ceiling = limit.maximum if ceiling is None else ceiling
    if limit.parse is settings.size:
        return Size(limit.minimum, ceiling, limit.parse)
    if limit.parse is settings.seconds:
        return Seconds(ceiling, lo=limit.minimum)
    return Count(limit.minimum, ceiling)


LIMIT_PARAMS = tuple(
    Param(limit.key, BODY, Configured(functools.partial(limit_converter, limit)),
          description=limit.help + "; within the server's own limit")
    for limit in settings.LIMITS)


def sandbox_converter(config):  # a per-env value may tighten the server's, never loosen it
    return Word("bwrap") if config.sandbox == "bwrap" else Word("none", "bwrap")


def network_converter(config):
    if config.sandbox_network == "off":
        return FalseOnly("this server gives sandboxes no network (sandbox_network=off)")
    return BOOLEAN


def resources_converter(config):
    if config.launcher == "slurm":
        return Resources()
    return Resources(refused="resources apply to kernels run as Slurm jobs (launcher "
                     "slurm); this server runs them on its own host")


SANDBOX_PARAMS = (
    Param("sandbox", BODY, Configured(sandbox_converter), description="none: user code runs "
          "as the server's user; bwrap: inside bubblewrap (its work dir only, no network, "
          "no view of other envs). Default: the server's; it may only be tightened"),
    Param("sandbox_network", BODY, Configured(network_converter), description="network "
          "inside the bwrap sandbox (giving it asks for a sandbox); true only where the "
          "server's sandbox_network is per-env or on"),
)
def auto_checkpoints_converter(config):  # at most what the server keeps per env
    return Count(0, config.max_checkpoints)


CREATE_PARAMS = LIMIT_PARAMS + SANDBOX_PARAMS + (
    Param("auto_checkpoints", BODY, Configured(auto_checkpoints_converter), description=(
        "keep a checkpoint of the state before each of the last N cells, for undo "
        "(default: the server's auto_checkpoints; at most its max_checkpoints)")),
    Param("resources", BODY, Configured(resources_converter), description="launcher slurm "
          "only: the job's cpus, mem, gpus, time and partition (sbatch's --cpus-per-task, "
          "--mem, --gres=gpu:N, --time, --partition)"),
)


def timeout_converter(config):
    return Seconds(MAX_SECONDS if config.max_timeout is None else config.max_timeout)


EXECUTE_PARAMS = (
    ENV,
    Param("code", BODY, CODE, required=True, description="Python source, run as one cell"),
    Param("silent", BODY, BOOLEAN, default=False,
          description="no result, no history; synchronous (not with wait or stream)"),
    Param("store_history", BODY, BOOLEAN, description="default: not silent"),
    Param("user_expressions", BODY, Strings(), default={},
          description="name -> expression evaluated after the cell"),
    Param("stdin", BODY, Text(), default="", description="text fed to input()"),
    Param("allow_stdin", BODY, BOOLEAN, default=False,
          description="when input() or getpass() finds no line left in stdin, wait for one: "
                      "the execution is waiting_input until POST .../executions/{n}/input"),
    Param("timeout", BODY, Configured(timeout_converter),
          description="seconds before the cell is interrupted (then killed after kill_grace); "
                      "at most the server's max_timeout"),
    Param("wait", BODY, WAIT,
          description="seconds to wait for the end before answering 202 (0: at once; "
                      "default: the server's default_wait)"),
    Param("stream", BODY, BOOLEAN, default=False,
          description="answer application/x-ndjson events as they happen"),
    Param("figure_format", BODY, Word("png", "svg"), description="how matplotlib's "
          "figures are shown (default png; none when the server's inline_figures is off)"),
    Param("stop_on_error", BODY, BOOLEAN, default=False,
          description="if this cell ends with status error, the executions queued behind it "
                      "end aborted (reason previous_error) without running"),
)
SILENT_IS_SYNCHRONOUS = Conflict("silent", ("wait", "stream"), "silent executions are "
                                 "synchronous: do not combine them with wait or stream")

# -- answers ------------------------------------------------------------------------

JSON, NDJSON = "application/json", "application/x-ndjson"
LOCATION = {"Location": {"required": True, "description": "URL of the new resource",
                         "schema": {"type": "string"}}}
POLL_HERE = {"Location": dict(LOCATION["Location"], description="where to poll the record")}
RECORD_OR_STREAM = {JSON: "ExecutionRecord", NDJSON: "StreamEvent"}
METRICS_TYPE = "text/plain"  # Prometheus's text exposition format, version 0.0.4
UI_TYPES = ("text/html", "text/css", "text/javascript", "application/javascript",
            "application/json", "image/svg+xml", "image/png", "image/x-icon", "text/plain")
ENV_ANSWER = {"200": "Env"}
ANY_ID = Param("id", BODY, Anything(),
               description="the environment id (an invalid or missing one is answered 200 "
                           "with an error key)")


def env_route(method, suffix, name, tag="environments", errors=(404, 503), **kwargs):
    kwargs.setdefault("params", (ENV,))
    kwargs.setdefault("responses", ENV_ANSWER)
    return Operation(method, "/envs/{id}" + suffix, name, tag=tag, errors=errors, **kwargs)


def introspection(suffix, name, answer, *params, example):
    return env_route("POST", suffix, name, tag="introspection", errors=(404, 409, 503),
                     params=(ENV, Param("code", BODY, CODE, required=True,
                                        description="the code so far")) + params,
                     responses={"200": answer}, body_required=True, example=example)


ROUTES = (
    Operation("GET", "/", "service_info", tag="service", responses={"200": "ServiceInfo"}),
    Operation("GET", "/healthz", "health", tag="service", public=True,
              responses={"200": "Health"}),
    Operation("GET", "/readyz", "readiness", tag="service", public=True, errors=(503,),
              responses={"200": "Ready"}),
    Operation("GET", "/metrics", "metrics", tag="service", public="metrics_public",
              responses={"200": {METRICS_TYPE: {"type": "string"}}}),
    Operation("GET", "/openapi.json", "openapi_document", tag="service"),
    Operation("GET", "/ui", "ui_page", tag="console", public=True,
              responses={"200": {"text/html": {"type": "string"}}}),
    Operation("GET", "/ui/{name}", "ui_file", tag="console", public=True, errors=(404,),
              params=(Param("name", PATH, Anything(), example="style.css",
                            description="a file of the console (anything else: 404)"),),
              responses={"200": {media: {"type": "string"} for media in UI_TYPES}}),
    Operation("GET", "/envs", "list_environments", tag="environments",
              responses={"200": "EnvList"}),
    Operation("POST", "/envs", "create_environment", tag="environments",
              params=(Param("id", BODY, ENV_ID, description="generated if absent"),)
              + CREATE_PARAMS, responses={"201": "Env"}, headers={"201": LOCATION},
              errors=(409, 429, 503), example={"id": "demo"}),
    env_route("GET", "", "get_environment", errors=(404,)),
    env_route("PUT", "", "put_environment", errors=(404, 429, 503),
              params=(ENV,) + CREATE_PARAMS, responses={"200": "Env", "201": "Env"},
              headers={"201": LOCATION}, example={}),
    env_route("DELETE", "", "delete_environment", responses={"204": None}),
    env_route("POST", "/restart", "restart_environment", errors=(404, 409, 503)),
    env_route("POST", "/interrupt", "interrupt_environment", errors=(404, 409, 503)),
    env_route("POST", "/checkpoints", "create_checkpoint", tag="checkpoints",
              errors=(404, 409, 503), responses={"201": "Checkpoint"},
              headers={"201": LOCATION}, example={"name": "before-cleanup"},
              params=(ENV, Param("name", BODY, CHECKPOINT_NAME, description="generated "
                                 "(checkpoint-N) if absent"),
                      Param("force", BODY, BOOLEAN, default=False, description="take it "
                            "although threads a cell started still run (the copy has "
                            "none of them)"))),
    env_route("GET", "/checkpoints", "list_checkpoints", tag="checkpoints",
              errors=(404, 409, 503), responses={"200": "CheckpointList"}),
    env_route("DELETE", "/checkpoints/{name}", "delete_checkpoint", tag="checkpoints",
              errors=(404, 409, 503), params=(ENV, CHECKPOINT), responses={"204": None}),
    env_route("POST", "/checkpoints/{name}/restore", "restore_checkpoint", tag="checkpoints",
              errors=(404, 409, 503), params=(ENV, CHECKPOINT)),
    env_route("POST", "/undo", "undo_cell", tag="checkpoints", errors=(404, 409, 503)),
    # {source}, not {id}: the body's ``id`` names the new env, as a create's does.
    Operation("POST", "/envs/{source}/fork", "fork_environment", tag="checkpoints",
              errors=(404, 409, 429, 503), responses={"201": "Env", "202": "Env"},
              headers={"201": LOCATION, "202": LOCATION}, example={"id": "branch-2"},
              params=(Param("source", PATH, ENV_ID, description="the env to fork",
                            example="demo"),
                      Param("id", BODY, ENV_ID, description="the new env's id (generated "
                            "if absent)"),
                      Param("force", BODY, BOOLEAN, default=False, description="fork "
                            "although threads a cell started still run"),
                      Param("wait", BODY, WAIT, description="behind a running cell: "
                            "seconds to wait for the fork before answering 202 (default: "
                            "the server's default_wait)"))),
    env_route("GET", "/late_output", "late_output", tag="executions",
              responses={"200": "LateOutput"}),
    env_route("POST", "/execute", "execute_code", tag="executions",
              errors=(404, 409, 429, 503), params=EXECUTE_PARAMS,
              conflicts=(SILENT_IS_SYNCHRONOUS,), body_required=True,
              responses={"200": RECORD_OR_STREAM, "202": "ExecutionRecord"},
              headers={"202": POLL_HERE}, example={"code": "print('hello')\nx = 21\nx * 2"}),
    env_route("GET", "/executions", "list_executions", tag="executions", errors=(404,),
              params=(ENV, Param("since", QUERY, Count(), default=0,
                                 description="the first execution_count to list"),
                      Param("limit", QUERY, Count(0, MAX_PAGE), default=100,
                            description="page size (default 100; 0 means the default)")),
              responses={"200": "ExecutionPage"}),
    env_route("GET", "/executions/{n}", "get_execution", tag="executions",
              errors=(404, 409, 503),
              params=(ENV, EXECUTION,
                      Param("wait", QUERY, WAIT, default=0,
                            description="long-poll up to this many seconds"),
                      Param("stream", QUERY, BOOLEAN, default=False,
                            description="follow it as application/x-ndjson")),
              responses={"200": RECORD_OR_STREAM, "202": "ExecutionRecord"},
              headers={"202": {"Location": dict(LOCATION["Location"],
                                                description="this URL: poll it again")}}),
    env_route("POST", "/executions/{n}/cancel", "cancel_execution", tag="executions",
              errors=(404, 409, 503), params=(ENV, EXECUTION),
              responses={"200": "ExecutionRecord"}),
    env_route("POST", "/executions/{n}/input", "answer_input", tag="executions",
              errors=(404, 409, 503), body_required=True, example={"value": "Ada"},
              params=(ENV, EXECUTION,
                      Param("value", BODY, Text(), required=True, description="the line "
                            "input() returns (one line; a final newline is dropped)")),
              responses={"200": "ExecutionRecord"}),
    env_route("POST", "/executions/{n}/eof", "end_input", tag="executions",
              errors=(404, 409, 503), params=(ENV, EXECUTION),
              responses={"200": "ExecutionRecord"}),
    env_route("GET", "/notebook", "export_notebook", tag="executions", errors=(404,),
              responses={"200": {"application/x-ipynb+json": "Notebook"}}),
    introspection("/complete", "complete_code", "Completion", CURSOR, example={"code": "pri"}),
    introspection("/inspect", "inspect_code", "Inspection", CURSOR,
                  Param("detail_level", BODY, Choice(0, 1), default=0,
                        description="1 adds the source"),
                  example={"code": "print", "detail_level": 0}),
    introspection("/is_complete", "is_complete_code", "IsComplete",
                  example={"code": "for i in range(3):"}),
    env_route("GET", "/variables", "list_variables", tag="introspection",
              errors=(404, 409, 503), responses={"200": "Variables"},
              params=(ENV, Param("all", QUERY, BOOLEAN, default=False,
                                 description="also _names, modules and injected helpers"))),
    # MCP (mcp/transport.py): the body is JSON-RPC, read by the handler itself.
    Operation("POST", "/mcp", "mcp_post", tag="mcp", raw_body=True,
              errors=(400, 403, 404, 406, 415),
              responses={"200": {JSON: {"type": "object", "description": "the JSON-RPC "
                                        "response"},
                                 "text/event-stream": {"type": "string"}}, "202": None}),
    Operation("DELETE", "/mcp", "mcp_delete", tag="mcp", errors=(400, 403, 404),
              responses={"204": None}),
    # The original tutorial's API (compat.py): same routes, same 200 answers, even to bad input.
    Operation("POST", "/env/create", "compat_create", tag="original API", params=(ANY_ID,),
              errors=(429, 503), responses={"200": "CompatEnvs"}, example={"id": "1"}),
    Operation("POST", "/env/delete", "compat_delete", tag="original API", params=(ANY_ID,),
              errors=(503,), responses={"200": "CompatEnvs"}, example={"id": "1"}),
    Operation("POST", "/env/get", "compat_get", tag="original API", params=(ANY_ID,),
              errors=(429, 503), responses={"200": "CompatNames"}, example={"id": "1"}),
    Operation("POST", "/", "compat_execute", tag="original API",
              params=(ANY_ID, Param("code", BODY, Anything(), description="Python source")),
              errors=(429, 503), responses={"200": "CompatMessage"},
              example={"id": "1", "code": "print('hello world')"}),
)
