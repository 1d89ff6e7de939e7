"""mcp/ without the SDK: JSON-RPC parsing, sessions, configuration, revisions (issue 22).

Through WebTest and real kernels where a tool runs; tests/test_mcp.py drives the same
endpoint with the official SDK.
"""

import json

import pytest
import webtest

from helpers import TOKEN, assert_problem
from wsgikernel.mcp import jsonrpc

ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.mark.parametrize("raw, code", [
    (b"{", jsonrpc.PARSE_ERROR), (b"\xff", jsonrpc.PARSE_ERROR),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "x": NaN}', jsonrpc.PARSE_ERROR),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "\\ud800"}', jsonrpc.PARSE_ERROR),
    (b"[]", jsonrpc.INVALID_REQUEST), (b"5", jsonrpc.INVALID_REQUEST),
    (b'{"id": 1, "method": "ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": 5}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": []}', jsonrpc.INVALID_REQUEST),
    (b'{"jsonrpc": "2.0", "id": 1}', jsonrpc.INVALID_REQUEST),
])
def test_what_is_not_one_message(raw, code):
    with pytest.raises(jsonrpc.RpcError) as raised:
        jsonrpc.parse(raw)
    assert raised.value.code == code
    assert raised.value.answer()["error"]["code"] == code


def test_the_kinds_of_message():
    assert jsonrpc.parse(b'{"jsonrpc": "2.0", "id": "a", "method": "ping"}')[0] == "request"
    assert jsonrpc.parse(b'{"jsonrpc": "2.0", "method": "x/y"}')[0] == "notification"
    assert jsonrpc.parse(b'{"jsonrpc": "2.0", "id": 3, "result": {}}')[0] == "response"


class Mcp:
    """An MCP client over WebTest: initialize, then calls with the session's headers."""

    def __init__(self, app, version="2025-11-25"):
        self.http = webtest.TestApp(app, extra_environ={
            "HTTP_AUTHORIZATION": "Bearer " + TOKEN})
        res = self.post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": version, "capabilities": {},
            "clientInfo": {"name": "unit", "version": "1"}}})
        self.version = res.json["result"]["protocolVersion"]
        self.headers = {"Mcp-Session-Id": res.headers["Mcp-Session-Id"],
                        "MCP-Protocol-Version": self.version}
        self.ids = iter(range(1, 10 ** 6))

    def post(self, message, status=200, headers=None):
        return self.http.post("/mcp", json.dumps(message), content_type="application/json",
                              headers=dict(ACCEPT, **(headers or {})), status=status)

    def request(self, method, params=None):
        return self.post({"jsonrpc": "2.0", "id": next(self.ids), "method": method,
                          "params": params or {}}, headers=self.headers).json

    def call(self, name, **arguments):
        return self.request("tools/call", {"name": name, "arguments": arguments})


def test_an_unknown_version_gets_ours_and_2025_11_25_reports_bad_arguments_as_results(
        make_test_app):
    client = Mcp(make_test_app(), version="1999-01-01")
    assert client.version == "2025-11-25"
    answer = client.call("execute_python", env="x")  # no code
    assert answer["result"]["isError"] is True, answer
    assert answer["result"]["structuredContent"]["type"] == "urn:wsgikernel:missing-parameter"
    answer = client.call("execute_python", env="x", code="1", colour="red")
    assert answer["result"]["structuredContent"]["param"] == "colour", answer
    answer = client.call("create_environment", id="bad id!")
    assert answer["result"]["isError"] and "id" in answer["result"]["content"][0]["text"]


def test_mcp_tools_restricts_what_is_listed_and_callable(make_test_app):
    client = Mcp(make_test_app(mcp_tools="list_environments,list_variables"))
    listed = client.request("tools/list")["result"]["tools"]
    assert [tool["name"] for tool in listed] == ["list_environments", "list_variables"]
    assert all(tool["annotations"]["readOnlyHint"] for tool in listed)
    answer = client.call("execute_python", env="x", code="1")
    assert answer["error"]["code"] == jsonrpc.INVALID_PARAMS
    assert "list_variables" in answer["error"]["message"]
    assert not client.call("list_environments")["result"]["isError"]


def test_an_unknown_tool_in_mcp_tools_stops_the_start(make_test_app):
    with pytest.raises(ValueError, match="no_such_tool"):
        make_test_app(mcp_tools="list_environments,no_such_tool")


