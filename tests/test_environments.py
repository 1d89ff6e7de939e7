"""The REST environment routes (DESIGN 4.1) with real kernels, through WebTest."""

import ast
import os
import shutil
import stat
import tempfile

import pytest
import webtest

from helpers import TOKEN, assert_problem, pid_alive, wait_for, run, value

ENV_FIELDS = {"id", "state", "session", "execution_count", "queued", "created",
              "last_activity", "pid", "limits", "cwd", "sandbox"}
INVALID_ID = "invalid-parameter"


def client(app):
    return webtest.TestApp(app, extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})




def is_iso_utc(text):
    return isinstance(text, str) and text.endswith("Z") and "T" in text


def assert_env_object(env):
    assert set(env) == ENV_FIELDS, sorted(env)
    assert isinstance(env["id"], str)
    assert env["state"] in ("starting", "idle", "busy")
    assert isinstance(env["session"], int) and not isinstance(env["session"], bool)
    assert isinstance(env["execution_count"], int)
    assert isinstance(env["queued"], int)
    assert is_iso_utc(env["created"]), env["created"]
    assert is_iso_utc(env["last_activity"]), env["last_activity"]
    assert isinstance(env["pid"], int) and env["pid"] > 0
    assert isinstance(env["limits"], dict)
    assert isinstance(env["cwd"], str) and os.path.isabs(env["cwd"])


# -- create ---------------------------------------------------------------------

def test_post_without_id_generates_one(testapp):
    res = testapp.post_json("/envs", {})
    assert res.status_int == 201
    env = res.json
    assert_env_object(env)
    assert env["id"]
    assert res.headers["Location"].endswith("/envs/" + env["id"])
    assert env["state"] == "idle"
    assert env["session"] == 1
    assert env["execution_count"] == 0
    assert pid_alive(env["pid"])
    again = testapp.post_json("/envs", {})
    assert again.status_int == 201
    assert again.json["id"] != env["id"]


def test_post_with_id(testapp):
    res = testapp.post_json("/envs", {"id": "alpha"})
    assert res.status_int == 201
    assert res.json["id"] == "alpha"
    assert res.headers["Location"].endswith("/envs/alpha")
    assert testapp.get("/envs/alpha").json["id"] == "alpha"


def test_post_with_form_body(testapp):
    res = testapp.post("/envs", {"id": "from-form"})
    assert res.status_int == 201
    assert res.json["id"] == "from-form"


def test_post_taken_id_is_409(testapp):
    first = testapp.post_json("/envs", {"id": "taken"}).json
    res = testapp.post_json("/envs", {"id": "taken"}, expect_errors=True)
    assert_problem(res, 409, "env-exists", env_id="taken")
    # the existing env is untouched
    assert testapp.get("/envs/taken").json["pid"] == first["pid"]


def test_put_is_idempotent(testapp):
    first = testapp.put_json("/envs/same", {})
    assert first.status_int == 201
    assert first.headers["Location"].endswith("/envs/same")
    assert_env_object(first.json)
    second = testapp.put_json("/envs/same", {})
    assert second.status_int == 200
    assert second.json["id"] == "same"
    assert second.json["pid"] == first.json["pid"]
    assert second.json["session"] == 1
    assert [e["id"] for e in testapp.get("/envs").json["envs"]].count("same") == 1


def test_get_envs_lists_them(testapp):
    assert testapp.get("/envs").json == {"envs": []}
    testapp.post_json("/envs", {"id": "one"})
    testapp.post_json("/envs", {"id": "two"})
    envs = testapp.get("/envs").json["envs"]
    assert sorted(e["id"] for e in envs) == ["one", "two"]
    for env in envs:
        assert_env_object(env)


def test_get_unknown_env_is_404(testapp):
    res = testapp.get("/envs/nope", expect_errors=True)
    assert_problem(res, 404, "env-not-found", env_id="nope")


# -- ids --------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["a" * 65, ".hidden", "..", "a b", "é", "a+b"])
def test_invalid_id_in_body_is_422(testapp, bad):
    res = testapp.post_json("/envs", {"id": bad}, expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="id")
    assert not os.path.exists(os.path.join(testapp.app.config.state_dir, "envs", bad))


