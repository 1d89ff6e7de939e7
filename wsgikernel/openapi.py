"""The OpenAPI 3.1 description, built from the registered routes.

Paths and operations come from the dispatcher's route table, so a route cannot
be registered without being described; what each operation takes and answers
comes from ``OPERATIONS`` below (keyed by handler name), and the shapes it
names live in ``SCHEMAS``.  Summaries are the handlers' docstrings.

Every request body is described three ways, because the dispatcher merges all
of them into the same parameters: JSON, ``application/x-www-form-urlencoded``
and ``multipart/form-data`` (the form variants are derived from the JSON
schema: every field is text).  Every error is ``application/problem+json``
(``Problem``), listed per operation with the statuses it can really answer.

Maxima in the schemas (``timeout``, ``wait``, ``code``, ids) are the contract
and also what keeps a fuzzer such as schemathesis from asking for hour-long
waits or megabytes of code: ``timeout`` is bounded by the server's
``max_timeout`` and ``code`` by its ``max_body`` when the document is built for
a configured app.
"""

from . import __version__
from .config import LIMIT_MINIMUM, RLIMIT_MAX

ENV_ID_PATTERN = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
MAX_WAIT = 3600           # seconds; longer waits are a series of polls
MAX_COUNT = 2 ** 53 - 1   # largest integer every JSON client reads exactly
EXECUTION_STATES = ["queued", "running", "ok", "error", "aborted"]


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def null_or(schema):
    """``schema`` or JSON null (OpenAPI 3.1 has no ``nullable``)."""
    if "type" in schema and "$ref" not in schema:
        kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        return dict(schema, type=kinds + ["null"])
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required=(), description=None, **properties):
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    if description:
        schema["description"] = description
    return schema


STRING, BOOLEAN, INTEGER = {"type": "string"}, {"type": "boolean"}, {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0, "maximum": MAX_COUNT}
TIMESTAMP = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC"}
MIME_BUNDLE = {"type": "object", "description": "MIME type -> data (text, base64 for "
               "images, JSON for application/json)", "additionalProperties": True}

# -- shapes ------------------------------------------------------------------

