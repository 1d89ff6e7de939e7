"""The published contract is the validation that runs: every declared parameter, probed.

For each operation and each parameter it declares, values around the bounds
the *served* /openapi.json gives (minimum - 1, minimum, maximum, maximum + 1,
a fraction past it...) and a fixed list of awkward values (leading zeros,
exponents, spaces, other scripts' digits, yes/no words, JSON in text, 65-char
ids...) are sent, one parameter varied at a time, as JSON and as text (a form
field, a query parameter or a path segment).  The document's own schema,
checked with ``jsonschema``, says whether each value is valid; the service must
agree: an invalid value is a 400/422 naming the parameter, a valid one never
is.  Nothing here reads the route table: a bound that exists only in the code,
or only in the document, fails.  (Run against the code before the route table
it found 556: ``since``/``limit``/``n`` past their bounds, ``wait`` and
``stream`` on streams, ``0``/``00`` limits accepted by the form pattern and
refused, ``256MiB`` refused by it and accepted, booleans as ``yes``...)
"""

import json
import shutil
import tempfile
from urllib.parse import quote, urlencode

import pytest
import webtest

from helpers import TOKEN

jsonschema = pytest.importorskip("jsonschema")

TEXT_VALUES = ["0", "1", "2", "-1", "0.5", "1.5", "00", "01", "1e3", " 1", "1 ", "+1", "٣",
               "abc", "true", "FALSE", "yes", "Off", "maybe", "none", "null", "", "{}",
               '{"a": "b"}', '{"a": 1}', "[]", "a", "a" * 64, "a" * 65, ".a", "a b",
               "256MiB", "255MiB", "1GiB", "512m", "1.5G", "2T", "0K"]
JSON_VALUES = [None, True, False, 0, 1, -1, 0.5, 1.5, 2.0, [], {}, {"a": "b"}, {"a": 1},
               {"a": ["b"]}, 10 ** 30]
ENV, EXECUTION = "b", 1  # an env that exists, with execution 1 finished
# Valid values of these would create environments (one kernel each): the same id rule
# is probed on every other route, where a valid unknown id is a 404.
SKIPPED = {("POST", "/envs", "id"), ("PUT", "/envs/{id}", "id")}
# Answered by the handler, never with a 422: the original API's routes answer 200 with an
# error key (see the last test), a console file that is not there is a 404.
UNCHECKED_TAGS = {"original API", "console"}


@pytest.fixture(scope="module")
def client():
    from wsgikernel import make_app
    state_dir = tempfile.mkdtemp(prefix="wk-ct-")
    app = make_app(state_dir=state_dir, token=TOKEN, pool_size=0, kill_grace=1, max_timeout=60,
                   default_wait=10)
    client = webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    try:
        client.put("/envs/" + ENV, status=201)
        assert client.post_json("/envs/%s/execute" % ENV, {"code": "1"}).json["status"] == "ok"
        yield client
    finally:
        app.close()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def document(client):
    document = client.get("/openapi.json").json
    COMPONENTS["components"] = document["components"]
    return document


def numbers(schema):
    """Boundary values of every numeric branch of ``schema``: inside and just outside."""
    found = []
    for branch in schema.get("anyOf", [schema]):
        for key in ("minimum", "maximum"):
            if key in branch:
                bound = branch[key]
                found += [bound, bound - 1, bound + 1]
                if "number" in branch.get("type", ()):
                    found += [bound - 0.5, bound + 0.5, bound + 0.001]
    return found


def candidates(schema):
    """(JSON values, text values) to probe a parameter whose JSON schema is ``schema``."""
    bounds = numbers(schema)
    text = TEXT_VALUES + [repr(value) if isinstance(value, float) else str(value)
                          for value in bounds]
    return JSON_VALUES + bounds + text, text


COMPONENTS = {}  # the served document's, for the $refs of its schemas


def is_valid(schema, value):
    return jsonschema.Draft202012Validator(dict(schema, **COMPONENTS)).is_valid(value)


