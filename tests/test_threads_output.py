"""Output of threads a cell started, and output capture that a cell cannot break.

Real kernels throughout.  Threads are coordinated with files in the env's
working directory and threading.Events, never with sleeps: every wait is a
poll with a hang guard (helpers.wait_for).

- A thread belongs to the execution that was running in the thread that
  created it (threads started by threads inherit).  What it prints while that
  execution's record is open is in that record; what it prints afterwards is in
  the env's ``late_output`` (GET /envs/{id}/late_output), never in another
  execution's record.
- ``open(0|1|2)`` is refused, and fds 0, 1 and 2 are restored at the start of
  each cell, so no cell can break output capture for the cells after it.
"""

import os

import pytest

from helpers import assert_problem, run, wait_for

LATE_OUTPUT_LIMIT = 64 * 1024  # bytes of text the env keeps (docs/decisions.md)


def create(testapp, env_id):
    res = testapp.put("/envs/" + env_id, status=201)
    return res.json


def late_output(testapp, env_id):
    res = testapp.get("/envs/%s/late_output" % env_id)
    assert res.status_int == 200
    assert set(res.json) == {"late_output"}, res.json
    entries = res.json["late_output"]
    for entry in entries:
        assert set(entry) == {"execution_count", "name", "text", "time"}, entry
    return entries


def late_text(testapp, env_id, **match):
    return "".join(e["text"] for e in late_output(testapp, env_id)
                   if all(e[k] == v for k, v in match.items()))


def wait_late(testapp, env_id, needle, **match):
    return wait_for(lambda: needle in late_text(testapp, env_id, **match),
                    message="%r in late_output" % needle)


def touch(env, name):
    open(os.path.join(env["cwd"], name), "w").close()


def exists(env, name):
    return os.path.exists(os.path.join(env["cwd"], name))


WAIT_FOR_FILE = ("import os, sys, threading, time\n"
                 "def wait_file(name):\n"
                 "    while not os.path.exists(name):\n"
                 "        time.sleep(0.005)\n")


# -- threads -------------------------------------------------------------------------------

def test_thread_output_while_its_cell_runs_is_in_that_cell(testapp):
    create(testapp, "tjoin")
    record = run(testapp, "tjoin",
                 "import sys, threading\n"
                 "def work():\n"
                 "    for i in range(50):\n"
                 "        print('t', i)\n"
                 "    print('err', file=sys.stderr)\n"
                 "t = threading.Thread(target=work)\n"
                 "t.start()\n"
                 "t.join()\n"
                 "print('main')")
    assert record["status"] == "ok", record
    assert record["stdout"] == "".join("t %d\n" % i for i in range(50)) + "main\n"
    assert record["stderr"] == "err\n"
    assert late_output(testapp, "tjoin") == []


def test_thread_output_after_its_cell_ended_never_lands_in_the_next_cell(testapp):
    create(testapp, "tnext")
    first = run(testapp, "tnext",
                "import threading\n"
                "go, printed = threading.Event(), threading.Event()\n"
                "def later():\n"
                "    go.wait(60)\n"
                "    print('from the first cell')\n"
                "    print('its error', file=sys.stderr)\n"
                "    printed.set()\n"
                "import sys\n"
                "threading.Thread(target=later, daemon=True).start()\n"
                "print('first')")
    assert first["status"] == "ok" and first["stdout"] == "first\n", first
    n = first["execution_count"]
    # The second cell lets the thread print while it runs itself, and waits for it.
    second = run(testapp, "tnext", "go.set()\nprinted.wait(60)\nprint('second')")
    assert second["status"] == "ok", second
    assert second["stdout"] == "second\n", second
    assert second["stderr"] == "", second
    assert [o["text"] for o in second["outputs"]] == ["second\n"]
    # It is in the env's late output, with the count of the cell that started the thread.
    wait_late(testapp, "tnext", "from the first cell\n", execution_count=n, name="stdout")
    assert late_text(testapp, "tnext", execution_count=n, name="stdout") == \
        "from the first cell\n"
    assert late_text(testapp, "tnext", execution_count=n, name="stderr") == "its error\n"
    assert all(e["time"] for e in late_output(testapp, "tnext"))
    # The first cell's record is final: unchanged, in memory and in history.
    again = testapp.get("/envs/tnext/executions/%d" % n).json
    assert again["stdout"] == "first\n" and again["stderr"] == "", again