SCHEMAS = {
    "Problem": obj(
        ["type", "title", "status", "detail"],
        "RFC 9457 problem details; extra members (env_id, param, ...) name what failed.",
        type={"type": "string", "description": "a stable URN per error class, "
              "e.g. urn:wsgikernel:env-not-found"},
        title=STRING, status={"type": "integer", "minimum": 400, "maximum": 599},
        detail=STRING, env_id=STRING, param=STRING, allowed={"type": "array", "items": STRING},
        quota=STRING, limit=INTEGER, state=null_or(STRING)),
    "EnvId": {"type": "string", "pattern": ENV_ID_PATTERN,
              "description": "1-64 characters of A-Z a-z 0-9 _ . -, not starting with '.'"},
    "Limits": obj(
        description="Resource limits of the user-code process (null: none).",
        memory_limit=null_or({"type": "integer", "minimum": 0, "description": "bytes"}),
        cpu_limit=null_or({"type": "number", "minimum": 0, "description": "CPU seconds"}),
        file_size_limit=null_or({"type": "integer", "minimum": 0, "description": "bytes"}),
        open_files_limit=null_or({"type": "integer", "minimum": 0})),
    "Env": obj(
        ["id", "state", "session", "execution_count", "queued", "created", "last_activity",
         "pid", "limits", "cwd"],
        "An environment: one kernel process and its namespace.",
        id=ref("EnvId"),
        state={"enum": ["starting", "idle", "busy", "dead", "stopped"]},
        session={"type": "integer", "minimum": 0, "description": "+1 on every restart"},
        execution_count=COUNT, queued=COUNT,
        created=null_or(TIMESTAMP), last_activity=null_or(TIMESTAMP),
        pid=null_or({"type": "integer", "description": "the user-code process"}),
        limits=ref("Limits"), cwd=null_or(STRING),
        exit=null_or(obj(["code", "signal"], "how the kernel ended (dead or stopped envs)",
                         code=null_or(INTEGER), signal=null_or(STRING))),
        reason=null_or({"type": "string", "description": "why it is dead or stopped"}),
        detail={"type": "string", "description": "dead envs with reason start_failed, "
                "corrupt_record or unreadable_record only: what went wrong, in one line"},
        log={"type": "string", "description": "reason start_failed only: the last lines "
             "of the kernel's log (kernel.log), which say why it could not start"},
        restarted={"type": "boolean", "description": "in a PUT answer only: true when the "
                   "env was stopped and PUT started a fresh kernel (session + 1)"}),
    "EnvList": obj(["envs"], envs={"type": "array", "items": ref("Env")}),
    "ExecutionError": obj(["ename", "evalue", "traceback"], ename=STRING, evalue=STRING,
                          traceback={"type": "array", "items": STRING,
                                     "description": "plain-text lines"}),
    "StreamOutput": obj(["output_type", "name", "text"],
                        output_type={"const": "stream"},
                        name={"enum": ["stdout", "stderr"]}, text=STRING),
    "ExecuteResult": obj(["output_type", "execution_count", "data", "metadata"],
                         output_type={"const": "execute_result"},
                         execution_count=null_or(COUNT), data=MIME_BUNDLE,
                         metadata={"type": "object"}),
    "DisplayData": obj(["output_type", "data", "metadata"],
                       output_type={"const": "display_data"}, data=MIME_BUNDLE,
                       metadata={"type": "object"}, transient={"type": "object"}),
    "ErrorOutput": obj(["output_type", "ename", "evalue", "traceback"],
                       output_type={"const": "error"}, ename=STRING, evalue=STRING,
                       traceback={"type": "array", "items": STRING}),
    "Output": {"description": "An nbformat v4 output object.",
               "oneOf": [ref("StreamOutput"), ref("ExecuteResult"), ref("DisplayData"),
                         ref("ErrorOutput")]},
    "UserExpression": {"oneOf": [
        obj(["status", "data"], status={"const": "ok"}, data=MIME_BUNDLE,
            metadata={"type": "object"}),
        obj(["status", "ename", "evalue"], status={"const": "error"}, ename=STRING,
            evalue=STRING, traceback={"type": "array", "items": STRING})]},
    "ExecutionRecord": obj(
        ["env", "session", "execution_count", "code", "status", "reason", "stdout", "stderr",
         "result", "outputs", "error", "user_expressions", "truncated", "queued_at",
         "started", "finished", "duration"],
        "One execution, the same shape everywhere it appears (docs/API.md).",
        env=ref("EnvId"), session={"type": "integer", "minimum": 0},
        execution_count=null_or(COUNT), code=STRING,
        status={"enum": EXECUTION_STATES},
        reason={"enum": [None, "interrupted", "timeout", "cancelled", "kernel_died",
                         "previous_error", "kernel_lost"]},
        stdout=STRING, stderr=STRING, result=null_or(MIME_BUNDLE),
        outputs={"type": "array", "items": ref("Output")},
        error=null_or(ref("ExecutionError")),
        user_expressions={"type": "object", "additionalProperties": ref("UserExpression")},
        truncated=BOOLEAN, queued_at=null_or(TIMESTAMP), started=null_or(TIMESTAMP),
        finished=null_or(TIMESTAMP), duration=null_or({"type": "number", "minimum": 0})),
    "ExecutionPage": obj(["executions", "next"],
                         executions={"type": "array", "items": ref("ExecutionRecord")},
                         next=null_or(dict(COUNT, description="`since` of the next page"))),
    "StreamEvent": {
        "description": "One line of an application/x-ndjson stream: `accepted` first, then "
                       "`output` and `heartbeat` lines, `record` (the full record) last.",
        "type": "object", "required": ["event"],
        "properties": {"event": {"enum": ["accepted", "output", "heartbeat", "record",
                                          "error"]},
                       "execution_count": null_or(COUNT),
                       "status": {"enum": EXECUTION_STATES}}},
    "ServiceInfo": obj(["name", "version", "envs", "links"], name=STRING, version=STRING,
                       envs=COUNT, links={"type": "object",
                                          "additionalProperties": STRING}),
    "Health": obj(["status"], status={"const": "ok"}),
    "Completion": obj(["matches", "cursor_start", "cursor_end", "metadata"],
                      matches={"type": "array", "items": STRING}, cursor_start=COUNT,
                      cursor_end=COUNT, metadata={"type": "object"}, status=STRING),
    "Inspection": obj(["found", "data"], found=BOOLEAN, data=MIME_BUNDLE,
                      metadata={"type": "object"}, status=STRING, name=STRING, type=STRING,
                      signature=null_or(STRING), docstring=null_or(STRING),
                      file=null_or(STRING), source=null_or(STRING)),
    "IsComplete": obj(["status"], status={"enum": ["complete", "incomplete", "invalid",
                                                   "unknown"]},
                      indent={"type": "string", "description": "for incomplete code"}),
    "Variable": obj(["name", "type", "repr"], name=STRING, type=STRING,
                    repr={"type": "string", "description": "cut to a bounded length"},
                    len=COUNT),
    "Variables": obj(["variables"], variables={"type": "array", "items": ref("Variable")}),
    "LateOutput": obj(
        ["late_output"], "Output that came after its execution's record was final: the "
        "newest 64 KiB of text, oldest first.",
        late_output={"type": "array", "items": obj(
            ["execution_count", "name", "text", "time"],
            execution_count=null_or(dict(COUNT, description="the execution whose thread "
                                         "wrote it; null: unknown (fd writes, silent cells)")),
            name={"enum": ["stdout", "stderr", "display_data"]}, text=STRING,
            time=TIMESTAMP)}),
    "Notebook": obj(["nbformat", "nbformat_minor", "metadata", "cells"],
                    "An nbformat v4 notebook (.ipynb) of the env's history.",
                    nbformat={"const": 4}, nbformat_minor=INTEGER,
                    metadata={"type": "object"},
                    cells={"type": "array", "items": obj(
                        ["cell_type", "source", "metadata"],
                        cell_type={"enum": ["code", "markdown", "raw"]}, id=STRING,
                        source=STRING, metadata={"type": "object"},
                        execution_count=null_or(COUNT),
                        outputs={"type": "array", "items": ref("Output")})}),
    "CompatError": obj(["error"], "The original API's answer to bad input (still 200).",
                       error=STRING),
    "CompatEnvs": {"oneOf": [obj(["envs"], envs={"type": "array", "items": STRING}),
                             ref("CompatError")]},
    "CompatNames": {"oneOf": [obj(["env"], env={"type": "array", "items": STRING}),
                              ref("CompatError")]},
    "CompatMessage": {"oneOf": [obj(["message"], message=STRING), ref("CompatError")]},
}

