"""The introspection routes (DESIGN 4.4) through the HTTP API, with real kernels.

One app and one env per module (per xdist worker) serve the tests that only
read; the busy-env test makes its own env so its 30 s cell disturbs nobody.
"""

import os
import shutil
import tempfile
import threading

import pytest
import webtest

from helpers import HANG_GUARD, assert_problem, wait_for

CALL_GUARD = 15.0  # seconds: a hang guard well under the 30 s cell, not a speed claim

SETUP = '''
import os, json
my_value = 42
my_list = [1, 2, 3]
table = {"key": 1, "kettle": 2}
_private = 1

class Holder:
    """Holds things."""
    def __init__(self):
        self.inner = type("Inner", (), {})()
        self.inner.content = "text"
    def method(self, a, b=2):
        """A method."""
        return a

holder = Holder()

def scale(x, factor=2):
    """Multiply x."""
    return x * factor

class Trap:
    @property
    def prop(self):
        open("marker-property", "w").close()
        return 1
    def __getattr__(self, name):
        open("marker-getattr", "w").close()
        raise AttributeError(name)

obj = Trap()
open("notes.txt", "w").close()
os.makedirs("subdir", exist_ok=True)
'''


@pytest.fixture(scope="module")
def client():
    from wsgikernel import make_app
    state_dir = tempfile.mkdtemp(prefix="wk-")
    app = make_app(state_dir=state_dir, token=None, kill_grace=1, pool_size=0)
    try:
        yield webtest.TestApp(app)
    finally:
        app.close()
        shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def env(client):
    env = client.post_json("/envs", {}).json
    record = run(client, env["id"], SETUP)
    assert record["status"] == "ok", record
    return env


def run(client, env_id, code):
    res = client.post_json("/envs/%s/execute" % env_id, {"code": code})
    assert res.status_int == 200, res.body[:500]
    return res.json


def guarded(call, timeout=CALL_GUARD):
    """Run ``call()`` on a thread; fail if it has not returned within ``timeout``."""
    result = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(timeout)
    assert result, "the call did not return within the hang guard"
    return result[0]


def post(client, env, route, body, status=200):
    res = client.post_json("/envs/%s/%s" % (env["id"], route), body, status=status)
    return res.json if status == 200 else res


def complete(client, env, code, **extra):
    reply = post(client, env, "complete", dict(extra, code=code))
    assert set(reply) == {"status", "matches", "cursor_start", "cursor_end", "metadata"}
    assert reply["status"] == "ok"
    return reply


# -- complete -------------------------------------------------------------------