class Probe:
    """One operation: the smallest valid request, and how to vary one parameter of it."""

    def __init__(self, client, document, method, pattern):
        self.client, self.method, self.pattern = client, method, pattern
        self.operation = document["paths"][pattern][method.lower()]
        self.path_values = {"id": ENV, "n": EXECUTION, "source": ENV, "name": "c1"}
        body = self.operation.get("requestBody", {}).get("content", {})
        self.json_body = body.get("application/json", {}).get("schema")
        self.form_body = body.get("application/x-www-form-urlencoded", {}).get("schema")
        self.minimal = {name: "1" for name in (self.json_body or {}).get("required", ())}
        if "id" in (self.json_body or {}).get("properties", {}):
            self.minimal["id"] = ENV  # POST /envs: a valid request is then a 409, not a new env

    def params(self):
        """(name, where, JSON schema or None, text schema) of every declared parameter."""
        for param in self.operation.get("parameters", ()):
            yield param["name"], param["in"], None, param["schema"]
        for name, schema in (self.json_body or {}).get("properties", {}).items():
            yield name, "body", schema, self.form_body["properties"][name]

    def send(self, where, name, value, as_json):
        path_values, query = dict(self.path_values), {}
        body = dict(self.minimal)
        if where == "path":
            path_values[name] = value
        elif where == "query":
            query[name] = value
        else:
            body[name] = value
        url = self.pattern
        for key, part in path_values.items():
            url = url.replace("{%s}" % key, quote(str(part), safe=""))
        if query:
            url += "?" + urlencode(query)
        if as_json:
            payload, ctype = json.dumps(body).encode(), "application/json"
        else:
            payload, ctype = urlencode(body).encode(), "application/x-www-form-urlencoded"
        kwargs = {"body": payload, "content_type": ctype} if self.json_body else {}
        return self.client.request(url, method=self.method, expect_errors=True, **kwargs), body


def disagreements(probe, name, where, json_schema, text_schema):
    """Values where the document and the service disagree, as readable lines."""
    found = []

    def judge(value, valid, as_json):
        res, body = probe.send(where, name, value, as_json)
        refused = res.status_int in (400, 422)
        if refused and res.content_type == "application/problem+json":
            refused = res.json.get("param") == name
        if refused == valid:
            found.append("%s %s %s=%r (%s): document says %s, service answered %s %s" % (
                probe.method, probe.pattern, name, value, "JSON" if as_json else "text",
                "valid" if valid else "invalid", res.status, res.text[:160]))

    json_values, text_values = candidates(json_schema or text_schema)
    for value in text_values:
        if where == "path" and (value == "" or value in (".", "..")):
            continue  # no such path segment: another route (or none) answers
        if where == "body":
            valid = is_valid(probe.form_body, dict(probe.minimal, **{name: value}))
        else:
            valid = is_valid(text_schema, value)
        judge(value, valid, as_json=False)
    if where == "body":
        for value in json_values:
            judge(value, is_valid(probe.json_body, dict(probe.minimal, **{name: value})), True)
    return found


def test_every_declared_parameter_is_validated_as_published(client, document):
    found = []
    for pattern, item in document["paths"].items():
        for method, operation in item.items():
            if set(operation["tags"]) & UNCHECKED_TAGS:
                continue
            probe = Probe(client, document, method.upper(), pattern)
            for name, where, json_schema, text_schema in probe.params():
                if (method.upper(), pattern, name) not in SKIPPED:
                    found += disagreements(probe, name, where, json_schema, text_schema)
    assert found == [], "%d disagreements:\n%s" % (len(found), "\n".join(found[:40]))


@pytest.mark.parametrize("body", [
    {"silent": True, "wait": 1}, {"silent": "yes", "wait": "0"}, {"silent": 1, "stream": True},
    {"silent": True, "wait": None}, {"silent": True, "stream": "off"},
    {"silent": False, "wait": 0}, {"silent": "0", "stream": "1", "wait": 0}, {"silent": True},
])
def test_silent_with_wait_or_stream_is_refused_as_published(client, document, body):
    """The one rule across parameters: the document states it, the service enforces it."""
    probe = Probe(client, document, "POST", "/envs/{id}/execute")
    body = dict(body, code="1")
    for schema, as_json in ((probe.json_body, True), (probe.form_body, False)):
        sent = body if as_json else {k: str(v).lower() for k, v in body.items() if v is not None}
        valid = is_valid(schema, sent)
        payload = json.dumps(sent) if as_json else urlencode(sent)
        res = client.request("/envs/%s/execute" % ENV, method="POST", expect_errors=True,
                             body=payload.encode(), content_type="application/json" if as_json
                             else "application/x-www-form-urlencoded")
        assert (res.status_int == 422) != valid, (sent, as_json, res.status, res.text[:200])
        if not valid:
            assert res.json["param"] == "silent"
    assert is_valid(probe.json_body, {"code": "1", "silent": True}), "a silent cell is valid"


def test_the_original_api_publishes_no_constraint_it_does_not_have(client, document):
    """Its routes answer 200 to anything (with an error key), so nothing is required."""
    for path in ("/", "/env/create", "/env/delete", "/env/get"):
        operation = document["paths"][path]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        assert "required" not in schema and "422" not in operation["responses"]
        for body in ({}, {"id": 5}, {"id": ".bad", "code": ["x"]}):
            res = client.post_json(path, body, status=200)
            assert "error" in res.json or "envs" in res.json, (path, body, res.json)