def test_empty_id_in_body_is_422(testapp):
    res = testapp.post_json("/envs", {"id": ""}, expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="id")


@pytest.mark.parametrize("path", ["/envs/" + "a" * 65, "/envs/.hidden", "/envs/..",
                                  "/envs/a%20b"])
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_invalid_id_in_path_is_422(testapp, method, path):
    res = testapp.request(path, method=method, expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="id")


@pytest.mark.parametrize("suffix", ["execute", "restart", "interrupt"])
def test_invalid_id_in_path_of_post_routes_is_422(testapp, suffix):
    res = testapp.post_json("/envs/.x/" + suffix, {"code": "1"}, expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="id")


def test_slash_in_id_is_no_route(testapp):
    res = testapp.get("/envs/a/b", expect_errors=True)
    assert_problem(res, 404, "route-not-found")
    res = testapp.post_json("/envs", {"id": "a/b"}, expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="id")


def test_64_character_id_works(testapp):
    long_id = "x" * 63 + "9"
    res = testapp.put_json("/envs/" + long_id, {})
    assert res.status_int == 201
    assert value(testapp, long_id, "6 * 7") == "42"
    assert testapp.get("/envs/" + long_id).json["state"] == "idle"


@pytest.fixture
def long_state_dir():
    """A private state dir whose path is ~80 characters: with a 64-char id it is
    far past the ~107-byte limit of a Unix socket path if the socket were in it."""
    base = tempfile.mkdtemp(prefix="wk-long-")
    os.chmod(base, 0o700)
    path = os.path.join(base, "d" * max(1, 80 - len(base) - 1))
    os.mkdir(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_64_character_id_with_a_long_state_dir(make_test_app, long_state_dir):
    assert len(long_state_dir) >= 80
    app = client(make_test_app(state_dir=long_state_dir))
    long_id = "L" * 64
    assert len(os.path.join(long_state_dir, "envs", long_id, "x.sock")) > 108
    res = app.post_json("/envs", {"id": long_id})
    assert res.status_int == 201
    assert res.json["state"] == "idle"
    assert value(app, long_id, "'ok' * 2") == "'okok'"
    assert app.delete("/envs/" + long_id).status_int == 204


# -- quota ------------------------------------------------------------------------

def test_max_envs_is_429_with_retry_after(make_test_app):
    app = client(make_test_app(max_envs=2))
    app.post_json("/envs", {"id": "e1"})
    app.post_json("/envs", {"id": "e2"})
    res = app.post_json("/envs", {"id": "e3"}, expect_errors=True)
    body = assert_problem(res, 429, "quota-exceeded")
    assert int(res.headers["Retry-After"]) >= 0
    assert body.get("quota") == "max_envs"
    res = app.put_json("/envs/e3", {}, expect_errors=True)
    assert_problem(res, 429, "quota-exceeded")
    # the refused id was not left behind, and a freed slot can be used
    assert sorted(e["id"] for e in app.get("/envs").json["envs"]) == ["e1", "e2"]
    assert app.delete("/envs/e1").status_int == 204
    assert app.post_json("/envs", {"id": "e3"}).status_int == 201


# -- the env object ------------------------------------------------------------------

def test_env_object_fields_and_types(testapp):
    env = testapp.post_json("/envs", {"id": "shape"}).json
    assert_env_object(env)
    assert env["state"] == "idle"
    assert env["queued"] == 0
    run(testapp, "shape", "1 + 1")
    after = testapp.get("/envs/shape").json
    assert_env_object(after)
    assert after["execution_count"] == 1
    assert after["created"] == env["created"]
    assert after["last_activity"] >= env["created"]


# -- execute: bad input ------------------------------------------------------------------

def test_execute_on_unknown_env_is_404(testapp):
    res = testapp.post_json("/envs/ghost/execute", {"code": "1"}, expect_errors=True)
    assert_problem(res, 404, "env-not-found", env_id="ghost")


def test_execute_without_code_is_400(testapp):
    testapp.post_json("/envs", {"id": "nocode"})
    res = testapp.post_json("/envs/nocode/execute", {}, expect_errors=True)
    assert_problem(res, 400, "missing-parameter", param="code")
    res = testapp.post_json("/envs/nocode/execute", {"code": None}, expect_errors=True)
    assert_problem(res, 400, "missing-parameter", param="code")


@pytest.mark.parametrize("wait", [-1, "abc", "-0.5", "nan", "inf"])
def test_execute_with_bad_wait_is_422(testapp, wait):
    testapp.post_json("/envs", {"id": "badwait"})
    res = testapp.post_json("/envs/badwait/execute", {"code": "1", "wait": wait},
                            expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="wait")
    # nothing ran
    assert testapp.get("/envs/badwait").json["execution_count"] == 0


def test_execute_with_non_string_code_is_422(testapp):
    testapp.post_json("/envs", {"id": "numcode"})
    res = testapp.post_json("/envs/numcode/execute", {"code": 12}, expect_errors=True)
    assert_problem(res, 422, INVALID_ID, param="code")


# -- delete -----------------------------------------------------------------------------

def test_delete_stops_the_kernel_and_removes_the_directory(testapp):
    env = testapp.post_json("/envs", {"id": "doomed"}).json
    env_dir = os.path.join(testapp.app.config.state_dir, "envs", "doomed")
    assert os.path.isdir(env_dir)
    run(testapp, "doomed", "open('file.txt', 'w').write('x')")
    assert os.path.exists(os.path.join(env["cwd"], "file.txt"))
    res = testapp.delete("/envs/doomed")
    assert res.status_int == 204
    assert res.body == b""
    assert not os.path.exists(env_dir)
    wait_for(lambda: not pid_alive(env["pid"]), message="kernel gone after DELETE")
    assert_problem(testapp.get("/envs/doomed", expect_errors=True), 404, "env-not-found")
    assert_problem(testapp.delete("/envs/doomed", expect_errors=True), 404, "env-not-found")
    assert testapp.get("/envs").json == {"envs": []}
    # the id is free again
    assert testapp.post_json("/envs", {"id": "doomed"}).status_int == 201
    assert value(testapp, "doomed", "'x' in dir()") == "False"


def test_delete_unknown_env_is_404(testapp):
    assert_problem(testapp.delete("/envs/never", expect_errors=True), 404, "env-not-found",
                   env_id="never")


# -- restart, interrupt --------------------------------------------------------------------

def test_restart_gives_a_fresh_namespace_and_next_session(testapp):
    env = testapp.post_json("/envs", {"id": "again"}).json
    run(testapp, "again", "x = 41")
    res = testapp.post_json("/envs/again/restart", {})
    assert res.status_int == 200
    restarted = res.json
    assert_env_object(restarted)
    assert restarted["id"] == "again"
    assert restarted["state"] == "idle"
    assert restarted["session"] == env["session"] + 1
    assert restarted["pid"] != env["pid"]
    wait_for(lambda: not pid_alive(env["pid"]), message="old kernel gone")
    record = run(testapp, "again", "x")
    assert record["status"] == "error"
    assert record["error"]["ename"] == "NameError"
    assert record["session"] == restarted["session"]
    # execution_count keeps counting across restarts
    assert record["execution_count"] == 2


def test_restart_unknown_env_is_404(testapp):
    assert_problem(testapp.post_json("/envs/nobody/restart", {}, expect_errors=True),
                   404, "env-not-found")


def test_interrupt_on_idle_env_is_harmless(testapp):
    env = testapp.post_json("/envs", {"id": "calm"}).json
    run(testapp, "calm", "y = 'kept'")
    res = testapp.post_json("/envs/calm/interrupt", {})
    assert res.status_int == 200
    assert_env_object(res.json)
    assert res.json["id"] == "calm"
    assert res.json["state"] == "idle"
    assert res.json["pid"] == env["pid"]
    assert value(testapp, "calm", "y") == "'kept'"
    assert pid_alive(env["pid"])


def test_interrupt_unknown_env_is_404(testapp):
    assert_problem(testapp.post_json("/envs/nobody/interrupt", {}, expect_errors=True),
                   404, "env-not-found")


# -- the kernel's surroundings -----------------------------------------------------------------

def test_state_dir_and_env_dirs_are_private(make_test_app, state_dir):
    fresh = os.path.join(state_dir, "fresh-state")
    app = client(make_test_app(state_dir=fresh))
    env = app.post_json("/envs", {"id": "priv"}).json
    for path in (fresh, os.path.join(fresh, "envs"), os.path.join(fresh, "envs", "priv")):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    assert os.path.realpath(env["cwd"]).startswith(os.path.realpath(fresh) + os.sep)


def test_kernel_environment_has_no_wsgikernel_variables(monkeypatch, make_test_app):
    monkeypatch.setenv("WSGIKERNEL_SECRET_TEST", "x")
    app = client(make_test_app())
    app.post_json("/envs", {"id": "clean"})
    code = "import os; sorted(k for k in os.environ if k.startswith('WSGIKERNEL'))"
    assert value(app, "clean", code) == "[]"


def huge_pages_possible():
    """glibc >= 2.35 (glibc.malloc.hugetlb) and transparent huge pages not off."""
    try:
        name, version = os.confstr("CS_GNU_LIBC_VERSION").split()
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
    except (ValueError, OSError, AttributeError):
        return False
    return name == "glibc" and tuple(map(int, version.split(".")[:2])) >= (2, 35) \
        and "[never]" not in mode


HUGE_PAGES_KB = ("data = bytearray(64 << 20)\nfor i in range(0, len(data), 4096): data[i] = 1\n"
                 "[int(line.split()[1]) for line in open('/proc/self/smaps_rollup')"
                 " if line.startswith('AnonHugePages:')][0]")


@pytest.mark.skipif(not huge_pages_possible(), reason="no glibc.malloc.hugetlb or no THP")
@pytest.mark.parametrize("forkserver", [True, False])
def test_large_allocations_of_user_code_get_huge_pages(make_test_app, forkserver):
    # A fork copies one page-table entry per 2 MiB of them instead of 512.
    app = client(make_test_app(kernel_forkserver=forkserver))
    app.post_json("/envs", {"id": "huge"})
    assert int(value(app, "huge", HUGE_PAGES_KB)) >= 32 * 1024


def test_kernel_huge_pages_false_leaves_glibc_tunables_alone(monkeypatch, make_test_app):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    app = client(make_test_app(kernel_huge_pages=False))
    app.post_json("/envs", {"id": "small"})
    assert value(app, "small", "import os; str(os.environ.get('GLIBC_TUNABLES'))") == "'None'"


def test_kernel_output_encoding_is_utf8(testapp):
    testapp.post_json("/envs", {"id": "enc"})
    assert value(testapp, "enc", "import os; os.environ.get('PYTHONIOENCODING')") == "'utf-8'"
    record = run(testapp, "enc", "print('h\u00e9llo \u2603')")
    assert record["stdout"] == "h\u00e9llo \u2603\n"
    # fd-level bytes: UTF-8 decoded, invalid bytes replaced, never an error
    record = run(testapp, "enc", "import os; os.write(1, b'caf\\xc3\\xa9 \\xff!\\n')")
    assert record["status"] == "ok", record
    assert record["stdout"] == "caf\u00e9 \ufffd!\n"


def test_cell_runs_in_the_env_cwd(testapp):
    env = testapp.post_json("/envs", {"id": "where"}).json
    cwd = ast.literal_eval(value(testapp, "where", "import os; os.getcwd()"))
    assert os.path.realpath(cwd) == os.path.realpath(env["cwd"])
    assert os.path.isdir(env["cwd"])


def test_cells_run_as_main(testapp):
    testapp.post_json("/envs", {"id": "mainmod"})
    assert value(testapp, "mainmod", "__name__") == "'__main__'"
    record = run(testapp, "mainmod", "if __name__ == '__main__':\n    print('as script')")
    assert record["stdout"] == "as script\n"