def test_complete_names(client, env):
    reply = complete(client, env, "my_")
    assert reply["matches"] == ["my_list", "my_value"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (0, 3)
    assert "print" in complete(client, env, "pri")["matches"]
    assert "while" in complete(client, env, "whi")["matches"]


def test_complete_at_cursor_pos(client, env):
    reply = complete(client, env, "x = my_v + 1", cursor_pos=8)
    assert reply["matches"] == ["my_value"]
    assert (reply["cursor_start"], reply["cursor_end"]) == (4, 8)


def test_complete_attributes(client, env):
    reply = complete(client, env, "os.pa")
    assert "path" in reply["matches"] and reply["cursor_start"] == 3
    assert complete(client, env, "holder.inner.con")["matches"] == ["content"]
    assert "upper" in complete(client, env, "holder.inner.content.up")["matches"]


def test_complete_dict_keys(client, env):
    reply = complete(client, env, "table['ke")
    assert reply["matches"] == ["kettle", "key"]
    assert reply["cursor_start"] == len("table['")


def test_complete_module_names(client, env):
    assert "json" in complete(client, env, "import js")["matches"]
    reply = complete(client, env, "from os.path import jo")
    assert "join" in reply["matches"] and reply["cursor_start"] == len("from os.path import ")


def test_complete_paths_relative_to_the_env_cwd(client, env):
    reply = complete(client, env, "open('no")
    assert reply["matches"] == ["notes.txt"]
    assert reply["cursor_start"] == len("open('")
    assert complete(client, env, 'open("subd')["matches"] == ["subdir/"]


def test_completion_does_not_run_a_property(client, env):
    assert {"prop"} <= set(complete(client, env, "obj.")["matches"])
    assert complete(client, env, "obj.pro")["matches"] == ["prop"]
    assert complete(client, env, "obj.prop.")["matches"] == []
    cwd = client.get("/envs/%s" % env["id"]).json["cwd"]
    assert not os.path.exists(os.path.join(cwd, "marker-property"))
    assert not os.path.exists(os.path.join(cwd, "marker-getattr"))
    record = run(client, env["id"], "sorted(os.listdir('.'))")
    assert "marker" not in record["result"]["text/plain"]


# -- inspect --------------------------------------------------------------------

def test_inspect_builtin(client, env):
    reply = post(client, env, "inspect", {"code": "len", "detail_level": 0})
    assert reply["found"] is True and reply["status"] == "ok"
    assert reply["name"] == "len" and reply["signature"] == "(obj, /)"
    assert "number of items" in reply["data"]["text/plain"]
    assert "text/markdown" in reply["data"]
    assert "source" not in reply


def test_inspect_function_from_earlier_cell(client, env):
    reply = post(client, env, "inspect", {"code": "scale", "detail_level": 1})
    assert reply["found"] and reply["type"] == "function"
    assert reply["signature"] == "(x, factor=2)" and reply["docstring"] == "Multiply x."
    assert reply["file"].startswith("<cell ")
    assert reply["source"].startswith("def scale(x, factor=2):")


def test_inspect_methods(client, env):
    reply = post(client, env, "inspect", {"code": "str.upper"})
    assert reply["found"] and "uppercase" in reply["docstring"]
    reply = post(client, env, "inspect", {"code": "holder.method(1, ", "detail_level": 1})
    assert reply["name"] == "holder.method" and reply["signature"] == "(a, b=2)"
    assert "def method(self, a, b=2):" in reply["source"]


def test_inspect_missing_name_is_200(client, env):
    reply = post(client, env, "inspect", {"code": "no_such_name"})
    assert reply == {"status": "ok", "found": False, "data": {}, "metadata": {}}


# -- is_complete ------------------------------------------------------------------

@pytest.mark.parametrize("code, expected", [
    ("x = 1", {"status": "complete"}),
    ("for i in x:", {"status": "incomplete", "indent": "    "}),
    ("1 +* 2", {"status": "invalid"}),
])
def test_is_complete(client, env, code, expected):
    assert post(client, env, "is_complete", {"code": code}) == expected


# -- variables ----------------------------------------------------------------------

def test_variables(client, env):
    listed = client.get("/envs/%s/variables" % env["id"]).json["variables"]
    names = [entry["name"] for entry in listed]
    assert names == sorted(names)
    assert {"my_value", "my_list", "table", "holder", "scale"} <= set(names)
    assert not {"os", "json", "_private", "__builtins__"} & set(names)
    by_name = {entry["name"]: entry for entry in listed}
    assert by_name["my_list"] == {"name": "my_list", "type": "list", "repr": "[1, 2, 3]",
                                  "len": 3}
    everything = client.get("/envs/%s/variables?all=1" % env["id"]).json["variables"]
    names = {entry["name"] for entry in everything}
    assert {"os", "_private", "__name__"} <= names and "__builtins__" not in names


def test_slow_repr_does_not_hang_variables(client, env):
    run(client, env["id"], "import time\nclass Slow:\n    def __repr__(self):\n"
                           "        time.sleep(60)\n        return 'slow'\nslow = Slow()")
    try:
        res = guarded(lambda: client.get("/envs/%s/variables" % env["id"]))
        by_name = {entry["name"]: entry for entry in res.json["variables"]}
        assert by_name["slow"]["repr"] == "<repr timed out>"
        assert by_name["my_value"]["repr"] == "42"
    finally:
        run(client, env["id"], "del slow")


# -- while a cell runs ------------------------------------------------------------------

def test_answered_while_a_cell_runs(client):
    env_id = client.post_json("/envs", {}).json["id"]
    try:
        run(client, env_id, "ready_value = 7")
        res = client.post_json("/envs/%s/execute" % env_id,
                               {"code": "import time; time.sleep(30)", "wait": 0}, status=202)
        n = res.json["execution_count"]
        execution = "/envs/%s/executions/%d" % (env_id, n)
        wait_for(lambda: client.get(execution).json["status"] == "running",
                 message="the sleep to start")
        reply = guarded(lambda: client.post_json("/envs/%s/complete" % env_id,
                                                 {"code": "ready_"}).json)
        assert reply["matches"] == ["ready_value"]
        listed = guarded(lambda: client.get("/envs/%s/variables" % env_id).json)
        assert {"name": "ready_value", "type": "int", "repr": "7"} in listed["variables"]
        assert guarded(lambda: client.post_json("/envs/%s/is_complete" % env_id,
                                                {"code": "x = 1"}).json) == {"status": "complete"}
        reply = guarded(lambda: client.post_json("/envs/%s/inspect" % env_id,
                                                 {"code": "time.sleep"}).json)
        assert reply["found"] is True
        assert client.get(execution).json["status"] == "running"  # undisturbed
        client.post_json("/envs/%s/interrupt" % env_id, {})
        wait_for(lambda: client.get("/envs/%s" % env_id).json["state"] == "idle"
                 and client.get(execution).json["status"] not in ("queued", "running"),
                 timeout=HANG_GUARD, message="the interrupted env to be idle")
    finally:
        client.delete("/envs/%s" % env_id)


# -- errors -------------------------------------------------------------------------

@pytest.mark.parametrize("route", ["complete", "inspect", "is_complete"])
def test_missing_code_is_400(client, env, route):
    res = post(client, env, route, {}, status=400)
    assert_problem(res, 400, "missing-parameter")


def test_detail_level_out_of_range_is_422(client, env):
    res = post(client, env, "inspect", {"code": "len", "detail_level": 2}, status=422)
    assert_problem(res, 422, "invalid-parameter", param="detail_level")


def test_negative_cursor_pos_is_422(client, env):
    res = post(client, env, "complete", {"code": "len", "cursor_pos": -1}, status=422)
    assert_problem(res, 422, "invalid-parameter", param="cursor_pos")


@pytest.mark.parametrize("method, route", [("POST", "complete"), ("POST", "inspect"),
                                           ("POST", "is_complete"), ("GET", "variables")])
def test_unknown_env_is_404(client, method, route):
    path = "/envs/no-such-env/%s" % route
    if method == "POST":
        res = client.post_json(path, {"code": "x"}, status=404)
    else:
        res = client.get(path, status=404)
    assert_problem(res, 404, "env-not-found")
