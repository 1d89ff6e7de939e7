"""Input that must get a clear 4xx, never a 500, and output that can never poison an env.

Lone surrogates in any text field, non-finite floats produced by user code,
negative or zero limits, failures after a stream has started (issue 13, part 2).
"""

import json
import os
import signal

import pytest

from helpers import HANG_GUARD, assert_problem, run, wait_for
from test_long_running import Stream

SURROGATE = '"\\ud800"'  # the JSON escape of a lone surrogate, as a client sends it


def post_raw(testapp, path, body, status="*"):
    return testapp.post(path, body, content_type="application/json", status=status)


@pytest.fixture
def env(testapp):
    testapp.put("/envs/h")
    return "h"


# -- lone surrogates ---------------------------------------------------------------

@pytest.mark.parametrize("field, body", [
    ("code", '{"code": %s}' % SURROGATE),
    ("stdin", '{"code": "input()", "stdin": %s}' % SURROGATE),
    ("user_expressions", '{"code": "1", "user_expressions": {"a": %s}}' % SURROGATE),
    ("user_expressions", '{"code": "1", "user_expressions": {%s: "1"}}' % SURROGATE),
])
def test_lone_surrogate_in_execute_is_422_naming_the_field(testapp, env, field, body):
    res = post_raw(testapp, "/envs/h/execute", body)
    problem = assert_problem(res, 422, "invalid-parameter", param=field)
    assert "surrogate" in problem["detail"]
    assert run(testapp, env, "1 + 1")["result"] == {"text/plain": "2"}  # nothing poisoned


@pytest.mark.parametrize("route", ["complete", "inspect", "is_complete"])
def test_lone_surrogate_in_introspection_is_422(testapp, env, route):
    res = post_raw(testapp, "/envs/h/" + route, '{"code": "x = %s"}' % SURROGATE[1:-1])
    assert_problem(res, 422, "invalid-parameter", param="code")


def test_lone_surrogate_as_env_id_is_422(testapp):
    res = post_raw(testapp, "/envs", '{"id": %s}' % SURROGATE)
    assert_problem(res, 422, "invalid-parameter", param="id")
    assert testapp.get("/envs").json == {"envs": []}


def test_lone_surrogate_on_compat_routes_is_an_error_body(testapp):
    res = post_raw(testapp, "/env/create", '{"id": %s}' % SURROGATE, status=200)
    assert set(res.json) == {"error"}
    testapp.post("/env/create", {"id": "c"})
    res = post_raw(testapp, "/", '{"id": "c", "code": %s}' % SURROGATE, status=200)
    assert set(res.json) == {"error"} and "surrogate" in res.json["error"], res.json
    res = testapp.post("/", {"id": "c", "code": "print(6 * 7)"})
    assert res.json == {"message": "42\n"}


def test_code_printing_a_lone_surrogate_gets_a_replacement_character(testapp, env):
    record = run(testapp, env, "print('a\\ud800b'); 'c\\udcffd'")
    assert record["status"] == "ok", record
    assert record["stdout"] == "a\ufffdb\n"
    assert record["result"]["text/plain"] == "'c\\udcffd'"  # repr escapes it anyway
    assert testapp.get("/envs/h/executions").status_int == 200


# -- non-finite floats ------------------------------------------------------------------

NAN_JSON = ("class J:\n"
            "    def _repr_json_(self):\n"
            "        return {'a': float('nan'), 'b': [float('inf'), -float('inf')], 'c': 1.5}\n")


def test_nan_in_a_result_is_a_string_and_history_stays_readable(testapp, env):
    record = run(testapp, env, NAN_JSON + "J()")
    assert record["status"] == "ok", record
    assert record["result"]["application/json"] == {"a": "nan", "b": ["inf", "-inf"], "c": 1.5}
    record = run(testapp, env, "display(J()); float('nan')")
    assert record["outputs"][0]["data"]["application/json"]["a"] == "nan"
    assert record["result"] == {"text/plain": "nan"}
    listing = testapp.get("/envs/h/executions")
    assert [r["status"] for r in listing.json["executions"]] == ["ok", "ok"]
    assert "NaN" not in listing.text
    assert testapp.get("/envs/h/notebook").status_int == 200
    assert testapp.get("/envs/h/executions/1").json["result"]["application/json"]["a"] == "nan"


def test_unserialisable_json_repr_is_its_repr_not_a_broken_kernel(testapp, env):
    code = "class S:\n    def _repr_json_(self):\n        return {'s': {1}}\nS()"
    record = run(testapp, env, code)
    assert record["status"] == "ok", record
    assert record["result"]["application/json"] == {"s": "{1}"}
    assert run(testapp, env, "2 * 21")["result"] == {"text/plain": "42"}