# -- request bodies and parameters -----------------------------------------------

# Bounds from config.check_limit, the validation that runs: one source for both.
LIMIT_FIELDS = {
    "memory_limit": {"type": "integer", "minimum": LIMIT_MINIMUM["memory_limit"],
                     "maximum": RLIMIT_MAX,
                     "description": "bytes (at least 256 MiB); within the server's maximum"},
    "cpu_limit": {"type": "number", "minimum": LIMIT_MINIMUM["cpu_limit"], "maximum": 2 ** 62,
                  "description": "CPU seconds over the kernel's lifetime"},
    "file_size_limit": {"type": "integer", "minimum": LIMIT_MINIMUM["file_size_limit"],
                        "maximum": RLIMIT_MAX, "description": "bytes"},
    "open_files_limit": {"type": "integer", "minimum": LIMIT_MINIMUM["open_files_limit"],
                         "maximum": RLIMIT_MAX},
}


def _code(config):
    schema = {"type": "string", "description": "Python source, run as one cell"}
    if config is not None and getattr(config, "max_body", None):
        schema["maxLength"] = config.max_body
    return schema


def _timeout(config):
    schema = {"type": "number", "minimum": 0, "description": "seconds before the cell is "
              "interrupted (then killed after kill_grace)"}
    ceiling = getattr(config, "max_timeout", None) if config is not None else None
    if ceiling is not None:
        schema["maximum"] = ceiling
        schema["description"] += "; at most max_timeout (%g s) on this server" % ceiling
    return schema


WAIT = {"type": "number", "minimum": 0, "maximum": MAX_WAIT,
        "description": "seconds to wait for the end before answering 202 (0: at once)"}


