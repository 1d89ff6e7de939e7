"""/openapi.json: the routes it lists are the ones served, and real answers fit it.

The document is built from the route table that also drives dispatch and
validation (routes.py), so comparing it with that table would prove nothing;
these tests compare it with behaviour instead: the methods the dispatcher
answers for each path, the bounds the server enforces
(tests/test_contract.py checks every declared parameter), and the answers of
real requests.  Answers of real requests (WebTest against real kernels) are
checked against the schema the document gives for their operation, status and
content type, with ``jsonschema`` (a dependency of the pinned schemathesis in
the test extra): an undocumented status or content type fails as surely as a
wrong field.
"""

import json
import re

import pytest

from helpers import TOKEN, assert_problem

jsonschema = pytest.importorskip("jsonschema")

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
def document(testapp):
    return testapp.get("/openapi.json", status=200).json


def schema_errors(document, schema, instance):
    """Error messages of ``instance`` against ``schema`` (whose $refs point into document)."""
    root = dict(schema, components=document["components"])
    validator = jsonschema.Draft202012Validator(
        root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    return ["%s at %s" % (e.message, list(e.absolute_path))
            for e in validator.iter_errors(instance)]


def check(document, res, method, pattern):
    """Assert ``res`` is a documented answer of (method, pattern) and fits its schema."""
    operation = document["paths"][pattern][method.lower()]
    status = str(res.status_int)
    assert status in operation["responses"], (
        "%s %s answered undocumented %s: %s" % (method, pattern, status, res.body[:300]))
    response = operation["responses"][status]
    for name, header in response.get("headers", {}).items():
        if header.get("required"):
            assert name in res.headers, (method, pattern, status, name)
    if "content" not in response:
        assert not res.body, (method, pattern, status)
        return None
    media = res.headers["Content-Type"].split(";")[0].strip()
    assert media in response["content"], (method, pattern, status, media)
    schema = response["content"][media]["schema"]
    if media == "application/x-ndjson":
        events = [json.loads(line) for line in res.text.splitlines() if line.strip()]
        for event in events:
            errors = schema_errors(document, schema, event)
            if event["event"] == "record":
                errors += schema_errors(document, {"$ref": "#/components/schemas/"
                                                           "ExecutionRecord"}, event)
            elif event["event"] == "output":
                errors += schema_errors(document, {"$ref": "#/components/schemas/Output"},
                                        {k: v for k, v in event.items() if k != "event"})
            assert not errors, (method, pattern, event, errors)
        return events
    if media.endswith("json"):
        body = json.loads(res.body)
        errors = schema_errors(document, schema, body)
        assert not errors, (method, pattern, status, errors, body)
        return body
    return res.body


# -- the document and what the dispatcher serves ------------------------------------------

def example_path(document, path, method):
    """``path`` with each path parameter replaced by its documented example."""
    for param in document["paths"][path][method].get("parameters", ()):
        if param["in"] == "path":
            path = path.replace("{%s}" % param["name"],
                                str(param["examples"]["example"]["value"]))
    return path


def test_every_path_serves_exactly_its_documented_methods(anon, document):
    """OPTIONS (no token needed) answers the methods the dispatcher routes for a path."""
    for path, item in document["paths"].items():
        methods = {method.upper() for method in item if method in HTTP_METHODS}
        url = example_path(document, path, next(iter(item)))
        res = anon.options(url, status=204)
        served = set(res.headers["Allow"].split(", "))
        expected = methods | {"OPTIONS"} | ({"HEAD"} if "GET" in methods else set())
        assert served == expected, (path, served, methods)


def test_undocumented_methods_are_405_with_the_documented_ones(testapp, document):
    for path, item in document["paths"].items():
        methods = {method.upper() for method in item if method in HTTP_METHODS}
        url = example_path(document, path, next(iter(item)))
        for method in {"GET", "PUT", "POST", "DELETE", "PATCH"} - methods:
            res = testapp.request(url, method=method, status=405)
            assert_problem(res, 405, "method-not-allowed")
            assert methods <= set(res.headers["Allow"].split(", ")), (path, method)


def test_operations_have_unique_ids_and_summaries(document):
    operations = [op for item in document["paths"].values() for method, op in item.items()
                  if method in HTTP_METHODS]
    ids = [op["operationId"] for op in operations]
    assert len(ids) == len(set(ids))
    assert all(op["summary"] and op["summary"] != op["operationId"] for op in operations)


def test_every_operation_documents_its_errors_as_problems(app, document):
    for route in app.routes:
        operation = document["paths"][route.pattern][route.method.lower()]
        responses = operation["responses"]
        assert operation["operationId"] == route.name
        assert operation["summary"]
        for status in ("400", "413", "415", "500"):
            assert status in responses, (route, status)
        if route.public:
            assert operation["security"] == [] and "401" not in responses
        else:
            assert operation["security"] and "401" in responses, route
            assert "WWW-Authenticate" in responses["401"]["headers"]
        for status, response in responses.items():
            if status >= "400":
                schema = response["content"]["application/problem+json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Problem"}, (route, status)


def test_document_is_valid_openapi_31(document):
    try:
        from openapi_spec_validator import validate
    except ImportError:
        schemathesis = pytest.importorskip("schemathesis.specs.openapi.definitions")
        schemathesis.OPENAPI_31_VALIDATOR.validate(document)
    else:
        validate(document)
    for name, schema in document["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema)
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(document)))
    assert refs <= set(document["components"]["schemas"]), "dangling $ref"