def test_a_history_line_with_a_nan_literal_cannot_break_later_requests(testapp, env, state_dir):
    run(testapp, env, "1")
    path = os.path.join(state_dir, "envs", "h", "history.jsonl")
    with open(path) as handle:
        line = json.loads(handle.readline())
    line.update(execution_count=2, duration=float("nan"), code="legacy")
    with open(path, "a") as handle:
        handle.write(json.dumps(line) + "\n")  # json.dumps writes NaN: what old versions did
    listing = testapp.get("/envs/h/executions?since=2")
    assert listing.json["executions"][0]["duration"] == "nan"
    assert testapp.get("/envs/h/executions/2").json["code"] == "legacy"
    assert testapp.get("/envs/h/notebook").status_int == 200


# -- limits -----------------------------------------------------------------------------

@pytest.mark.parametrize("field, value", [
    ("file_size_limit", -1), ("cpu_limit", -1), ("cpu_limit", 0), ("file_size_limit", 0),
    ("open_files_limit", 0), ("memory_limit", -1), ("cpu_limit", -0.5),
])
def test_negative_or_zero_limits_are_422(testapp, field, value):
    res = testapp.post_json("/envs", {"id": "lim", field: value}, status="*")
    assert_problem(res, 422, "invalid-parameter", param=field)
    res = testapp.put_json("/envs/lim", {field: value}, status="*")
    assert_problem(res, 422, "invalid-parameter", param=field)
    assert testapp.get("/envs").json == {"envs": []}


def test_a_per_env_limit_tightens_never_loosens(make_test_app):
    import webtest
    from helpers import TOKEN
    app = webtest.TestApp(make_test_app(file_size_limit=1 << 20),
                          extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    res = app.post_json("/envs", {"id": "big", "file_size_limit": 2 << 20}, status="*")
    assert_problem(res, 422, "invalid-parameter", param="file_size_limit")
    for value in (-1, 0):
        res = app.post_json("/envs", {"id": "big", "file_size_limit": value}, status="*")
        assert_problem(res, 422, "invalid-parameter", param="file_size_limit")
    env = app.post_json("/envs", {"id": "small", "file_size_limit": 4096}).json
    assert env["limits"]["file_size_limit"] == 4096
    code = "import resource; resource.getrlimit(resource.RLIMIT_FSIZE)"
    assert run(app, "small", code)["result"]["text/plain"] == "(4096, 4096)"
    env = app.post_json("/envs", {"id": "default"}).json
    assert env["limits"]["file_size_limit"] == 1 << 20


@pytest.mark.parametrize("setting", [{"cpu_limit": -1}, {"file_size_limit": 0},
                                     {"open_files_limit": -5}])
def test_server_limits_must_be_positive(state_dir, setting):
    from wsgikernel import make_app
    with pytest.raises(ValueError, match=next(iter(setting))):
        make_app(state_dir=state_dir, token="t", pool_size=0, **setting)


# -- failures after a stream started --------------------------------------------------

def test_a_stream_of_non_finite_values_stays_well_formed(live):
    assert live.request("PUT", "/envs/snan", {})[0] == 201
    stream = Stream(live, "POST", "/envs/snan/execute",
                    {"code": NAN_JSON + "display(J()); print('after'); J()", "stream": True})
    try:
        events = stream.read_all()
    finally:
        stream.close()
    assert events[-1]["event"] == "record", events
    assert events[-1]["status"] == "ok" and events[-1]["stdout"] == "after\n"
    assert events[-1]["result"]["application/json"]["a"] == "nan"
    live.request("DELETE", "/envs/snan")


def test_a_kernel_lost_mid_stream_ends_with_its_record(live):
    status, _, env = live.request("PUT", "/envs/slost", {})
    assert status == 201, env
    stream = Stream(live, "POST", "/envs/slost/execute",
                    {"code": "import time\nprint('started', flush=True)\ntime.sleep(%d)"
                             % HANG_GUARD, "stream": True})
    try:
        stream.read_output("started\n")
        with open(os.path.join(live.state_dir, "envs", "slost", "env.json")) as handle:
            supervisor = json.load(handle)["supervisor_pid"]
        os.kill(supervisor, signal.SIGKILL)
        events = stream.read_all()
    finally:
        stream.close()
    last = events[-1]  # its supervisor is gone: the record history keeps for it
    assert last["event"] == "record", events
    assert (last["status"], last["reason"]) == ("aborted", "kernel_lost"), last
    assert last["error"]["ename"] == "KernelLost"
    wait_for(lambda: live.request("GET", "/envs/slost")[2]["state"] == "dead",
             message="the env reads dead")
    live.request("DELETE", "/envs/slost")
