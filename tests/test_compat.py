"""The original tutorial's API (DESIGN 4.3), with form bodies as its clients sent them.

/env/create, /env/delete, /env/get and POST / answer 200 with the original
bodies, ``error`` keys included: no problem+json on these routes (auth aside).
"""

import json

import pytest

from helpers import pid_alive, wait_for


def post(testapp, path, fields=None):
    """A form POST; the original API always answers 200 with a JSON object."""
    res = testapp.post(path, fields or {})
    assert res.status_int == 200, res.body[:500]
    assert res.headers["Content-Type"].startswith("application/json")
    return res.json


def create(testapp, env_id):
    return post(testapp, "/env/create", {"id": env_id})


def execute(testapp, env_id, code):
    return post(testapp, "/", {"id": env_id, "code": code})


# -- /env/create ------------------------------------------------------------------

def test_create_returns_every_id(testapp):
    assert create(testapp, "1") == {"envs": ["1"]}
    assert sorted(create(testapp, "2")["envs"]) == ["1", "2"]


def test_create_twice_is_fine(testapp):
    assert create(testapp, "1") == {"envs": ["1"]}
    pid = testapp.get("/envs/1").json["pid"]
    execute(testapp, "1", "kept = 1")
    assert create(testapp, "1") == {"envs": ["1"]}
    # the same kernel, namespace intact
    assert testapp.get("/envs/1").json["pid"] == pid
    assert execute(testapp, "1", "print(kept)") == {"message": "1\n"}


def test_create_with_the_query_string(testapp):
    res = testapp.post("/env/create?id=2")
    assert res.status_int == 200
    assert res.json == {"envs": ["2"]}
    res = testapp.post("/?id=2&code=print(40%2B2)")
    assert res.json == {"message": "42\n"}


def test_create_with_a_json_body(testapp):
    res = testapp.post_json("/env/create", {"id": "j"})
    assert res.json == {"envs": ["j"]}


def test_envs_created_here_are_rest_envs(testapp):
    create(testapp, "both")
    env = testapp.get("/envs/both").json
    assert env["state"] == "idle"
    res = testapp.post_json("/envs/both/execute", {"code": "21 * 2"})
    assert res.json["result"] == {"text/plain": "42"}


# -- POST / -----------------------------------------------------------------------------

def test_hello_world(testapp):
    create(testapp, "1")
    assert execute(testapp, "1", "print('hello world')") == {"message": "hello world\n"}


def test_state_persists_between_calls(testapp):
    create(testapp, "1")
    assert execute(testapp, "1", "x = 5") == {"message": ""}
    assert execute(testapp, "1", "print(x + 1)") == {"message": "6\n"}


def test_trailing_expression_adds_its_text(testapp):
    create(testapp, "1")
    assert execute(testapp, "1", "x = 20\nx * 2 + 2") == {"message": "42\n"}
    assert execute(testapp, "1", "print('a')\n'b'") == {"message": "a\n'b'\n"}
    # None shows nothing, as in the interactive interpreter
    assert execute(testapp, "1", "print('only')\nNone") == {"message": "only\n"}


def test_code_that_raises_gives_stdout_and_traceback(testapp):
    create(testapp, "1")
    body = execute(testapp, "1", "print('before')\nraise ValueError('boom')")
    assert set(body) == {"error"}
    assert body["error"].startswith("before\n")
    assert "ValueError" in body["error"]
    assert "boom" in body["error"]
    assert "Traceback" in body["error"]
    # the namespace survives an error
    assert execute(testapp, "1", "print('after')") == {"message": "after\n"}


def test_syntax_error_is_an_error_body(testapp):
    create(testapp, "1")
    body = execute(testapp, "1", "def (:")
    assert set(body) == {"error"}
    assert "SyntaxError" in body["error"]


def test_unknown_kernel(testapp):
    assert execute(testapp, "nope", "print(1)") == {"error": "Kernel does not exist!"}


def test_missing_code_is_an_error_body(testapp):
    create(testapp, "1")
    body = post(testapp, "/", {"id": "1"})
    assert set(body) == {"error"}
    assert isinstance(body["error"], str) and body["error"]


def test_missing_id_is_an_error_body(testapp):
    for path, fields in (("/", {"code": "1"}), ("/env/create", {}), ("/env/get", {}),
                         ("/env/delete", {})):
        body = post(testapp, path, fields)
        assert set(body) == {"error"}, (path, body)
        assert isinstance(body["error"], str) and body["error"]