def test_thread_output_while_the_env_is_idle_is_kept_as_late_output(testapp):
    env = create(testapp, "tidle")
    first = run(testapp, "tidle", WAIT_FOR_FILE +
                "def later():\n"
                "    wait_file('go')\n"
                "    print('printed while idle')\n"
                "    sys.stdout.write('no newline')\n"
                "    open('printed', 'w').close()\n"
                "threading.Thread(target=later, daemon=True).start()")
    assert first["status"] == "ok", first
    n = first["execution_count"]
    assert late_output(testapp, "tidle") == []
    touch(env, "go")
    wait_for(lambda: exists(env, "printed"), message="the thread printed")
    wait_late(testapp, "tidle", "no newline", execution_count=n)
    assert late_text(testapp, "tidle", execution_count=n, name="stdout") == \
        "printed while idle\nno newline"
    # print() writes its text and its newline separately: the entry is one line.
    assert any(e["text"] == "printed while idle\n" for e in late_output(testapp, "tidle"))
    # A later cell does not get it either.
    later = run(testapp, "tidle", "print('next')")
    assert later["stdout"] == "next\n", later
    assert testapp.get("/envs/tidle/executions/%d" % n).json["stdout"] == ""


def test_threads_started_by_threads_inherit_the_cell(testapp):
    env = create(testapp, "tnest")
    first = run(testapp, "tnest", WAIT_FOR_FILE +
                "def grandchild():\n"
                "    wait_file('go')\n"
                "    print('grandchild')\n"
                "    open('printed', 'w').close()\n"
                "def child():\n"
                "    print('child')\n"
                "    threading.Thread(target=grandchild, daemon=True).start()\n"
                "t = threading.Thread(target=child)\n"
                "t.start()\n"
                "t.join()")
    assert first["status"] == "ok" and first["stdout"] == "child\n", first
    n = first["execution_count"]
    # A second cell runs while the grandchild prints.
    second = run(testapp, "tnest",
                 "open('go', 'w').close()\n"
                 "wait_file('printed')\n"
                 "print('second')")
    assert second["stdout"] == "second\n", second
    wait_late(testapp, "tnest", "grandchild\n", execution_count=n)


def test_fd_writes_of_a_thread_while_idle_are_late_output_without_a_count(testapp):
    env = create(testapp, "tfd")
    run(testapp, "tfd", WAIT_FOR_FILE +
        "def later():\n"
        "    wait_file('go')\n"
        "    os.write(1, b'fd one\\n')\n"
        "    os.write(2, b'fd two\\n')\n"
        "    open('printed', 'w').close()\n"
        "threading.Thread(target=later, daemon=True).start()")
    touch(env, "go")
    wait_for(lambda: exists(env, "printed"), message="the thread wrote")
    wait_late(testapp, "tfd", "fd one\n", execution_count=None, name="stdout")
    wait_late(testapp, "tfd", "fd two\n", execution_count=None, name="stderr")


def test_late_output_is_bounded_oldest_dropped(testapp):
    env = create(testapp, "tbound")
    first = run(testapp, "tbound", WAIT_FOR_FILE +
                "def later():\n"
                "    wait_file('go')\n"
                "    for i in range(100):\n"
                "        print('%04d' % i + 'x' * 2000)\n"
                "    print('END')\n"
                "threading.Thread(target=later, daemon=True).start()")
    n = first["execution_count"]
    touch(env, "go")
    wait_late(testapp, "tbound", "END\n", execution_count=n)
    entries = late_output(testapp, "tbound")
    text = "".join(e["text"] for e in entries)
    assert sum(len(e["text"].encode("utf-8")) for e in entries) <= LATE_OUTPUT_LIMIT
    assert text.endswith("0099" + "x" * 2000 + "\nEND\n")
    assert "0000" + "x" * 2000 not in text  # the oldest went first


