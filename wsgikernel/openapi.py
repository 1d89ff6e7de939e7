"""The OpenAPI 3.1 description, derived from the route table (routes.py).

Every operation, its parameters and its request bodies come from the same
declarations that validate requests (``routes.Operation``): a parameter's
schema is its converter's (converters.py), so what runs and what is published
are one thing.  The 400 and 422 of parameter validation, the 401/403 of the
guard and the common request errors are added to each operation's declared
errors here; the shapes responses name live in ``SCHEMAS``.  Summaries are the
handlers' docstrings.

Every request body is described three ways, because the dispatcher merges all
of them into the same parameters: JSON, ``application/x-www-form-urlencoded``
and ``multipart/form-data`` (the form twins use each converter's text schema:
every field is a string).  Every error is ``application/problem+json``
(``Problem``), listed per operation with the statuses it can really answer.

Maxima in the schemas (``timeout``, ``wait``, ``code``, limits) are the
contract and also what keeps a fuzzer such as schemathesis from asking for
hour-long waits or megabytes of code; those that depend on the server's
configuration (``max_timeout``, ``max_body``, the server's own limits) were
filled in when the app bound its routes.
"""

from . import __version__
from .config import LIMITS
from .converters import MAX_COUNT
from .params import ENV_ID_RULE

EXECUTION_STATES = ["queued", "running", "ok", "error", "aborted"]


def ref(name):
    return {"$ref": "#/components/schemas/" + name}


def null_or(schema):
    """``schema`` or JSON null (OpenAPI 3.1 has no ``nullable``)."""
    if "anyOf" in schema:
        return dict(schema, anyOf=schema["anyOf"] + [{"type": "null"}])
    if "type" in schema and "$ref" not in schema and "enum" not in schema:
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
    "EnvId": {"type": "string", "pattern": "^%s$" % ENV_ID_RULE,
              "description": "1-64 characters of A-Z a-z 0-9 _ . -, not starting with '.'"},
    "Limits": obj(
        description="Resource limits of the user-code process (null: none).",
        **{limit.key: null_or({"type": limit.json_type, "minimum": 0,
                               "description": limit.help})
           for limit in LIMITS}),
    "Env": obj(
        ["id", "state", "session", "execution_count", "queued", "created", "last_activity",
         "pid", "limits", "cwd", "sandbox"],
        "An environment: one kernel process and its namespace.",
        id=ref("EnvId"),
        state={"enum": ["starting", "idle", "busy", "dead", "stopped"]},
        session={"type": "integer", "minimum": 0, "description": "+1 on every restart"},
        execution_count=COUNT, queued=COUNT,
        created=null_or(TIMESTAMP), last_activity=null_or(TIMESTAMP),
        pid=null_or({"type": "integer", "description": "the user-code process"}),
        limits=ref("Limits"), cwd=null_or(STRING),
        sandbox={"enum": ["none", "bwrap"], "description": "where user code runs"},
        sandbox_network={"type": "boolean", "description": "bwrap envs only: whether the "
                         "sandbox has a network"},
        slurm=obj(["job_id", "state", "reason", "node"], "launcher slurm only: the env's "
                  "job, in Slurm's words (PENDING, RUNNING...; Resources, Priority...)",
                  job_id=null_or(STRING), state=null_or(STRING), reason=null_or(STRING),
                  node=null_or(STRING)),
        resources={"type": "object", "description": "launcher slurm only: the resources "
                   "the env's job asked for"},
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

# -- operations, from the route table ---------------------------------------------------

RETRY_AFTER = {"Retry-After": {"required": True, "description": "seconds",
                               "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
JSON = "application/json"
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

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


def param_schema(param, text):
    """What the parameter's converter accepts: as text (query, path, form) or in JSON."""
    converter = param.converter
    schema = dict(converter.text if text else converter.json)
    if not text and not param.required and schema:
        schema = null_or(schema)  # JSON null means "not given"
    if param.description:
        schema["description"] = param.description
    return schema


def body_schema(operation, text):
    """The request body's schema; ``text``: its form twin, where every field is a string."""
    params = operation.where("body")
    schema = {"type": "object",
              "properties": {param.name: param_schema(param, text) for param in params}}
    required = [param.name for param in params if param.required]
    if required:
        schema["required"] = required
    rules = {}
    for conflict in operation.conflicts:
        rules.setdefault(conflict.when, []).append(conflict_schema(operation, conflict, text))
    if rules:
        schema["dependentSchemas"] = {name: parts[0] if len(parts) == 1 else {"allOf": parts}
                                      for name, parts in rules.items()}
    return schema


def conflict_schema(operation, conflict, text):
    """"When this is given, those must not be" (routes.Conflict), for dependentSchemas.

    Read: once ``when`` is present, either it does not count as given (``silent=false``)
    or none of ``forbids`` is given.  (An if/then says the same; generators such as
    hypothesis-jsonschema handle this form far faster.)
    """
    declared = {param.name: param.converter for param in operation.params}

    def not_given(name):  # ``false``: only leaving it out counts (a form field is text)
        absent = declared[name].absent(text)
        return False if absent is None else absent
    return {"description": conflict.why, "anyOf": [
        {"properties": {conflict.when: not_given(conflict.when)}},
        {"properties": {name: not_given(name) for name in conflict.forbids}}]}


def request_body(operation):
    content = {JSON: {"schema": body_schema(operation, False)}}
    form = body_schema(operation, True)
    content.update({media: {"schema": form} for media in FORMS})
    if operation.example is not None:
        content[JSON]["examples"] = {"example": {"value": operation.example}}
    return {"required": operation.body_required, "content": content}


def parameters(operation):
    listed = []
    for param in operation.params:
        if param.where == "body":
            continue
        entry = {"name": param.name, "in": param.where, "required": param.required,
                 "schema": param_schema(param, True)}
        if param.description:
            entry["description"] = param.description
        if param.example is not None:
            entry["examples"] = {"example": {"value": param.example}}
        listed.append(entry)
    return listed


def _content(spec):
    if isinstance(spec, str):
        spec = {JSON: spec}
    return {media: {"schema": ref(schema) if isinstance(schema, str) else schema}
            for media, schema in spec.items()}


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


def error_statuses(operation):
    """Declared errors, the common ones, and those the declarations imply."""
    statuses = set(operation.errors) | set(COMMON_ERRORS)
    if not operation.public:
        statuses |= set(GUARD_ERRORS)
    if operation.where("path"):
        statuses.add("404")  # a path segment holding an encoded '/' matches no route
    if any(param.checked for param in operation.params):
        statuses.add("422")
    return sorted(statuses)


def describe(operation):
    """The OpenAPI operation object of one routes.Operation."""
    described = {"operationId": operation.name, "summary": operation.summary or operation.name,
                 "tags": [operation.tag]}
    listed = parameters(operation)
    if listed:
        described["parameters"] = listed
    if operation.where("body"):
        described["requestBody"] = request_body(operation)
    responses = {status: _response(status, spec, operation.headers.get(status))
                 for status, spec in operation.responses.items()}
    for status in error_statuses(operation):
        responses[status] = _response(status, None)
    described["responses"] = responses
    described["security"] = [] if operation.public else [{"bearer": []}, {"query": []}]
    return described


def build_document(operations, base=""):
    """The OpenAPI 3.1 document of ``operations`` (bound to the server's config)."""
    paths = {}
    for operation in operations:
        paths.setdefault(operation.pattern, {})[operation.method.lower()] = describe(operation)
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