def request_bodies(config):
    code = _code(config)
    cursor = dict(COUNT, description="character offset (default: the end of code)")
    return {
        "create": obj(description="All optional: the id (generated if absent) and limits.",
                      id=ref("EnvId"), **LIMIT_FIELDS),
        "put": obj(description="Limits for a new env (ignored if it exists).", **LIMIT_FIELDS),
        "execute": obj(
            ["code"], code=code,
            silent={"type": "boolean", "description": "no result, no history; synchronous"},
            store_history=BOOLEAN,
            user_expressions={"type": "object", "additionalProperties": STRING,
                              "description": "name -> expression evaluated after the cell"},
            stdin={"type": "string", "description": "text fed to input()"},
            timeout=_timeout(config), wait=WAIT,
            stream={"type": "boolean", "description": "answer application/x-ndjson events"},
            stop_on_error={"type": "boolean", "description": "if this cell ends with status "
                           "error, the executions queued behind it then end aborted "
                           "(reason previous_error) without running"}),
        "complete": obj(["code"], code=code, cursor_pos=cursor),
        "inspect": obj(["code"], code=code, cursor_pos=cursor,
                       detail_level={"enum": [0, 1]}),
        "is_complete": obj(["code"], code=code),
        "compat_id": obj(["id"], id=STRING),
        "compat_execute": obj(["id", "code"], id=STRING, code=code),
    }


def form_schema(schema):
    """The form-encoded twin of a JSON body schema: every field is text."""
    properties = {}
    for name, field in schema["properties"].items():
        kind = field.get("type")
        if kind == "boolean":
            field = {"type": "string", "enum": ["true", "false", "1", "0"]}
        elif "enum" in field:
            field = {"type": "string", "enum": [str(value) for value in field["enum"]]}
        elif kind in ("integer", "number"):
            pattern = "^[0-9]{1,6}$" if kind == "integer" else "^[0-9]{1,4}(\\.[0-9]{1,3})?$"
            field = {"type": "string", "pattern": pattern, "description": "a %s" % kind}
        elif kind == "object":
            field = {"type": "string", "contentMediaType": "application/json",
                     "description": "a JSON object"}
        properties[name] = field
    return dict(schema, properties=properties)


def body(schema, required=False, example=None):
    form = form_schema(schema)
    content = {"application/json": {"schema": schema},
               "application/x-www-form-urlencoded": {"schema": form},
               "multipart/form-data": {"schema": form}}
    if example is not None:
        content["application/json"]["examples"] = {"example": {"value": example}}
    return {"required": required, "content": content}


def query(name, schema, description=None):
    param = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        param["description"] = description
    return param


PATH_PARAMS = {
    "id": {"schema": ref("EnvId"), "description": "the environment id",
           "examples": {"demo": {"value": "demo"}}},
    "n": {"schema": dict(COUNT, minimum=1), "description": "the execution_count",
          "examples": {"first": {"value": 1}}},
    "name": {"schema": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]*$"},
             "description": "a file of the console",
             "examples": {"style": {"value": "style.css"}}},
}

# -- operations ----------------------------------------------------------------------

LOCATION = {"Location": {"required": True, "description": "URL of the new resource",
                         "schema": {"type": "string"}}}