def typed(schema):
    """The branch of a parameter's JSON schema that bounds numbers."""
    return next(branch for branch in schema.get("anyOf", [schema]) if "maximum" in branch)


def test_bounds_follow_the_server_config(make_test_app):
    import webtest
    app = make_test_app(max_timeout=7, max_body=4096, memory_limit="1GiB")
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    document = client.get("/openapi.json").json
    execute = document["paths"]["/envs/{id}/execute"]["post"]["requestBody"]["content"]
    properties = execute["application/json"]["schema"]["properties"]
    assert typed(properties["timeout"])["maximum"] == 7
    assert properties["code"]["maxLength"] == 4096
    assert typed(properties["wait"])["maximum"] > 0
    assert document["components"]["schemas"]["EnvId"]["pattern"] == \
        "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"
    form = execute["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert all(field.get("type") == "string" for field in form.values())
    create = document["paths"]["/envs"]["post"]["requestBody"]["content"]["application/json"]
    assert typed(create["schema"]["properties"]["memory_limit"])["maximum"] == 1 << 30
    # ... and the server holds to them, in JSON and in forms.
    client.put("/envs/b", status=201)
    for body in ({"code": "1", "timeout": 7}, {"code": "1", "timeout": "7"}):
        assert client.post_json("/envs/b/execute", body).json["status"] == "ok"
    for timeout in (7.5, "7.5", "8"):
        res = client.post_json("/envs/b/execute", {"code": "1", "timeout": timeout}, status=422)
        assert_problem(res, 422, "invalid-parameter", param="timeout")
    res = client.post("/envs/b/execute", {"code": "1", "timeout": "7.01"}, status=422)
    assert_problem(res, 422, "invalid-parameter", param="timeout")
    client.put_json("/envs/b", {"memory_limit": "1GiB"}, status=200)
    res = client.put_json("/envs/b", {"memory_limit": (1 << 30) + 1}, status=422)
    assert_problem(res, 422, "invalid-parameter", param="memory_limit")


def test_servers_honour_the_mount_point(app):
    import webtest
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN,
                                                 "SCRIPT_NAME": "/kernel"})
    assert client.get("/kernel/openapi.json").json["servers"] == [{"url": "/kernel"}]


# -- real answers against their schemas ---------------------------------------------------