def test_late_output_answer_fits_its_openapi_schema(testapp):
    jsonschema = pytest.importorskip("jsonschema")
    env = create(testapp, "tschema")
    first = run(testapp, "tschema", WAIT_FOR_FILE +
                "def later():\n"
                "    wait_file('go')\n"
                "    print('late')\n"
                "    display(42)\n"
                "threading.Thread(target=later, daemon=True).start()")
    touch(env, "go")
    wait_late(testapp, "tschema", "42\n", name="display_data",
              execution_count=first["execution_count"])
    document = testapp.get("/openapi.json").json
    operation = document["paths"]["/envs/{id}/late_output"]["get"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    body = testapp.get("/envs/tschema/late_output").json
    validator = jsonschema.Draft202012Validator(dict(schema, components=document["components"]))
    assert [e.message for e in validator.iter_errors(body)] == []
    assert [(e["name"], e["text"]) for e in body["late_output"]] == [
        ("stdout", "late\n"), ("display_data", "42\n")]


def test_late_output_of_an_unknown_env_is_404(testapp):
    assert_problem(testapp.get("/envs/nope/late_output", expect_errors=True), 404,
                   "env-not-found")
    assert_problem(testapp.get("/envs/.bad/late_output", expect_errors=True), 422)


# -- capture cannot be broken ---------------------------------------------------------------

@pytest.mark.parametrize("fd", [0, 1, 2])
def test_open_of_fd_0_1_2_is_refused(testapp, fd):
    create(testapp, "op%d" % fd)
    record = run(testapp, "op%d" % fd, "f = open(%d, 'w')" % fd)
    assert record["status"] == "error" and record["reason"] is None, record
    assert record["error"]["ename"] == "ValueError", record["error"]
    assert "fd %d" % fd in record["error"]["evalue"], record["error"]
    # Ordinary files still open, by name and by another descriptor.
    ok = run(testapp, "op%d" % fd,
             "import os\n"
             "with open('a.txt', 'w') as f:\n"
             "    f.write('x')\n"
             "fd = os.open('a.txt', os.O_RDONLY)\n"
             "with open(fd) as f:\n"
             "    print(f.read())")
    assert ok["status"] == "ok" and ok["stdout"] == "x\n", ok
    after = run(testapp, "op%d" % fd,
                "os.system('echo out; echo err >&2')")
    assert after["stdout"] == "out\n" and after["stderr"] == "err\n", after


@pytest.mark.parametrize("how", [
    "import io\nf = io.open(%d, 'w')\nf.close()",
    "import io\nf = io.open(%d, 'w')\ndel f",
    "import os\nos.close(%d)",
])
@pytest.mark.parametrize("fd", [1, 2])
def test_a_cell_closing_fd_1_or_2_does_not_break_the_next_cells(testapp, how, fd):
    create(testapp, "cl")
    broken = run(testapp, "cl", how % fd)
    assert broken["status"] == "ok", broken
    after = run(testapp, "cl", "import os\nos.system('echo out; echo err >&2')\nprint('py')")
    assert after["status"] == "ok", after
    assert after["stdout"] == "out\npy\n", after
    assert after["stderr"] == "err\n", after
    again = run(testapp, "cl", "import subprocess\nsubprocess.run(['echo', 'sub'])")
    assert again["stdout"] == "sub\n", again


def test_a_cell_replacing_fd_1_with_a_file_does_not_break_the_next_cells(testapp):
    env = create(testapp, "dup")
    run(testapp, "dup", "import os\nfd = os.open('out.txt', os.O_WRONLY | os.O_CREAT)\n"
                        "os.dup2(fd, 1)\nos.system('echo to the file')")
    after = run(testapp, "dup", "os.system('echo captured')")
    assert after["stdout"] == "captured\n", after
    with open(os.path.join(env["cwd"], "out.txt")) as handle:
        assert handle.read() == "to the file\n"