RETRY_AFTER = {"Retry-After": {"required": True, "description": "seconds",
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
NDJSON = "application/x-ndjson"
JSON = "application/json"
UI_TYPES = ("text/html", "text/css", "text/javascript", "application/javascript",
            "application/json", "image/svg+xml", "image/png", "image/x-icon", "text/plain")

# Each entry: responses {status: schema name, None (no body) or {content type: schema}},
# plus errors (statuses besides the common ones), parameters, body, tags.
OPERATIONS = {
    "service_info": {"tags": ["service"], "responses": {"200": "ServiceInfo"}},
    "health": {"tags": ["service"], "responses": {"200": "Health"}},
    "openapi_document": {"tags": ["service"], "responses": {"200": {JSON: {"type": "object"}}}},
    "ui_page": {"tags": ["console"], "responses": {"200": {"text/html": {"type": "string"}}}},
    "ui_file": {"tags": ["console"], "errors": ("404",),
                "responses": {"200": {t: {"type": "string"} for t in UI_TYPES}}},
    "list_environments": {"tags": ["environments"], "responses": {"200": "EnvList"}},
    "create_environment": {"tags": ["environments"], "body": "create",
                           "errors": ("409", "422", "429", "503"),
                           "responses": {"201": "Env"}, "headers": {"201": LOCATION}},
    "get_environment": {"tags": ["environments"], "errors": ("404", "422"),
                        "responses": {"200": "Env"}},
    "put_environment": {"tags": ["environments"], "body": "put",
                        "errors": ("404", "422", "429", "503"),
                        "responses": {"200": "Env", "201": "Env"},
                        "headers": {"201": LOCATION}},
    "delete_environment": {"tags": ["environments"], "errors": ("404", "422", "503"),
                           "responses": {"204": None}},
    "restart_environment": {"tags": ["environments"], "errors": ("404", "409", "422", "503"),
                            "responses": {"200": "Env"}},
    "late_output": {"tags": ["executions"], "errors": ("404", "422", "503"),
                    "responses": {"200": "LateOutput"}},
    "interrupt_environment": {"tags": ["environments"],
                              "errors": ("404", "409", "422", "503"),
                              "responses": {"200": "Env"}},
    "execute_code": {
        "tags": ["executions"], "body": "execute", "body_required": True,
        "errors": ("404", "409", "422", "429", "503"),
        "responses": {"200": {JSON: ref("ExecutionRecord"), NDJSON: ref("StreamEvent")},
                      "202": "ExecutionRecord"},
        "headers": {"202": {"Location": dict(LOCATION["Location"],
                                             description="where to poll the record")}}},
    "list_executions": {
        "tags": ["executions"], "errors": ("404", "422"), "responses": {"200": "ExecutionPage"},
        "parameters": [query("since", COUNT, "the first execution_count to list"),
                       query("limit", dict(COUNT, maximum=10000),
                             "page size (default 100; 0 means the default)")]},
    "get_execution": {
        "tags": ["executions"], "errors": ("404", "409", "422", "503"),
        "responses": {"200": {JSON: ref("ExecutionRecord"), NDJSON: ref("StreamEvent")},
                      "202": "ExecutionRecord"},
        "headers": {"202": {"Location": dict(LOCATION["Location"],
                                             description="this URL: poll it again")}},
        "parameters": [query("wait", WAIT, "long-poll up to this many seconds"),
                       query("stream", BOOLEAN, "follow it as application/x-ndjson")]},
    "cancel_execution": {"tags": ["executions"], "errors": ("404", "409", "422", "503"),
                         "responses": {"200": "ExecutionRecord"}},
    "export_notebook": {"tags": ["executions"], "errors": ("404", "422"),
                        "responses": {"200": {"application/x-ipynb+json": ref("Notebook")}}},
    "complete_code": {"tags": ["introspection"], "body": "complete", "body_required": True,
                      "errors": ("404", "409", "422", "503"),
                      "responses": {"200": "Completion"}},
    "inspect_code": {"tags": ["introspection"], "body": "inspect", "body_required": True,
                     "errors": ("404", "409", "422", "503"),
                     "responses": {"200": "Inspection"}},
    "is_complete_code": {"tags": ["introspection"], "body": "is_complete",
                         "body_required": True, "errors": ("404", "409", "422", "503"),
                         "responses": {"200": "IsComplete"}},
    "list_variables": {
        "tags": ["introspection"], "errors": ("404", "409", "422", "503"),
        "responses": {"200": "Variables"},
        "parameters": [query("all", BOOLEAN, "also _names, modules and injected helpers")]},
    "compat_create": {"tags": ["original API"], "body": "compat_id", "errors": ("429", "503"),
                      "responses": {"200": "CompatEnvs"}},
    "compat_delete": {"tags": ["original API"], "body": "compat_id", "errors": ("503",),
                      "responses": {"200": "CompatEnvs"}},
    "compat_get": {"tags": ["original API"], "body": "compat_id", "errors": ("429", "503"),
                   "responses": {"200": "CompatNames"}},
    "compat_execute": {"tags": ["original API"], "body": "compat_execute",
                       "errors": ("429", "503"), "responses": {"200": "CompatMessage"}},
}

BODY_EXAMPLES = {
    "create": {"id": "demo"}, "put": {},
    "execute": {"code": "print('hello')\nx = 21\nx * 2"},
    "complete": {"code": "pri"}, "inspect": {"code": "print", "detail_level": 0},
    "is_complete": {"code": "for i in range(3):"},
    "compat_id": {"id": "1"}, "compat_execute": {"id": "1", "code": "print('hello world')"},
}

# Statuses every operation may answer: the request itself (400 malformed body,
# 411 chunked body, 413 over max_body, 415 body type) and a bug (500).
COMMON_ERRORS = ("400", "411", "413", "415", "500")
GUARD_ERRORS = ("401", "403")  # token missing or wrong; Host/Origin refused with auth off
ERROR_TITLES = {"400": "Malformed request or missing parameter",
                "401": "Missing or invalid token", "403": "Host or Origin not allowed",
                "404": "Unknown route, environment or execution",
                "405": "Method not allowed", "409": "Conflict: id taken, env dead or stopped",
                "411": "Length required (chunked body)", "413": "Body over max_body",
                "415": "Unsupported body type", "422": "A parameter present but invalid",
                "429": "Quota exceeded (max_envs, max_queue)",
                "500": "A bug in the service (its log has the traceback)",
                "503": "The kernel could not start or did not answer"}
ERROR_HEADERS = {
    "401": {"WWW-Authenticate": {"required": True, "schema": {"type": "string"}}},
    "429": RETRY_AFTER, "503": RETRY_AFTER}
SUCCESS_TITLES = {"200": "OK", "201": "Created", "202": "Accepted: not finished yet",
                  "204": "No content"}


def _content(spec):
    if isinstance(spec, str):
        return {JSON: {"schema": ref(spec)}}
    return {media: {"schema": schema} for media, schema in spec.items()}


def _response(status, spec, headers=None):
    if status.startswith(("4", "5")):
        response = {"description": ERROR_TITLES.get(status, "Error"),
                    "content": {"application/problem+json": {"schema": ref("Problem")}}}
        headers = ERROR_HEADERS.get(status)
    else:
        response = {"description": SUCCESS_TITLES.get(status, "OK")}
        if spec is not None:
            response["content"] = _content(spec)
    if headers:
        response["headers"] = headers
    return response


def _parameters(route, spec):
    parameters = []
    for name in route.arg_names:
        known = PATH_PARAMS.get(name, {"schema": {"type": "string"}})
        parameters.append(dict(known, name=name, **{"in": "path", "required": True}))
    return parameters + list(spec.get("parameters", ()))


def _operation(route, bodies):
    spec = OPERATIONS.get(route.name, {})
    doc = (route.handler.__doc__ or route.name).strip().splitlines()[0]
    operation = {"operationId": route.name, "summary": doc, "tags": spec.get("tags", [])}
    parameters = _parameters(route, spec)
    if parameters:
        operation["parameters"] = parameters
    if "body" in spec:
        operation["requestBody"] = body(bodies[spec["body"]], spec.get("body_required", False),
                                        BODY_EXAMPLES.get(spec["body"]))
    statuses = list(spec.get("errors", ())) + list(COMMON_ERRORS)
    if not route.public:
        statuses += GUARD_ERRORS
    if route.arg_names:
        statuses.append("404")  # a path segment holding an encoded '/' matches no route
    responses = {}
    for status, schema in spec.get("responses", {"200": {JSON: {"type": "object"}}}).items():
        responses[status] = _response(status, schema, spec.get("headers", {}).get(status))
    for status in sorted(set(statuses)):
        responses[status] = _response(status, None)
    operation["responses"] = responses
    operation["security"] = [] if route.public else [{"bearer": []}, {"query": []}]
    return operation


def _config_of(routes):
    """The app's config, found through a route's handler (``Api`` instances carry it)."""
    for route in routes:
        owner = getattr(getattr(route.handler, "endpoint", None), "__self__", None)
        config = getattr(owner, "config", None)
        if config is not None:
            return config
    return None


def build_document(routes, base="", config=None):
    """The OpenAPI 3.1 document of ``routes``; ``config`` bounds timeout and code size."""
    config = config if config is not None else _config_of(routes)
    bodies = request_bodies(config)
    paths = {}
    for route in routes:
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route, bodies)
    return {
        "openapi": "3.1.0",
        "info": {"title": "wsgikernel", "version": __version__,
                 "description": "Run Python code in named, persistent environments over "
                                "HTTP + JSON. Errors are application/problem+json; "
                                "user-code errors are execution records (200)."},
        "servers": [{"url": base or "/"}],
        "tags": [{"name": name} for name in ("service", "environments", "executions",
                                             "introspection", "original API", "console")],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer <token> (also accepted: "
                                          "Authorization: token <token>)"},
                "query": {"type": "apiKey", "in": "query", "name": "token",
                          "description": "?token=<token> (redacted from access logs; "
                                         "prefer the header)"},
            },
        },
    }