def test_environment_answers_fit_their_schemas(testapp, document):
    check(document, testapp.get("/", status=200), "GET", "/")
    check(document, testapp.get("/healthz", status=200), "GET", "/healthz")
    check(document, testapp.get("/openapi.json"), "GET", "/openapi.json")
    check(document, testapp.get("/ui"), "GET", "/ui")
    check(document, testapp.get("/ui/app.js"), "GET", "/ui/{name}")
    check(document, testapp.get("/ui/nope.js", status=404), "GET", "/ui/{name}")
    created = check(document, testapp.post_json("/envs", {"id": "s1"}, status=201),
                    "POST", "/envs")
    assert created["id"] == "s1"
    check(document, testapp.post("/envs", status=201), "POST", "/envs")
    check(document, testapp.put("/envs/s1", status=200), "PUT", "/envs/{id}")
    check(document, testapp.put("/envs/s2", status=201), "PUT", "/envs/{id}")
    check(document, testapp.get("/envs/s1", status=200), "GET", "/envs/{id}")
    check(document, testapp.get("/envs", status=200), "GET", "/envs")
    check(document, testapp.post("/envs/s1/interrupt", status=200), "POST",
          "/envs/{id}/interrupt")
    check(document, testapp.post("/envs/s1/restart", status=200), "POST",
          "/envs/{id}/restart")
    check(document, testapp.delete("/envs/s2", status=204), "DELETE", "/envs/{id}")


def test_execution_answers_fit_their_schemas(testapp, document):
    testapp.put("/envs/x1", status=201)
    path = "/envs/{id}/execute"
    ok = check(document, testapp.post_json("/envs/x1/execute", {
        "code": "print('hi')\nimport sys\nprint('e', file=sys.stderr)\n{'a': 1}",
        "user_expressions": {"good": "1 + 1", "bad": "1/0"}}), "POST", path)
    assert ok["status"] == "ok"
    error = check(document, testapp.post("/envs/x1/execute", {"code": "1/0"}), "POST", path)
    assert error["status"] == "error"
    shown = check(document, testapp.post_json("/envs/x1/execute", {
        "code": "class H:\n    def _repr_html_(self): return '<b>h</b>'\ndisplay(H())\nH()"}),
        "POST", path)
    assert [o["output_type"] for o in shown["outputs"]] == ["display_data", "execute_result"]
    pending = testapp.post("/envs/x1/execute", {"code": "import time; time.sleep(0.5); 5",
                                                "wait": "0"}, status=202)
    record = check(document, pending, "POST", path)
    n = record["execution_count"]
    assert pending.headers["Location"] == "/envs/x1/executions/%d" % n
    done = check(document, testapp.get("/envs/x1/executions/%d?wait=30" % n),
                 "GET", "/envs/{id}/executions/{n}")
    assert done["status"] == "ok"
    events = check(document, testapp.post("/envs/x1/execute", {"code": "print(1)\n2",
                                                               "stream": "1"}),
                   "POST", path)
    assert events[0]["event"] == "accepted" and events[-1]["event"] == "record"
    check(document, testapp.get("/envs/x1/executions/%d?stream=1" % n),
          "GET", "/envs/{id}/executions/{n}")
    running = testapp.post("/envs/x1/execute", {"code": "import time; time.sleep(30)",
                                                "wait": "0"}, status=202).json
    cancelled = check(document, testapp.post(
        "/envs/x1/executions/%d/cancel" % running["execution_count"]),
        "POST", "/envs/{id}/executions/{n}/cancel")
    assert cancelled["execution_count"] == running["execution_count"]
    page = check(document, testapp.get("/envs/x1/executions?since=0&limit=2"),
                 "GET", "/envs/{id}/executions")
    assert page["next"] == 3
    check(document, testapp.get("/envs/x1/notebook"), "GET", "/envs/{id}/notebook")


