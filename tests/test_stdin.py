"""Interactive input over plain HTTP (issue 19): real kernels.

An execution sent with ``allow_stdin: true`` whose ``input()`` or ``getpass()``
finds no line left in the request's ``stdin`` is ``waiting_input`` with an
``input_request``; POST .../executions/{n}/input answers it.  The wait ends at
``input_timeout`` (EOFError), at an interrupt or at a cancel.
"""

import http.client
import json
import os
import time
import urllib.parse

import pytest
import webtest

from helpers import HANG_GUARD, TOKEN, assert_problem, poll, submit, wait_for


@pytest.fixture
def testapp(testapp):
    """conftest's client, with the env ``io``."""
    testapp.post_json("/envs", {"id": "io"})
    return testapp


def waiting(testapp, n, env="io"):
    """Execution ``n``'s record once it waits for input."""
    def asked():
        record = testapp.get("/envs/%s/executions/%d" % (env, n)).json
        assert record["status"] in ("running", "waiting_input"), record
        return record if record["status"] == "waiting_input" else None
    return wait_for(asked, message="execution %d to wait for input" % n)


def finished(testapp, n, env="io"):
    record = testapp.get("/envs/%s/executions/%d" % (env, n), status="*").json
    return record if record["status"] not in ("running", "waiting_input") else None


def answer(testapp, n, value, env="io", **kwargs):
    return testapp.post_json("/envs/%s/executions/%d/input" % (env, n), {"value": value},
                             **kwargs)


def test_a_line_asked_for_is_answered_and_the_cell_goes_on(testapp):
    queued = submit(testapp, "io", "name = input('Name: ')\nprint('hi', name)\nname",
                    allow_stdin=True)
    n = queued["execution_count"]
    record = waiting(testapp, n)
    assert record["input_request"] == {"prompt": "Name: ", "password": False}
    listed = testapp.get("/envs/io/executions").json["executions"]
    assert [r["status"] for r in listed if r["execution_count"] == n] == ["waiting_input"]
    res = answer(testapp, n, "Ada")
    assert res.status_int == 200
    assert res.json["status"] in ("running", "ok"), res.json
    assert "input_request" not in res.json
    done = poll(testapp, "io", n)
    assert done["status"] == "ok", done
    assert done["stdout"] == "Name: Ada\nhi Ada\n"  # as a terminal's transcript shows it
    assert done["result"]["text/plain"] == "'Ada'"
    assert "input_request" not in done


def test_the_request_stdin_is_read_first_then_the_user_is_asked(testapp):
    n = submit(testapp, "io", "a = input('a? ')\nb = input('b? ')\n(a, b)",
               stdin="one\n", allow_stdin=True)["execution_count"]
    assert waiting(testapp, n)["input_request"]["prompt"] == "b? "
    answer(testapp, n, "two")
    done = poll(testapp, "io", n)
    assert done["result"]["text/plain"] == "('one', 'two')", done


def test_a_password_is_asked_masked_and_never_kept(testapp, state_dir):
    n = submit(testapp, "io", "import getpass\nsecret = getpass.getpass()\nlen(secret)",
               allow_stdin=True)["execution_count"]
    assert waiting(testapp, n)["input_request"] == {"prompt": "Password: ", "password": True}
    answer(testapp, n, "hunter2-s3cret")
    done = poll(testapp, "io", n)
    assert done["status"] == "ok", done
    assert done["result"]["text/plain"] == "14"
    assert done["stdout"] == "Password: \n"
    assert "hunter2" not in json.dumps(testapp.get("/envs/io/executions").json)
    assert "hunter2" not in testapp.get("/envs/io/notebook").text
    for root, _, files in os.walk(state_dir):  # history, env.json, kernel.log, status
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    assert b"hunter2" not in f.read(), name
            except OSError:  # sockets
                continue


def test_without_allow_stdin_input_is_an_eof_error_that_says_how(testapp):
    done = testapp.post_json("/envs/io/execute", {"code": "input('x? ')"}).json
    assert done["status"] == "error"
    assert done["error"]["ename"] == "EOFError"
    assert "allow_stdin" in done["error"]["evalue"], done["error"]


