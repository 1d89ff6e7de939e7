"""Execution semantics through the HTTP API against real kernels (DESIGN 4.2 and 5).

Most tests share one environment per module (each xdist worker gets its own
app and state dir); tests that need a clean namespace or that could leave
something behind in a kernel use a fresh environment.
"""

import base64
import json
import shutil
import tempfile
import threading
import uuid

import pytest
import webtest

from helpers import HANG_GUARD, TOKEN, pid_alive

RECORD_KEYS = {"env", "session", "execution_count", "code", "status", "reason", "stdout",
               "stderr", "result", "outputs", "error", "user_expressions", "truncated",
               "queued_at", "started", "finished", "duration"}
SHARED_ENV = "semantics"
SMALL_CAP = 1000
MB = 1024 * 1024


def open_app(**config):
    from wsgikernel import make_app
    state = tempfile.mkdtemp(prefix="wk-")
    config = dict(dict(token=None, kill_grace=1, pool_size=0), **config)
    return make_app(state_dir=state, **config), state


@pytest.fixture(scope="module")
def client():
    """One app (default settings, auth off) for the whole module."""
    app, state = open_app()
    try:
        yield webtest.TestApp(app)
    finally:
        app.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def env(client):
    """The shared environment: for tests that do not need a clean namespace."""
    client.put_json("/envs/" + SHARED_ENV, {}, status=201)
    return SHARED_ENV


def new_env(client):
    env_id = "f-" + uuid.uuid4().hex[:12]
    client.put_json("/envs/" + env_id, {}, status=201)
    return env_id


@pytest.fixture
def fresh(client):
    """A new environment with a clean namespace, deleted afterwards."""
    env_id = new_env(client)
    try:
        yield env_id
    finally:
        client.delete("/envs/" + env_id, status=204)


@pytest.fixture(scope="module")
def capped():
    """(client, env id) of an app with output_cap=1000 bytes."""
    app, state = open_app(output_cap=SMALL_CAP)
    try:
        test_client = webtest.TestApp(app)
        test_client.put_json("/envs/capped", {}, status=201)
        yield test_client, "capped"
    finally:
        app.close()
        shutil.rmtree(state, ignore_errors=True)


def execute(client, env_id, code, **fields):
    """POST /envs/{id}/execute; the finished record (200), its shape checked."""
    res = client.post_json("/envs/%s/execute" % env_id, dict(fields, code=code))
    assert res.status_int == 200, res.body[:1000]
    record = res.json
    assert set(record) == RECORD_KEYS, sorted(record)
    assert record["env"] == env_id
    assert record["code"] == code
    assert record["status"] in ("ok", "error", "aborted"), record
    return record


def ok(client, env_id, code, **fields):
    record = execute(client, env_id, code, **fields)
    assert record["status"] == "ok", record["error"]
    assert record["reason"] is None
    assert record["error"] is None
    return record


def failed(client, env_id, code, ename, **fields):
    """An error record for ``ename``; its error is also the last output."""
    record = execute(client, env_id, code, **fields)
    assert record["status"] == "error", record
    assert record["reason"] is None
    assert record["result"] is None
    error = record["error"]
    assert error["ename"] == ename, error
    assert isinstance(error["evalue"], str)
    assert isinstance(error["traceback"], list) and error["traceback"]
    assert all(isinstance(line, str) and "\n" not in line for line in error["traceback"])
    assert record["outputs"][-1] == dict(error, output_type="error")
    return record


def env_info(client, env_id):
    return client.get("/envs/" + env_id).json


def result_of(client, env_id, code, **fields):
    return ok(client, env_id, code, **fields)["result"]


def caret_line_under(lines, code_line, char):
    """The index of the caret line that points at ``char`` of ``code_line``."""
    index = lines.index(code_line)
    caret = lines[index + 1]
    assert set(caret.strip()) == {"^"}, lines
    assert caret.index("^") == code_line.index(char), lines
    return index + 1