def test_introspection_answers_fit_their_schemas(testapp, document):
    testapp.put("/envs/i1", status=201)
    testapp.post("/envs/i1/execute", {"code": "import json\nvalue = [1, 2]"})
    check(document, testapp.post("/envs/i1/complete", {"code": "json.du"}),
          "POST", "/envs/{id}/complete")
    check(document, testapp.post_json("/envs/i1/inspect", {"code": "json.dumps",
                                                            "detail_level": 1}),
          "POST", "/envs/{id}/inspect")
    check(document, testapp.post("/envs/i1/inspect", {"code": "nothing_here"}),
          "POST", "/envs/{id}/inspect")
    for code in ("for i in x:", "x = 1", "x = )"):
        check(document, testapp.post("/envs/i1/is_complete", {"code": code}),
              "POST", "/envs/{id}/is_complete")
    check(document, testapp.get("/envs/i1/variables?all=1"), "GET", "/envs/{id}/variables")


def test_original_api_answers_fit_their_schemas(testapp, document):
    check(document, testapp.post("/env/create", {"id": "1"}), "POST", "/env/create")
    check(document, testapp.post("/", {"id": "1", "code": "x = 1\nprint(x)"}), "POST", "/")
    check(document, testapp.post("/", {"id": "1", "code": "1/0"}), "POST", "/")
    check(document, testapp.post("/env/get", {"id": "1"}), "POST", "/env/get")
    check(document, testapp.post("/env/get", {"id": "nope"}), "POST", "/env/get")
    check(document, testapp.post("/env/create", {"id": ".bad"}), "POST", "/env/create")
    check(document, testapp.post("/env/delete", {"id": "1"}), "POST", "/env/delete")


def test_error_answers_fit_their_schemas(testapp, anon, document, make_test_app):
    import webtest
    testapp.put("/envs/e1", status=201)
    res = testapp.post("/envs/e1/execute", "{not json", content_type="application/json",
                       status=400)
    assert_problem(res, 400)
    check(document, res, "POST", "/envs/{id}/execute")
    res = testapp.post_json("/envs/e1/execute", {}, status=400)
    check(document, res, "POST", "/envs/{id}/execute")
    res = anon.get("/envs", status=401)
    assert_problem(res, 401, "unauthorized")
    check(document, res, "GET", "/envs")
    res = testapp.get("/envs/missing", status=404)
    assert_problem(res, 404, "env-not-found")
    check(document, res, "GET", "/envs/{id}")
    check(document, testapp.get("/envs/e1/executions/99", status=404),
          "GET", "/envs/{id}/executions/{n}")
    res = testapp.post_json("/envs", {"id": "e1"}, status=409)
    assert_problem(res, 409, "env-exists")
    check(document, res, "POST", "/envs")
    res = testapp.post("/envs/e1/execute", b"code=1", content_type="text/plain", status=415)
    check(document, res, "POST", "/envs/{id}/execute")
    res = testapp.get("/envs/bad%20id", status=422)
    check(document, res, "GET", "/envs/{id}")
    res = testapp.post_json("/envs/e1/execute", {"code": "1", "timeout": -1}, status=422)
    check(document, res, "POST", "/envs/{id}/execute")
    res = testapp.post_json("/envs/e1/inspect", {"code": "x", "detail_level": 5}, status=422)
    check(document, res, "POST", "/envs/{id}/inspect")
    # 405 belongs to no operation (the method is not one): it is still a Problem.
    res = testapp.patch("/envs", status=405)
    assert not schema_errors(document, {"$ref": "#/components/schemas/Problem"}, res.json)
    small = webtest.TestApp(make_test_app(max_body=64),
                            extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    res = small.post("/envs/e1/execute", {"code": "x" * 100}, status=413)
    check(document, res, "POST", "/envs/{id}/execute")
    testapp.post("/envs/e1/execute", {"code": "import os; os._exit(3)"})
    res = testapp.post("/envs/e1/execute", {"code": "1"}, status=409)
    assert_problem(res, 409, "env-not-running")
    check(document, res, "POST", "/envs/{id}/execute")
    check(document, testapp.get("/envs/e1", status=200), "GET", "/envs/{id}")
