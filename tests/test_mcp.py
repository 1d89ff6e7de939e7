"""POST /mcp driven by the official MCP Python SDK (the test extra) against a live
scripts/serve.py, and again under gunicorn -w 2 (issue 22).

The SDK's Streamable HTTP client does the handshake, lists the tools (it validates
every structuredContent against the tool's outputSchema), calls them, sends progress
tokens and cancellations.  What the SDK cannot send (bad JSON-RPC, no token, a
foreign Origin) is sent raw with urllib.
"""

import asyncio
import contextlib
import glob
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.request

import pytest

from deploy_helpers import gunicorn
from helpers import HANG_GUARD, TOKEN, LiveServer, wait_for

mcp = pytest.importorskip("mcp", reason="needs the mcp SDK (the test extra, Python >= 3.11)")
httpx2 = pytest.importorskip("httpx2")
from mcp import ClientSession  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

TOOLS = {"list_environments", "create_environment", "execute_python", "get_execution",
         "list_variables", "inspect", "complete", "interrupt", "restart_environment",
         "delete_environment", "export_notebook"}


STATE_DIRS = {}  # server URL -> its state dir


@pytest.fixture(scope="module", params=["serve", "gunicorn"])
def server(request):
    state = tempfile.mkdtemp(prefix="wk-mcp-")
    try:
        if request.param == "serve":
            with LiveServer("--pool-size", "0", "--quiet", state_dir=state) as live:
                STATE_DIRS[live.url.rstrip("/")] = state
                yield live.url.rstrip("/")
        else:
            with gunicorn(state, "--workers", "2") as live:
                STATE_DIRS[live.url.rstrip("/")] = state
                yield live.url.rstrip("/")
    finally:
        shutil.rmtree(state, ignore_errors=True)


@contextlib.asynccontextmanager
async def session(url):
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer " + TOKEN},
                                  timeout=HANG_GUARD) as http:
        async with streamable_http_client(url + "/mcp", http_client=http) as streams:
            async with ClientSession(streams[0], streams[1]) as client:
                client.initialized = await client.initialize()
                yield client


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 120))


def texts(result):
    return "\n".join(part.text for part in result.content if part.type == "text")


def test_initialize_list_tools_and_their_schemas(server):
    import jsonschema

    async def scenario():
        async with session(server) as client:
            listed = await client.list_tools()
            return client.initialized, listed
    initialized, listed = run(scenario())
    assert initialized.server_info.name == "wsgikernel"
    assert initialized.protocol_version in ("2025-11-25", "2025-06-18")
    assert {tool.name for tool in listed.tools} == TOOLS
    for tool in listed.tools:
        assert tool.description and len(tool.description) > 20, tool.name
        jsonschema.Draft202012Validator.check_schema(tool.input_schema)
        jsonschema.Draft202012Validator.check_schema(tool.output_schema)
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema["type"] == "object"


def test_state_persists_across_calls_and_errors_are_results(server):
    async def scenario():
        async with session(server) as client:
            created = await client.call_tool("create_environment", {"id": "agent"})
            first = await client.call_tool("execute_python",
                                           {"env": "agent", "code": "x = 21\nprint('set')"})
            second = await client.call_tool("execute_python", {"env": "agent", "code": "x * 2"})
            failed = await client.call_tool("execute_python", {"env": "agent", "code": "1/0"})
            unknown = await client.call_tool("execute_python", {"env": "nope", "code": "1"})
            variables = await client.call_tool("list_variables", {"env": "agent"})
            return created, first, second, failed, unknown, variables
    created, first, second, failed, unknown, variables = run(scenario())
    assert not created.is_error and created.structured_content["id"] == "agent"
    assert texts(first) == "set\n" and not first.is_error
    assert second.structured_content["result"]["text/plain"] == "42"
    assert "42" in texts(second)
    assert failed.is_error and "ZeroDivisionError" in texts(failed)
    assert failed.structured_content["error"]["ename"] == "ZeroDivisionError"
    assert unknown.is_error
    assert unknown.structured_content["type"] == "urn:wsgikernel:env-not-found"
    assert [v["name"] for v in variables.structured_content["variables"]] == ["x"]


def test_an_image_comes_as_image_content(server):
    pytest.importorskip("matplotlib")

    async def scenario():
        async with session(server) as client:
            await client.call_tool("create_environment", {"id": "plots"})
            return await client.call_tool("execute_python", {
                "env": "plots", "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])"})
    result = run(scenario())
    images = [part for part in result.content if part.type == "image"]
    assert images and images[0].mime_type == "image/png", result.content