def vm_rss_kib(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def parent_pid(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("PPid:"):
                return int(line.split()[1])
    raise AssertionError("no PPid for %d" % pid)


# -- the last expression -------------------------------------------------------

def test_last_expression_is_the_result(client, env):
    record = ok(client, env, "1+1")
    n = record["execution_count"]
    assert isinstance(n, int) and n >= 1
    assert record["result"] == {"text/plain": "2"}
    assert record["outputs"] == [{"output_type": "execute_result", "execution_count": n,
                                  "data": {"text/plain": "2"}, "metadata": {}}]
    assert record["stdout"] == "" and record["stderr"] == ""
    assert record["user_expressions"] == {}
    assert record["truncated"] is False
    assert record["session"] == 1
    for key in ("queued_at", "started", "finished"):
        assert isinstance(record[key], str) and record[key].endswith("Z")
    assert isinstance(record["duration"], float) and record["duration"] >= 0


def test_none_as_last_expression_shows_nothing(client, env):
    record = ok(client, env, "None")
    assert record["result"] is None
    assert record["outputs"] == []


def test_statement_then_expression_shows_the_expression(client, env):
    record = ok(client, env, "x = 1; x")
    assert record["result"] == {"text/plain": "1"}
    assert [o["output_type"] for o in record["outputs"]] == ["execute_result"]


def test_for_loop_prints_nothing_extra(client, env):
    record = ok(client, env, "for i in range(3):\n    i")
    assert record["result"] is None
    assert record["outputs"] == []
    assert record["stdout"] == ""


def test_underscore_names_hold_the_last_three_results(client, env):
    for value in ("'r1'", "'r2'", "'r3'"):
        ok(client, env, value)
    assert result_of(client, env, "(_, __, ___)") == {"text/plain": "('r3', 'r2', 'r1')"}


# -- tracebacks --------------------------------------------------------------------

def test_error_record_has_stdout_and_user_frames_only(client, env):
    record = failed(client, env, "print('a'); 1/0", "ZeroDivisionError")
    n = record["execution_count"]
    assert record["stdout"] == "a\n"
    assert record["stderr"] == ""
    assert record["error"]["evalue"] == "division by zero"
    lines = record["error"]["traceback"]
    assert any("1/0" in line for line in lines)
    assert '  File "<cell %d>", line 1, in <module>' % n in lines
    assert lines[-1] == "ZeroDivisionError: division by zero"
    assert not any("wsgikernel" in line for line in lines)
    assert not any('.py"' in line for line in lines)
    assert [line for line in lines if line.lstrip().startswith('File "')] == [
        '  File "<cell %d>", line 1, in <module>' % n]
    assert record["outputs"][0] == {"output_type": "stream", "name": "stdout", "text": "a\n"}
    assert len(record["outputs"]) == 2


def test_traceback_shows_the_source_of_an_earlier_cell(client, env):
    defined = ok(client, env, "def boom_later():\n    raise ValueError('boom')")
    record = failed(client, env, "boom_later()", "ValueError")
    lines = record["error"]["traceback"]
    assert '  File "<cell %d>", line 2, in boom_later' % defined["execution_count"] in lines
    assert "    raise ValueError('boom')" in lines
    assert '  File "<cell %d>", line 1, in <module>' % record["execution_count"] in lines
    assert "    boom_later()" in lines
    assert lines[-1] == "ValueError: boom"


def test_traceback_of_an_await_cell_has_no_asyncio_or_kernel_frames(client, env):
    code = "async def failing():\n    raise KeyError('k')\nawait failing()"
    record = failed(client, env, code, "KeyError")
    frames = [line for line in record["error"]["traceback"] if line.lstrip().startswith("File ")]
    assert len(frames) == 2
    assert all('"<cell %d>"' % record["execution_count"] in line for line in frames)


def test_syntax_error_shows_the_line_and_a_caret(client, env):
    record = failed(client, env, "1 +* 2", "SyntaxError")
    lines = record["error"]["traceback"]
    assert '  File "<cell %d>", line 1' % record["execution_count"] in lines
    caret_line_under(lines, "    1 +* 2", "*")
    assert lines[-1] == "SyntaxError: invalid syntax"
    assert record["outputs"] == [dict(record["error"], output_type="error")]


def test_indentation_error_shows_the_line_and_a_caret(client, env):
    record = failed(client, env, "def f():\nreturn 1", "IndentationError")
    lines = record["error"]["traceback"]
    assert '  File "<cell %d>", line 2' % record["execution_count"] in lines
    caret_line_under(lines, "    return 1", "r")
    assert lines[-1].startswith("IndentationError: expected an indented block")


def test_unexpected_indent_shows_the_line_and_a_caret(client, env):
    record = failed(client, env, "if True:\n    a = 1\n      b = 2", "IndentationError")
    lines = record["error"]["traceback"]
    index = lines.index("    b = 2")
    assert set(lines[index + 1].strip()) == {"^"}, lines


def test_tracebacks_are_plain_text(client, env):
    codes = ["1/0", "1 +* 2",
             "try:\n    1/0\nexcept Exception as e:\n    raise ValueError('x') from e",
             "import json\njson.loads('{')"]
    for code in codes:
        record = execute(client, env, code)
        assert record["status"] == "error"
        for line in record["error"]["traceback"]:
            assert "\x1b" not in line and "\n" not in line, line
    chained = execute(client, env, codes[2])
    lines = chained["error"]["traceback"]
    assert "The above exception was the direct cause of the following exception:" in lines
    assert not any("wsgikernel" in line for line in lines)


# -- flags ---------------------------------------------------------------------------

def test_silent_shows_nothing_and_does_not_count(client, env):
    before = env_info(client, env)["execution_count"]
    record = ok(client, env, "silent_value = 41\nsilent_value + 1", silent=True)
    assert record["result"] is None
    assert record["outputs"] == []
    assert record["execution_count"] is None
    assert env_info(client, env)["execution_count"] == before
    after = ok(client, env, "silent_value")  # it ran: the namespace has the variable
    assert after["result"] == {"text/plain": "41"}
    assert after["execution_count"] == before + 1


def test_store_history_flag_is_accepted(client, env):
    record = ok(client, env, "'not stored'", store_history=False)
    assert record["result"] == {"text/plain": "'not stored'"}
    record = ok(client, env, "'stored'", store_history=True)
    assert record["result"] == {"text/plain": "'stored'"}


def test_user_expressions_are_evaluated_one_by_one(client, env):
    record = ok(client, env, "ue_x = 21", user_expressions={"a": "ue_x*2", "bad": "1/0"})
    expressions = record["user_expressions"]
    assert set(expressions) == {"a", "bad"}
    assert expressions["a"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert expressions["bad"]["status"] == "error"
    assert expressions["bad"]["ename"] == "ZeroDivisionError"
    assert expressions["bad"]["evalue"] == "division by zero"


# -- top-level await -----------------------------------------------------------------

def test_top_level_await(client, env):
    record = ok(client, env, "import asyncio; await asyncio.sleep(0.1); 5")
    assert record["result"] == {"text/plain": "5"}


def test_async_with_at_cell_level(client, env):
    code = ("import contextlib\n"
            "@contextlib.asynccontextmanager\n"
            "async def managed():\n"
            "    yield 'inside'\n"
            "async with managed() as entered:\n"
            "    pass\n"
            "entered")
    assert result_of(client, env, code) == {"text/plain": "'inside'"}


def test_async_for_at_cell_level(client, env):
    code = ("async def numbers():\n"
            "    for i in range(3):\n"
            "        yield i\n"
            "collected = []\n"
            "async for i in numbers():\n"
            "    collected.append(i)\n"
            "collected")
    assert result_of(client, env, code) == {"text/plain": "[0, 1, 2]"}


# -- capture -------------------------------------------------------------------------

def test_os_system_output_is_captured(client, env):
    record = ok(client, env, "import os; os.system('echo from-shell')")
    assert record["stdout"] == "from-shell\n"
    assert record["outputs"][0] == {"output_type": "stream", "name": "stdout",
                                    "text": "from-shell\n"}
    assert record["result"] == {"text/plain": "0"}


def test_subprocess_output_without_capture_is_in_stdout(client, env):
    record = ok(client, env, "import subprocess\nproc = subprocess.run(['echo', 'hi'])")
    assert record["stdout"] == "hi\n"
    assert record["stderr"] == ""


def test_writes_to_fd_2_are_stderr(client, env):
    record = ok(client, env, "import os\nwritten = os.write(2, b'err\\n')")
    assert record["stderr"] == "err\n"
    assert record["stdout"] == ""
    assert record["outputs"] == [{"output_type": "stream", "name": "stderr", "text": "err\n"}]


def test_python_level_stdout_and_stderr_keep_their_order(client, env):
    code = ("import sys\n"
            "for i in range(5):\n"
            "    print('o%d' % i)\n"
            "    print('e%d' % i, file=sys.stderr)")
    record = ok(client, env, code)
    expected = []
    for i in range(5):
        expected += [{"output_type": "stream", "name": "stdout", "text": "o%d\n" % i},
                     {"output_type": "stream", "name": "stderr", "text": "e%d\n" % i}]
    assert record["outputs"] == expected
    assert record["stdout"] == "".join("o%d\n" % i for i in range(5))
    assert record["stderr"] == "".join("e%d\n" % i for i in range(5))


def test_fd_output_lands_in_its_own_execution(client, env):
    for i in range(5):
        record = ok(client, env, "import os\nwritten = os.write(1, b'cell-%d\\n')" % i)
        assert record["stdout"] == "cell-%d\n" % i


def test_nothing_crosses_between_concurrent_environments(client):
    envs = [new_env(client), new_env(client)]
    code = ("import os, sys, time\n"
            "for i in range(40):\n"
            "    print('{tag}-py-%d' % i)\n"
            "    os.write(1, b'{tag}-fd\\n')\n"
            "    print('{tag}-err', file=sys.stderr)\n"
            "    time.sleep(0.002)")
    records, failures = {}, []

    def run(env_id):
        try:
            records[env_id] = execute(webtest.TestApp(client.app), env_id,
                                      code.format(tag=env_id))
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(env_id,)) for env_id in envs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(HANG_GUARD * 2)
        assert not any(thread.is_alive() for thread in threads)
        assert not failures, failures
        for env_id in envs:
            record = records[env_id]
            assert record["status"] == "ok"
            stdout_lines = record["stdout"].splitlines()
            assert sorted(stdout_lines) == sorted(["%s-py-%d" % (env_id, i) for i in range(40)]
                                                  + ["%s-fd" % env_id] * 40)
            assert record["stderr"] == ("%s-err\n" % env_id) * 40
            assert [line for line in stdout_lines if "-py-" in line] == [
                "%s-py-%d" % (env_id, i) for i in range(40)]
    finally:
        for env_id in envs:
            client.delete("/envs/" + env_id, status=204)


# -- rich output ---------------------------------------------------------------------

@pytest.mark.parametrize("method, mime, value", [
    ("_repr_html_", "text/html", "<b>rich</b>"),
    ("_repr_markdown_", "text/markdown", "**rich**"),
    ("_repr_svg_", "image/svg+xml", "<svg xmlns='http://www.w3.org/2000/svg'></svg>"),
    ("_repr_latex_", "text/latex", "$x^2$"),
])
def test_text_repr_methods_fill_the_bundle(client, env, method, mime, value):
    code = ("class Rich:\n"
            "    def %s(self):\n"
            "        return %r\n"
            "    def __repr__(self):\n"
            "        return 'Rich()'\n"
            "Rich()") % (method, value)
    record = ok(client, env, code)
    assert record["result"] == {"text/plain": "Rich()", mime: value}
    assert record["outputs"][-1]["data"] == record["result"]


def test_repr_json_gives_a_json_value(client, env):
    code = ("class J:\n"
            "    def _repr_json_(self):\n"
            "        return {'a': [1, 2], 'b': None}\n"
            "J()")
    result = result_of(client, env, code)
    assert result["application/json"] == {"a": [1, 2], "b": None}
    assert "text/plain" in result


def test_repr_png_bytes_are_base64(client, env):
    payload = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    code = ("class P:\n"
            "    def _repr_png_(self):\n"
            "        return %r\n"
            "P()") % (payload,)
    result = result_of(client, env, code)
    assert isinstance(result["image/png"], str)
    assert base64.b64decode(result["image/png"]) == payload
    assert "text/plain" in result


def test_repr_mimebundle(client, env):
    code = ("class M:\n"
            "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
            "        return {'text/html': '<i>bundle</i>', 'text/plain': 'bundle'}\n"
            "M()")
    assert result_of(client, env, code) == {"text/html": "<i>bundle</i>",
                                           "text/plain": "bundle"}


def test_a_failing_repr_method_falls_back_to_text_plain(client, env):
    code = ("class Bad:\n"
            "    def _repr_html_(self):\n"
            "        raise RuntimeError('no html today')\n"
            "    def __repr__(self):\n"
            "        return 'Bad()'\n"
            "Bad()")
    record = ok(client, env, code)
    assert record["result"] == {"text/plain": "Bad()"}


def test_display_adds_display_data_in_place(client, env):
    code = ("class Shown:\n"
            "    def _repr_html_(self):\n"
            "        return '<b>shown</b>'\n"
            "    def __repr__(self):\n"
            "        return 'Shown()'\n"
            "print('before')\n"
            "display(Shown(), 'second')\n"
            "print('between')\n"
            "display(3)\n"
            "print('after')")
    record = ok(client, env, code)
    assert record["result"] is None
    assert record["outputs"] == [
        {"output_type": "stream", "name": "stdout", "text": "before\n"},
        {"output_type": "display_data",
         "data": {"text/html": "<b>shown</b>", "text/plain": "Shown()"}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/plain": "'second'"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "between\n"},
        {"output_type": "display_data", "data": {"text/plain": "3"}, "metadata": {}},
        {"output_type": "stream", "name": "stdout", "text": "after\n"},
    ]


# -- stdin ---------------------------------------------------------------------------

def test_input_reads_the_request_stdin(client, env):
    record = ok(client, env, "input(), input()", stdin="x\ny\n")
    assert record["result"] == {"text/plain": "('x', 'y')"}


def test_sys_stdin_readline_reads_the_request_stdin(client, env):
    code = "import sys\nsys.stdin.readline(), sys.stdin.readline(), sys.stdin.readline()"
    record = ok(client, env, code, stdin="first\nsecond")
    assert record["result"] == {"text/plain": "('first\\n', 'second', '')"}


def test_input_past_the_end_raises_eoferror_instead_of_hanging(client, env):
    record = failed(client, env, "a = input()\nb = input()", "EOFError", stdin="only\n",
                    timeout=20)
    assert "stdin" in record["error"]["evalue"]
    assert result_of(client, env, "a") == {"text/plain": "'only'"}
    failed(client, env, "input()", "EOFError", timeout=20)  # no stdin at all


# -- exit ----------------------------------------------------------------------------

@pytest.mark.parametrize("code, evalue", [
    ("import sys; sys.exit()", None),
    ("exit()", None),
    ("quit()", None),
    ("raise SystemExit(2)", "2"),
])
def test_exit_ends_the_cell_and_the_kernel_survives(client, env, code, evalue):
    pid = env_info(client, env)["pid"]
    ok(client, env, "kept_through_exit = 'alive'")
    record = failed(client, env, code, "SystemExit")
    if evalue is not None:
        assert record["error"]["evalue"] == evalue
    assert record["error"]["traceback"][-1].startswith("SystemExit")
    info = env_info(client, env)
    assert info["pid"] == pid and pid_alive(pid)
    assert info["state"] == "idle"
    assert result_of(client, env, "kept_through_exit") == {"text/plain": "'alive'"}
    # exit() and quit() close sys.stdin: the next execution still reads its own
    assert result_of(client, env, "input()", stdin="z\n") == {"text/plain": "'z'"}


# -- output cap ----------------------------------------------------------------------

def marker_of(record):
    markers = [o for o in record["outputs"]
               if o["output_type"] == "stream" and "truncated" in o["text"]]
    assert len(markers) == 1, record["outputs"][-3:]
    return markers[0]["text"]


def test_output_over_the_cap_is_cut_with_a_marker(capped):
    client, env_id = capped
    record = ok(client, env_id, "print('x' * 10_000)\ncontinued_after_cap = True")
    assert record["truncated"] is True
    marker = marker_of(record)
    assert str(SMALL_CAP) in marker
    assert 0 < len(record["stdout"]) <= SMALL_CAP
    assert record["stdout"] == "x" * len(record["stdout"])
    assert len(record["stdout"]) + len(record["stderr"]) <= SMALL_CAP + len(marker)
    assert len(marker) < 200
    # the cell kept running after the cap
    assert result_of(client, env_id, "continued_after_cap") == {"text/plain": "True"}
    assert ok(client, env_id, "print('small')")["truncated"] is False


@pytest.mark.parametrize("code", [
    "for i in range(200_000): print('x' * 1000)",
    "import os\nfor i in range(200_000): os.write(1, b'y' * 1000 + b'\\n')",
], ids=["print", "fd"])
def test_printing_200_mb_keeps_memory_and_record_bounded(capped, code):
    client, env_id = capped
    pid = env_info(client, env_id)["pid"]
    supervisor = parent_pid(pid)
    before = vm_rss_kib(pid), vm_rss_kib(supervisor)
    res = client.post_json("/envs/%s/execute" % env_id, {"code": code, "wait": 300})
    assert res.status_int == 200
    record = res.json
    after = vm_rss_kib(pid), vm_rss_kib(supervisor)
    assert record["status"] == "ok", record["error"]
    assert record["truncated"] is True
    assert len(record["stdout"]) <= SMALL_CAP
    assert len(record["stderr"]) <= len(marker_of(record))
    assert len(res.body) < 20_000
    assert after[0] - before[0] < 100 * 1024, (before, after)  # the kernel (KiB)
    assert after[1] - before[1] < 100 * 1024, (before, after)  # its supervisor


def test_default_output_cap_is_one_mib(client, env):
    record = ok(client, env, "print('z' * (2 * 1024 * 1024))")
    assert record["truncated"] is True
    assert 0 < len(record["stdout"]) <= MB
    marker_of(record)


# -- invalid UTF-8 -------------------------------------------------------------------

def test_invalid_utf8_arrives_with_replacement_characters(client, env):
    code = ("import os, sys\n"
            "written = os.write(1, b'bad \\xff\\n')\n"
            "written = sys.stdout.buffer.write(b'\\xfe')")
    record = ok(client, env, code)
    assert record["stdout"] == "bad \ufffd\n\ufffd"


def test_incomplete_utf8_at_the_end_of_a_cell_stays_in_that_cell(client, fresh):
    first = ok(client, fresh, "import os\nwritten = os.write(1, b'tail \\xe2')")
    second = ok(client, fresh, "written = os.write(1, b'next\\n')")
    assert (first["stdout"], second["stdout"]) == ("tail \ufffd", "next\n")


# -- the original API ----------------------------------------------------------------

def test_original_route_gives_stdout_and_the_result(client, env):
    res = client.post("/", {"id": env, "code": "print('hello')\n6 * 7"})
    assert res.json == {"message": "hello\n42\n"}
    res = client.post("/", {"id": env, "code": "orig_value = 1"})
    assert res.json == {"message": ""}


def test_original_route_gives_stdout_and_the_traceback_on_error(client, env):
    res = client.post("/", {"id": env, "code": "print('partial')\n1/0"})
    body = res.json
    assert set(body) == {"error"}
    lines = body["error"].split("\n")
    assert lines[0] == "partial"
    assert lines[1] == "Traceback (most recent call last):"
    assert "    1/0" in lines
    assert body["error"].endswith("ZeroDivisionError: division by zero\n")
    assert "wsgikernel" not in body["error"]


def test_original_route_runs_the_code_as_one_cell(client, env):
    code = "def twice(v):\n    return 2 * v\nprint(twice(4))\nprint('a\\nb')"
    res = client.post("/", {"id": env, "code": code})
    assert res.json == {"message": "8\na\nb\n"}