def test_mcp_off_is_no_route(make_test_app, testapp):
    off = webtest.TestApp(make_test_app(mcp=False),
                          extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    res = off.post("/mcp", "{}", content_type="application/json", headers=ACCEPT, status=404)
    assert_problem(res, 404, "route-not-found")


def test_resources_and_the_end_of_a_session(make_test_app):
    client = Mcp(make_test_app())
    assert not client.call("create_environment", id="res")["result"]["isError"]
    assert not client.call("execute_python", env="res", code="print('hi')")["result"]["isError"]
    uris = [r["uri"] for r in client.request("resources/list")["result"]["resources"]]
    assert uris == ["wsgikernel://envs/res/history", "wsgikernel://envs/res/notebook"]
    [content] = client.request("resources/read", {"uri": uris[1]})["result"]["contents"]
    assert json.loads(content["text"])["cells"][0]["outputs"][0]["text"] == "hi\n"
    for uri in ("wsgikernel://envs/nope/history", "file:///etc/passwd", 5):
        assert client.request("resources/read", {"uri": uri})["error"]["code"] == -32002
    client.http.delete("/mcp", headers=client.headers, status=204)
    assert_problem(client.http.delete("/mcp", headers=client.headers, status=404), 404,
                   "mcp-session-not-found")  # ended already
    res = client.post({"jsonrpc": "2.0", "id": 9, "method": "ping"}, status=404,
                      headers=client.headers)
    assert_problem(res, 404, "mcp-session-not-found")
    assert_problem(client.http.delete("/mcp", status=400), 400, "mcp-session-required")


def test_transport_refusals(make_test_app):
    client = Mcp(make_test_app())
    res = client.http.post("/mcp", "{}", content_type="text/plain", headers=ACCEPT, status=415)
    assert_problem(res, 415)
    res = client.http.post("/mcp", "{}", content_type="application/json",
                           headers={"Accept": "text/html"}, status=406)
    assert_problem(res, 406, "not-acceptable")
    res = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, status=403,
                      headers=dict(client.headers, Origin="http://evil.example"))
    assert_problem(res, 403, "forbidden")
    assert client.http.get("/mcp", status=405).headers["Allow"]
    sse = client.http.post("/mcp", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}),
                           content_type="application/json", status=200, headers=dict(
                               client.headers, Accept="text/event-stream"))
    assert sse.content_type == "text/event-stream"
    assert sse.text == 'event: message\ndata: {"jsonrpc":"2.0","id":2,"result":{}}\n\n'


def test_after_review_versions_resources_tokens_and_cors(make_test_app):
    client = Mcp(make_test_app(allowed_origins="http://inspector.example"),
                 version="2025-03-26")
    assert client.version == "2025-11-25"  # 2025-03-26 needs batches: not offered
    res = client.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, status=400,
                      headers=dict(client.headers, **{"MCP-Protocol-Version": "2025-06-18"}))
    assert_problem(res, 400)  # not the version this session negotiated
    plain = client.post({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "list_environments", "arguments": {}, "_meta": {"progressToken": True}}},
        headers=client.headers)
    assert plain.content_type == "application/json"  # a boolean is no progress token
    preflight = client.http.options("/mcp", headers={
        "Origin": "http://inspector.example", "Access-Control-Request-Method": "POST"})
    assert "Mcp-Session-Id" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.post({"jsonrpc": "2.0", "id": 3, "method": "ping"}, headers=dict(
        client.headers, Origin="http://inspector.example"))
    assert "Mcp-Session-Id" in answer.headers["Access-Control-Expose-Headers"]
    reader = Mcp(make_test_app(mcp_tools="list_environments"))
    assert reader.request("resources/list")["error"]["code"] == jsonrpc.METHOD_NOT_FOUND


def test_input_schemas_are_plain_for_a_model(make_test_app):
    client = Mcp(make_test_app())
    tools = {t["name"]: t for t in client.request("tools/list")["result"]["tools"]}
    execute = tools["execute_python"]["inputSchema"]["properties"]
    assert execute["timeout"]["type"] == ["number", "null"] and "pattern" not in execute["timeout"]
    create = tools["create_environment"]["inputSchema"]["properties"]
    assert "string" in create["memory_limit"]["type"]  # "512MiB"
    assert "sandbox_network" not in create and "resources" not in create  # refused here