def test_a_timeout_and_progress_notifications(server):
    progress = []

    async def record_progress(value, total, message):
        progress.append((value, message))

    async def scenario():
        async with session(server) as client:
            await client.call_tool("create_environment", {"id": "slow"})
            timed = await client.call_tool("execute_python", {
                "env": "slow", "code": "import time\ntime.sleep(30)", "timeout": 1})
            steps = await client.call_tool("execute_python", {
                "env": "slow", "code": "import time\nfor i in range(3):\n    print('step', i, "
                "flush=True)\n    time.sleep(0.3)"}, progress_callback=record_progress)
            return timed, steps
    timed, steps = run(scenario())
    assert timed.is_error and timed.structured_content["reason"] == "timeout"
    assert not steps.is_error and texts(steps).count("step") == 3
    assert progress and any("step" in (message or "") for _, message in progress), progress
    assert [value for value, _ in progress] == sorted(value for value, _ in progress)


def test_a_cancelled_call_cancels_its_execution(server):
    async def scenario():
        async with session(server) as client:
            await client.call_tool("create_environment", {"id": "cancel"})
            with pytest.raises(mcp.MCPError):  # the SDK gives up, and sends the cancel
                await client.call_tool("execute_python", {
                    "env": "cancel", "code": "import time\ntime.sleep(60)"},
                    read_timeout_seconds=2)
            record = await client.call_tool("get_execution", {"env": "cancel", "n": 1,
                                                              "wait": 20})
            # The server still answers the cancelled request once its cell has ended
            # (sessions.py: its call file goes first). An SDK leaving while that late
            # answer arrives fails in its own teardown, so the session waits for it.
            calls = os.path.join(STATE_DIRS[server], "mcp", "*", "call-*.json")
            wait_for(lambda: not glob.glob(calls), message="the cancelled call's answer")
            await client.send_ping()
            return record
    record = run(scenario()).structured_content
    assert record["status"] == "aborted" and record["reason"] == "cancelled", record


# -- what the SDK would never send ---------------------------------------------------

def post(server, body, token=TOKEN, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(server + "/mcp", data=data, method="POST", headers=dict(
        {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
        **(headers or {})))
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=HANG_GUARD) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "raw", "version": "0"}}}


def test_refusals_and_json_rpc_errors(server):
    status, _, body = post(server, INITIALIZE, token=None)
    assert status == 401 and json.loads(body)["status"] == 401
    status, _, body = post(server, INITIALIZE, headers={"Origin": "http://evil.example"})
    assert status == 403, body
    status, headers, body = post(server, INITIALIZE)
    assert status == 200 and json.loads(body)["result"]["protocolVersion"] == "2025-06-18"
    session_id = headers["Mcp-Session-Id"]
    ours = {"Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-06-18"}

    def error_of(body, **kwargs):
        status, _, raw = post(server, body, headers=dict(ours, **kwargs))
        return status, json.loads(raw)["error"]["code"]
    assert error_of(b"{not json") == (400, -32700)
    assert error_of([{"jsonrpc": "2.0", "id": 2, "method": "ping"}]) == (400, -32600)
    assert error_of({"jsonrpc": "1.0", "id": 2, "method": "ping"}) == (400, -32600)
    assert error_of({"jsonrpc": "2.0", "id": 2, "method": "nope"}) == (200, -32601)
    assert error_of({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                     "params": {"name": "no_such_tool", "arguments": {}}}) == (200, -32602)
    assert error_of({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
                     "params": {"name": "execute_python", "arguments": "x"}}) == (200, -32602)
    # 2025-06-18: arguments that fail the schema are a JSON-RPC error
    assert error_of({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {
        "name": "execute_python", "arguments": {"env": "agent"}}}) == (200, -32602)
    status, _, body = post(server, {"jsonrpc": "2.0", "id": 6, "method": "ping"},
                           headers={"MCP-Protocol-Version": "2025-06-18"})
    assert status == 400, body  # no session
    status, _, body = post(server, {"jsonrpc": "2.0", "id": 6, "method": "ping"},
                           headers=dict(ours, **{"Mcp-Session-Id": "x" * 32}))
    assert status == 404, body
    status, _, body = post(server, {"jsonrpc": "2.0", "id": 6, "method": "ping"},
                           headers=dict(ours, **{"MCP-Protocol-Version": "1999-01-01"}))
    assert status == 400, body
    status, _, body = post(server, {"jsonrpc": "2.0", "id": 7, "method": "ping"}, headers=ours)
    assert status == 200 and json.loads(body) == {"jsonrpc": "2.0", "id": 7, "result": {}}
    status, _, body = post(server, {"jsonrpc": "2.0", "method": "notifications/initialized"},
                           headers=ours)
    assert (status, body) == (202, b"")