def test_code_runs_as_one_cell(testapp):
    create(testapp, "1")
    # the original split on the two characters backslash-n, which broke this literal
    assert execute(testapp, "1", "s = 'a\\nb'\nprint(len(s))") == {"message": "3\n"}
    loop = "total = 0\nfor i in range(4):\n    total += i\n    print(i)\nprint('sum', total)"
    assert execute(testapp, "1", loop) == {"message": "0\n1\n2\n3\nsum 6\n"}
    # and stops at the first error (the original went on after it)
    body = execute(testapp, "1", "ran = []\nran.append(1)\n1/0\nran.append(2)")
    assert "ZeroDivisionError" in body["error"]
    assert execute(testapp, "1", "print(ran)") == {"message": "[1]\n"}


def test_crlf_code_from_a_form(testapp):
    create(testapp, "1")
    assert execute(testapp, "1", "a = 1\r\nb = 2\r\nprint(a + b)") == {"message": "3\n"}


def test_unicode_round_trip(testapp):
    create(testapp, "1")
    assert execute(testapp, "1", "print('h\u00e9 \u2603')") == {"message": "h\u00e9 \u2603\n"}


# -- /env/get -----------------------------------------------------------------------------

def test_get_lists_names_without_dunders(testapp):
    create(testapp, "1")
    assert post(testapp, "/env/get", {"id": "1"}) == {"env": []}
    execute(testapp, "1", "x = 1\ndef f():\n    pass\nimport math\nclass C:\n    pass\n3")
    names = post(testapp, "/env/get", {"id": "1"})["env"]
    assert sorted(names) == ["C", "f", "math", "x"]
    assert not any(n.startswith("__") and n.endswith("__") for n in names)


def test_get_unknown_env(testapp):
    assert post(testapp, "/env/get", {"id": "nope"}) == {"error": "Environment does not exist!"}


def test_get_does_not_count_as_an_execution(testapp):
    create(testapp, "1")
    execute(testapp, "1", "y = 2")
    post(testapp, "/env/get", {"id": "1"})
    assert testapp.get("/envs/1").json["execution_count"] == 1


# -- /env/delete ----------------------------------------------------------------------------

def test_delete_returns_the_ids_left(testapp, state_dir):
    create(testapp, "1")
    create(testapp, "2")
    pid = testapp.get("/envs/1").json["pid"]
    assert post(testapp, "/env/delete", {"id": "1"}) == {"envs": ["2"]}
    wait_for(lambda: not pid_alive(pid), message="kernel of 1 gone")
    assert execute(testapp, "1", "print(1)") == {"error": "Kernel does not exist!"}
    assert post(testapp, "/env/get", {"id": "1"}) == {"error": "Environment does not exist!"}
    assert post(testapp, "/env/delete", {"id": "2"}) == {"envs": []}


def test_delete_unknown_env_lists_what_is_left(testapp):
    create(testapp, "1")
    assert post(testapp, "/env/delete", {"id": "never"}) == {"envs": ["1"]}


# -- bad input and auth ------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["a" * 65, ".hidden", "a b", "a/b", ""])
@pytest.mark.parametrize("path", ["/env/create", "/env/get", "/env/delete", "/"])
def test_invalid_id_is_an_error_body(testapp, path, bad):
    res = testapp.post(path, {"id": bad, "code": "print(1)"})
    assert res.status_int == 200
    assert res.headers["Content-Type"].startswith("application/json")
    body = res.json
    assert set(body) == {"error"}
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    assert testapp.get("/envs").json == {"envs": []}


def test_auth_still_applies(anon, testapp):
    for path, fields in (("/env/create", {"id": "1"}), ("/env/get", {"id": "1"}),
                         ("/env/delete", {"id": "1"}), ("/", {"id": "1", "code": "1"})):
        res = anon.post(path, fields, expect_errors=True)
        assert res.status_int == 401, path
        assert res.headers["WWW-Authenticate"].startswith("Bearer")
    assert testapp.get("/envs").json == {"envs": []}


def test_dead_kernel_is_reported_the_original_way(testapp):
    create(testapp, "1")
    body = execute(testapp, "1", "import os; os._exit(1)")
    assert set(body) == {"error"}
    assert "KernelDied" in body["error"]
    # /env/create lists it, so it does not "not exist": the answer says it is dead
    assert execute(testapp, "1", "print(1)") == {
        "error": "Environment '1' is dead: POST /env/create with its id to start a fresh kernel"}
    # creating it again (it exists, dead) is fine and answers the ids
    assert create(testapp, "1") == {"envs": ["1"]}


def test_create_revives_a_kernel_that_does_not_exist_any_more(testapp):
    create(testapp, "1")
    execute(testapp, "1", "import os; os._exit(1)")
    assert "is dead" in execute(testapp, "1", "print(1)")["error"]
    assert create(testapp, "1") == {"envs": ["1"]}
    assert execute(testapp, "1", "print(1)") == {"message": "1\n"}


def test_responses_are_plain_json(testapp):
    create(testapp, "1")
    res = testapp.post("/", {"id": "1", "code": "print(1)"})
    assert json.loads(res.body) == {"message": "1\n"}
