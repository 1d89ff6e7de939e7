"""The OpenAPI 3.1 description, built from the registered routes.

Paths and operations come from the dispatcher's route table, so a route cannot
be registered without being described; what each operation takes and answers
comes from ``OPERATIONS`` below (keyed by handler name).  Summaries are the
handlers' docstrings.
"""

from . import __version__

PROBLEM = {"$ref": "#/components/schemas/Problem"}
ANY_OBJECT = {"type": "object"}

COMPONENTS = {
    "schemas": {
        "Problem": {
            "type": "object",
            "required": ["type", "title", "status", "detail"],
            "properties": {
                "type": {"type": "string"}, "title": {"type": "string"},
                "status": {"type": "integer"}, "detail": {"type": "string"},
            },
        },
    },
    "securitySchemes": {
        "bearer": {"type": "http", "scheme": "bearer"},
        "query": {"type": "apiKey", "in": "query", "name": "token"},
    },
}

# handler name -> the parts of its operation that are not derived from the route.
OPERATIONS = {
    "service_info": {"responses": {"200": ANY_OBJECT}},
    "health": {"responses": {"200": ANY_OBJECT}},
    "openapi_document": {"responses": {"200": ANY_OBJECT}},
}

# Statuses any guarded operation may answer, besides its own.
COMMON_ERRORS = ("400", "401", "403", "405", "411", "413", "415", "422")
ERROR_TITLES = {"400": "Bad request", "401": "Missing or invalid token",
                "403": "Host or Origin not allowed", "404": "Not found",
                "405": "Method not allowed", "409": "Conflict", "411": "Length required",
                "413": "Body over max_body", "415": "Unsupported body type",
                "422": "Invalid parameter", "429": "Quota exceeded",
                "500": "Internal error", "503": "Kernel unavailable"}


def _response(status, schema):
    if status.startswith(("4", "5")):
        return {"description": ERROR_TITLES.get(status, "Error"),
                "content": {"application/problem+json": {"schema": PROBLEM}}}
    if schema is None:
        return {"description": "No content"}
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _operation(route):
    spec = OPERATIONS.get(route.name, {})
    doc = (route.handler.__doc__ or route.name).strip().splitlines()[0]
    operation = {"operationId": route.name, "summary": doc}
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": "string"}} for name in route.arg_names]
    parameters += spec.get("parameters", [])
    if parameters:
        operation["parameters"] = parameters
    if "requestBody" in spec:
        operation["requestBody"] = spec["requestBody"]
    responses = {status: _response(status, schema)
                 for status, schema in spec.get("responses", {"200": ANY_OBJECT}).items()}
    if not route.public:
        for status in COMMON_ERRORS + ("500",):
            responses.setdefault(status, _response(status, None))
        operation["security"] = [{"bearer": []}, {"query": []}]
    else:
        operation["security"] = []
    operation["responses"] = responses
    return operation


def build_document(routes, base=""):
    paths = {}
    for route in routes:
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "wsgikernel", "version": __version__,
                 "description": "Run Python code in named, persistent environments."},
        "servers": [{"url": base or "/"}],
        "paths": paths,
        "components": COMPONENTS,
    }
