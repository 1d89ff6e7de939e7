"""The OpenAPI 3.1 description, derived from the route table (routes.py).

Every operation, its parameters and its request bodies come from the same
declarations that validate requests (``routes.Operation``): a parameter's
schema is its converter's (converters.py), so what runs and what is published
are one thing.  The 400 and 422 of parameter validation, the 401/403 of the
guard and the common request errors are added to each operation's declared
errors here; the shapes responses name live in ``schemas.SCHEMAS``.  Summaries are the
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
from .schemas import SCHEMAS, null_or, ref

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
                                             "introspection", "checkpoints", "original API",
                                             "console")],
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