def test_no_answer_within_input_timeout_is_an_eof_error(make_test_app):
    client = webtest.TestApp(make_test_app(input_timeout=0.5),
                             extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    client.post_json("/envs", {"id": "io"})
    res = client.post_json("/envs/io/execute", {"code": "input('x? ')", "allow_stdin": True,
                                                "wait": HANG_GUARD}, status=202)
    assert res.json["status"] == "waiting_input"  # a wait ends when the caller must act
    assert res.headers["Location"].endswith("/envs/io/executions/1")
    done = wait_for(lambda: finished(client, 1), message="the input timeout")
    assert done["status"] == "error", done
    assert done["error"]["ename"] == "EOFError"
    assert "input_timeout" in done["error"]["evalue"], done["error"]
    again = client.post_json("/envs/io/execute", {"code": "1 + 1"}).json
    assert again["result"]["text/plain"] == "2"  # the kernel goes on


def test_an_interrupt_ends_the_wait(testapp):
    n = submit(testapp, "io", "input()", allow_stdin=True)["execution_count"]
    waiting(testapp, n)
    testapp.post("/envs/io/interrupt")
    done = wait_for(lambda: finished(testapp, n), message="the interrupt")
    assert done["status"] == "error" and done["reason"] == "interrupted", done
    assert done["error"]["ename"] == "KeyboardInterrupt"
    assert testapp.post_json("/envs/io/execute", {"code": "2"}).json["status"] == "ok"


def test_a_cancel_ends_the_wait(testapp):
    n = submit(testapp, "io", "input()", allow_stdin=True)["execution_count"]
    waiting(testapp, n)
    testapp.post("/envs/io/executions/%d/cancel" % n)
    # polls answer at once while it still waits: until the interrupt has landed
    done = wait_for(lambda: finished(testapp, n), message="the cancel")
    assert done["status"] == "aborted" and done["reason"] == "cancelled", done


def test_the_execution_timeout_does_not_run_while_a_person_types(testapp):
    n = submit(testapp, "io", "import time\nv = input()\ntime.sleep(0.2)\nv",
               allow_stdin=True, timeout=1)["execution_count"]
    waiting(testapp, n)
    # Waiting longer than the cell's timeout: only the time it computes counts.
    time.sleep(1.5)
    assert testapp.get("/envs/io/executions/%d" % n).json["status"] == "waiting_input"
    answer(testapp, n, "late")
    done = poll(testapp, "io", n)
    assert done["status"] == "ok", done


def test_answers_that_cannot_be_given(testapp):
    n = submit(testapp, "io", "import time\ntime.sleep(30)", allow_stdin=True)[
        "execution_count"]
    assert_problem(answer(testapp, n, "x", status=409), 409, "execution-not-waiting")
    testapp.post("/envs/io/executions/%d/cancel" % n)
    poll(testapp, "io", n)
    assert_problem(answer(testapp, n, "x", status=409), 409, "execution-not-waiting")
    assert_problem(answer(testapp, 999, "x", status=404), 404)
    assert_problem(answer(testapp, n, "x", env="nope", status=404), 404)
    m = submit(testapp, "io", "input()", allow_stdin=True)["execution_count"]
    waiting(testapp, m)
    for bad in (5, True, ["x"], {"v": 1}, "lone \ud800"):
        assert_problem(answer(testapp, m, bad, status=422), 422)
    res = testapp.post_json("/envs/io/executions/%d/input" % m, {}, status=400)
    assert_problem(res, 400, "missing-parameter", param="value")
    assert testapp.get("/envs/io/executions/%d" % m).json["status"] == "waiting_input"
    answer(testapp, m, "fine \u00e9")
    done = poll(testapp, "io", m)
    assert done["status"] == "ok", done
    assert done["result"]["text/plain"].startswith("'fine "), done


def test_eof_one_line_and_silent_cells(testapp):
    n = submit(testapp, "io", "try:\n    input('more? ')\nexcept EOFError as e:\n    err = e\n"
               "str(err)", allow_stdin=True)["execution_count"]
    waiting(testapp, n)
    for bad in ({"value": "a\nb"}, {"value": "a\rb"}):
        res = testapp.post_json("/envs/io/executions/%d/input" % n, bad, status=422)
        assert_problem(res, 422)
    testapp.post("/envs/io/executions/%d/eof" % n)
    done = poll(testapp, "io", n)
    assert "end of input" in done["result"]["text/plain"], done
    m = submit(testapp, "io", "input()", allow_stdin=True)["execution_count"]
    waiting(testapp, m)
    answer(testapp, m, "with its newline\r\n")
    assert poll(testapp, "io", m)["result"]["text/plain"] == "'with its newline'"
    # A silent cell has no number to be answered by: it is never asked.
    res = testapp.post_json("/envs/io/execute", {"code": "input('x? ')", "silent": True,
                                                "allow_stdin": True})
    assert res.status_int == 200 and res.json["error"]["ename"] == "EOFError", res.json


def test_a_stream_carries_the_input_request(live):
    status, _, _ = live.request("POST", "/envs", {"id": "st"})
    assert status == 201
    url = urllib.parse.urlsplit(live.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=HANG_GUARD)
    try:
        conn.request("POST", "/envs/st/execute", json.dumps({
            "code": "print('before')\nv = input('v? ')\nprint('got', v)", "stream": True,
            "allow_stdin": True}), {"Authorization": "Bearer " + live.token,
                                   "Content-Type": "application/json"})
        res = conn.getresponse()
        assert res.status == 200
        events = []
        for _ in range(100):  # bounded: accepted, outputs, heartbeats, record
            line = res.readline()
            if not line:
                break
            if not line.strip():
                continue
            event = json.loads(line)
            events.append(event)
            if event["event"] == "input_request":
                status, _, body = live.request(
                    "POST", "/envs/st/executions/%d/input" % event["execution_count"],
                    {"value": "streamed"})
                assert status == 200, body
            if event["event"] == "record":
                break
    finally:
        conn.close()
    kinds = [e["event"] for e in events if e["event"] != "heartbeat"]
    assert kinds[0] == "accepted"
    asked = [e for e in events if e["event"] == "input_request"]
    assert asked and asked[0]["prompt"] == "v? " and asked[0]["password"] is False, events
    assert events[-1]["event"] == "record"
    assert events[-1]["stdout"] == "before\nv? streamed\ngot streamed\n", events[-1]


# -- the Python client and the command line --------------------------------------------

CELL = "name = input('Name: ')\nimport getpass\nsecret = getpass.getpass('Secret: ')\n" \
       "print('hi', name, len(secret))"


def test_the_client_answers_with_a_callback_by_polling_and_by_stream(live):
    from wsgikernel.client import Client
    client = Client(live.url, token=live.token, timeout=HANG_GUARD)
    client.create("cl")
    asked = []

    def ask(prompt, password):
        asked.append((prompt, password))
        return "pw123" if password else "Ada"
    record = client.execute("cl", CELL, input=ask)
    assert record["status"] == "ok", record
    assert record["stdout"] == "Name: Ada\nSecret: \nhi Ada 5\n"
    assert asked == [("Name: ", False), ("Secret: ", True)]
    events = list(client.stream("cl", CELL, input=ask))
    assert [e["prompt"] for e in events if e["event"] == "input_request"] == [
        "Name: ", "Secret: "]
    assert events[-1]["stdout"] == record["stdout"]
    waiting = client.execute("cl", "input('? ')", allow_stdin=True)  # the caller's turn
    assert waiting["status"] == "waiting_input", waiting
    client.answer("cl", waiting["execution_count"], "by hand")
    assert client.result("cl", waiting["execution_count"])["result"]["text/plain"] == \
        "'by hand'"


def on_a_terminal(live, env, code, answers):
    """(exit status, what the screen showed) of ``wsgikernel exec ENV CODE`` on a pty;
    each (prompt, keys) of ``answers`` is typed once, when the screen ends with it."""
    import pty
    import select
    import subprocess
    import sys
    from helpers import ROOT
    main, child = pty.openpty()
    environ = dict(os.environ, WSGIKERNEL_URL=live.url, WSGIKERNEL_TOKEN=live.token,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "wsgikernel", "exec", env, code],
                            stdin=child, stdout=child, stderr=child, env=environ, cwd=ROOT,
                            start_new_session=True)
    os.close(child)
    screen, left = b"", list(answers)
    try:
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:  # bounded: the guard, one answer per prompt
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # EIO: the CLI exited and closed the terminal
                    break
                if not chunk:
                    break
                screen += chunk
            if left and screen.endswith(left[0][0]):
                os.write(main, left.pop(0)[1])
            if proc.poll() is not None and not ready:
                break
        status = proc.wait(HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(main)
    assert not left, (left, screen)  # every prompt came
    return status, screen.decode("utf-8", "replace").replace("\r\n", "\n")


def test_the_cli_prompts_on_the_terminal_and_hides_a_password(live):
    status, text = on_a_terminal(live, "cli-io", CELL, [(b"Name: ", b"Ada\n"),
                                                        (b"Secret: ", b"pw123\n")])
    assert status == 0, text
    assert text.count("Name: ") == 1 and text.count("Secret: ") == 1, text  # not echoed twice
    assert "Name: Ada\n" in text  # the terminal echoed what was typed
    assert "pw123" not in text  # getpass: no echo
    assert text.rstrip().endswith("hi Ada 5"), text


def test_ctrl_d_at_the_cli_prompt_is_end_of_input(live):
    status, text = on_a_terminal(live, "cli-eof", "input('Name: ')", [(b"Name: ", b"\x04")])
    assert status == 1, text  # the cell raised EOFError
    assert "EOFError: end of input" in text, text
