"""The kernel's pure pieces, no subprocess: cell semantics, rich output, I/O capture, records."""

import base64
import inspect
import linecache
import sys
import unittest.mock

import pytest

from wsgikernel.kernel import display, execute, records
from wsgikernel.kernel.capture import OutputBudget, OutStream, StdinText
from wsgikernel.kernel.display import mime_bundle
from wsgikernel.kernel.execute import Shell
from wsgikernel.kernel.records import TRUNCATION_MARKER, Execution

RECORD_KEYS = {"env", "session", "execution_count", "code", "status", "reason", "stdout",
               "stderr", "result", "outputs", "error", "user_expressions", "truncated",
               "queued_at", "started", "finished", "duration"}


@pytest.fixture
def shell():
    """A Shell on a fresh namespace; ``shell.emitted`` is what it emitted."""
    emitted = []
    made = Shell({"__name__": "__main__"}, emit=emitted.append)
    made.emitted = emitted
    try:
        yield made
    finally:
        if made.loop is not None:
            made.loop.close()


def frame_lines(outcome):
    return [line for line in outcome["error"]["traceback"] if line.lstrip().startswith('File "')]


# -- Shell.run_cell: the three outcomes -------------------------------------------------

def test_case_1_a_cell_that_does_not_parse(shell):
    outcome = shell.run_cell("1 +* 2", 1)
    assert outcome["status"] == "error"
    assert outcome["result"] is None
    assert outcome["user_expressions"] == {}
    error = outcome["error"]
    assert error["ename"] == "SyntaxError"
    assert error["traceback"][:2] == ['  File "<cell 1>", line 1', "    1 +* 2"]
    assert error["traceback"][2].strip() == "^"
    assert error["traceback"][2].index("^") == "    1 +* 2".index("*")
    assert error["traceback"][-1] == "SyntaxError: invalid syntax"
    assert shell.emitted == []


def test_case_2_a_cell_that_runs_with_a_result(shell):
    outcome = shell.run_cell("a = 2\na * 3", 4)
    assert outcome == {"status": "ok", "result": {"text/plain": "6"}, "error": None,
                       "user_expressions": {}}
    assert shell.emitted == [{"output_type": "execute_result", "execution_count": 4,
                              "data": {"text/plain": "6"}, "metadata": {}}]
    assert shell.namespace["_"] == 6


def test_case_2_without_a_displayed_value(shell):
    for code in ("None", "b = 1", "for i in range(3):\n    i", ""):
        outcome = shell.run_cell(code, 1)
        assert outcome == {"status": "ok", "result": None, "error": None,
                           "user_expressions": {}}, code
    assert shell.emitted == []
    assert "_" not in shell.namespace


def test_case_3_a_cell_that_raises(shell):
    outcome = shell.run_cell("x = 1\n1/0", 2)
    assert outcome["status"] == "error"
    assert outcome["result"] is None
    assert outcome["user_expressions"] == {}
    error = outcome["error"]
    assert (error["ename"], error["evalue"]) == ("ZeroDivisionError", "division by zero")
    assert error["traceback"][0] == "Traceback (most recent call last):"
    assert frame_lines(outcome) == ['  File "<cell 2>", line 2, in <module>']
    assert "    1/0" in error["traceback"]
    assert error["traceback"][-1] == "ZeroDivisionError: division by zero"
    assert shell.namespace["x"] == 1


@pytest.mark.parametrize("code, ename, evalue", [
    ("raise KeyboardInterrupt", "KeyboardInterrupt", ""),
    ("raise SystemExit(3)", "SystemExit", "3"),
    ("import sys; sys.exit('bye')", "SystemExit", "bye"),
])
def test_case_3_includes_base_exceptions(shell, code, ename, evalue):
    outcome = shell.run_cell(code, 1)
    assert outcome["status"] == "error"
    assert (outcome["error"]["ename"], outcome["error"]["evalue"]) == (ename, evalue)


def test_silent_cells_display_nothing(shell):
    outcome = shell.run_cell("5", None, silent=True)
    assert outcome["result"] is None
    assert shell.emitted == []
    assert "_" not in shell.namespace
    assert shell.run_cell("1/0", None, silent=True)["error"]["traceback"][1].startswith(
        '  File "<silent cell 2>"')


def test_each_silent_cell_keeps_its_own_source(shell):
    import inspect
    shell.run_cell("def g():\n    return 1", None, silent=True)
    shell.run_cell("x = 1", None, silent=True)
    assert inspect.getsource(shell.namespace["g"]) == "def g():\n    return 1"


def test_underscores_shift(shell):
    for n, code in enumerate(("'a'", "'b'", "None", "'c'"), 1):
        shell.run_cell(code, n)
    assert (shell.namespace["_"], shell.namespace["__"], shell.namespace["___"]) == ("c", "b", "a")


def test_displayhook_is_restored_after_a_cell(shell):
    hook = sys.displayhook
    shell.run_cell("1", 1)
    shell.run_cell("1/0", 2)
    assert sys.displayhook is hook


def test_cells_are_registered_in_linecache(shell):
    shell.run_cell("def documented():\n    return 'src'", 9)
    assert linecache.getline("<cell 9>", 2) == "    return 'src'"
    assert inspect.getsource(shell.namespace["documented"]) == (
        "def documented():\n    return 'src'")


def test_future_annotations_persist_across_cells(shell):
    shell.run_cell("from __future__ import annotations", 1)
    outcome = shell.run_cell("def f(x: NotDefinedAnywhere) -> AlsoUndefined:\n    pass\n"
                             "f.__annotations__", 2)
    assert outcome["status"] == "ok", outcome["error"]
    assert outcome["result"] == {
        "text/plain": repr({"x": "NotDefinedAnywhere", "return": "AlsoUndefined"})}


def test_without_the_future_import_annotations_are_evaluated(shell):
    outcome = shell.run_cell("def f(x: NotDefinedAnywhere):\n    pass", 1)
    assert outcome["error"]["ename"] == "NameError"


def test_top_level_await(shell):
    outcome = shell.run_cell("import asyncio\nawait asyncio.sleep(0)\n7", 1)
    assert outcome["result"] == {"text/plain": "7"}
    outcome = shell.run_cell("await asyncio.sleep(0, result='again')", 2)  # the same loop
    assert outcome["result"] == {"text/plain": "'again'"}


def test_traceback_drops_kernel_frames_but_keeps_library_frames(shell):
    outcome = shell.run_cell("import json\njson.loads('{')", 1)
    lines = outcome["error"]["traceback"]
    files = frame_lines(outcome)
    assert files[0] == '  File "<cell 1>", line 2, in <module>'
    assert any("json" in line and "decoder.py" in line for line in files)
    assert not any(execute.__file__ in line or "wsgikernel" in line for line in lines)


def test_traceback_filtering_follows_chained_exceptions(shell):
    code = "try:\n    1/0\nexcept Exception as exc:\n    raise ValueError('outer') from exc"
    outcome = shell.run_cell(code, 3)
    lines = outcome["error"]["traceback"]
    assert "The above exception was the direct cause of the following exception:" in lines
    assert frame_lines(outcome) == ['  File "<cell 3>", line 2, in <module>',
                                    '  File "<cell 3>", line 4, in <module>']
    assert lines[-1] == "ValueError: outer"


def test_traceback_of_an_await_cell_drops_asyncio_frames(shell):
    code = "async def g():\n    raise KeyError('k')\nawait g()"
    outcome = shell.run_cell(code, 5)
    assert frame_lines(outcome) == ['  File "<cell 5>", line 3, in <module>',
                                    '  File "<cell 5>", line 2, in g']


def test_user_expressions_after_a_successful_cell(shell):
    outcome = shell.run_cell("v = 21", 1, user_expressions={"a": "v * 2", "bad": "1/0",
                                                             "syntax": "1 +"})
    expressions = outcome["user_expressions"]
    assert expressions["a"] == {"status": "ok", "data": {"text/plain": "42"}, "metadata": {}}
    assert expressions["bad"] == {"status": "error", "ename": "ZeroDivisionError",
                                  "evalue": "division by zero"}
    assert expressions["syntax"]["status"] == "error"
    assert expressions["syntax"]["ename"] == "SyntaxError"
    assert shell.run_cell("1/0", 2, user_expressions={"a": "v"})["user_expressions"] == {}


def test_display_emits_display_data(shell):
    shell.display(1, "two")
    assert shell.emitted == [
        {"output_type": "display_data", "data": {"text/plain": "1"}, "metadata": {}},
        {"output_type": "display_data", "data": {"text/plain": "'two'"}, "metadata": {}}]


# -- display.mime_bundle ------------------------------------------------------------------

def rich(**methods):
    """An instance of a class with the given methods (name -> function of self)."""
    namespace = dict(methods, __repr__=lambda self: "Rich()")
    return type("Rich", (), namespace)()


def test_plain_objects_give_text_plain_only():
    assert mime_bundle(1) == ({"text/plain": "1"}, {})
    assert mime_bundle("s") == ({"text/plain": "'s'"}, {})


@pytest.mark.parametrize("method, mime, value", [
    ("_repr_html_", "text/html", "<b>x</b>"),
    ("_repr_markdown_", "text/markdown", "**x**"),
    ("_repr_svg_", "image/svg+xml", "<svg></svg>"),
    ("_repr_latex_", "text/latex", "$x$"),
    ("_repr_json_", "application/json", {"a": [1]}),
    ("_repr_json_", "application/json", [1, 2]),
    ("_repr_png_", "image/png", "iVBORw0KGgo="),  # already base64 text: kept
])
def test_each_repr_method_adds_its_mime_type(method, mime, value):
    data, metadata = mime_bundle(rich(**{method: lambda self: value}))
    assert data == {"text/plain": "Rich()", mime: value}
    assert metadata == {}


@pytest.mark.parametrize("method, mime", [("_repr_png_", "image/png"),
                                          ("_repr_jpeg_", "image/jpeg")])
def test_binary_images_are_base64(method, mime):
    payload = bytes(range(256))
    data, _ = mime_bundle(rich(**{method: lambda self: payload}))
    assert base64.b64decode(data[mime]) == payload


def test_a_repr_method_may_return_data_and_metadata():
    data, metadata = mime_bundle(rich(_repr_png_=lambda self: (b"\x89PNG", {"width": 10})))
    assert base64.b64decode(data["image/png"]) == b"\x89PNG"
    assert metadata == {"image/png": {"width": 10}}


def test_repr_mimebundle():
    calls = []

    def bundle(self, include=None, exclude=None):
        calls.append((include, exclude))
        return {"text/html": "<i>b</i>", "text/plain": "bundle"}

    assert mime_bundle(rich(_repr_mimebundle_=bundle)) == (
        {"text/html": "<i>b</i>", "text/plain": "bundle"}, {})
    assert calls == [(None, None)]


def test_repr_mimebundle_with_metadata_and_repr_methods_beside_it():
    obj = rich(_repr_mimebundle_=lambda self, include=None, exclude=None: (
                   {"text/html": "<i>from bundle</i>"}, {"text/html": {"isolated": True}}),
               _repr_html_=lambda self: "<i>from method</i>",
               _repr_markdown_=lambda self: "*md*")
    data, metadata = mime_bundle(obj)
    assert data == {"text/html": "<i>from bundle</i>", "text/markdown": "*md*",
                    "text/plain": "Rich()"}
    assert metadata == {"text/html": {"isolated": True}}


@pytest.mark.parametrize("method, value", [
    ("_repr_html_", RuntimeError("broken")),
    ("_repr_html_", None),
    ("_repr_html_", 42),
    ("_repr_json_", "not a dict"),
    ("_repr_png_", 3.5),
    ("_repr_mimebundle_", RuntimeError("broken")),
    ("_repr_mimebundle_", "not a dict"),
])
def test_a_failing_repr_method_falls_back_to_text_plain(method, value):
    def answer(self, *args, **kwargs):
        if isinstance(value, Exception):
            raise value
        return value
    assert mime_bundle(rich(**{method: answer})) == ({"text/plain": "Rich()"}, {})


def test_a_failing_mimebundle_still_uses_the_repr_methods():
    def broken(self, include=None, exclude=None):
        raise ValueError("no bundle")
    obj = rich(_repr_mimebundle_=broken, _repr_html_=lambda self: "<p>ok</p>")
    assert mime_bundle(obj)[0] == {"text/html": "<p>ok</p>", "text/plain": "Rich()"}


def test_a_failing_repr_still_gives_text_plain():
    class Unprintable:
        def __repr__(self):
            raise RuntimeError("no repr")
    text = mime_bundle(Unprintable())[0]["text/plain"]
    assert "Unprintable" in text and "repr failed" in text and "no repr" in text


def test_a_huge_repr_is_cut():
    text = mime_bundle("x" * (display.REPR_LIMIT + 100))[0]["text/plain"]
    assert len(text) < display.REPR_LIMIT + 100
    assert text.endswith("[repr cut at %d characters]" % display.REPR_LIMIT)


def test_an_object_answering_every_attribute_is_not_rich():
    class Proxy:
        def __getattr__(self, name):
            return lambda *args, **kwargs: "<b>%s</b>" % name

        def __repr__(self):
            return "Proxy()"

    assert Proxy()._repr_html_() == "<b>_repr_html_</b>"  # it would answer, if asked
    assert mime_bundle(Proxy()) == ({"text/plain": "Proxy()"}, {})
    data, _ = mime_bundle(unittest.mock.MagicMock())
    assert list(data) == ["text/plain"]


def test_a_class_is_not_rich_because_its_instances_are():
    cls = type(rich(_repr_html_=lambda self: "<b>x</b>"))
    assert list(mime_bundle(cls)[0]) == ["text/plain"]


def test_repr_mimebundle_keeps_json_values_of_plus_json_types():
    spec = {"mark": "bar", "data": {"values": [1, 2]}}
    obj = rich(_repr_mimebundle_=lambda self, include=None, exclude=None: {
        "application/vnd.vegalite.v5+json": spec, "text/plain": "chart"})
    assert mime_bundle(obj)[0] == {"application/vnd.vegalite.v5+json": spec,
                                   "text/plain": "chart"}


# -- capture ------------------------------------------------------------------------------

def test_output_budget_without_a_cap_takes_everything():
    budget = OutputBudget()
    assert budget.take("x" * 10_000) == ("x" * 10_000, False)
    budget.reset(None)
    assert budget.take("y" * 10_000) == ("y" * 10_000, False)


def test_output_budget_truncates_once_then_drops():
    budget = OutputBudget()
    budget.reset(10)
    assert budget.take("abc") == ("abc", False)
    assert budget.take("defghijklm") == ("defghij", True)
    assert budget.take("more") == ("", False)
    assert budget.exhausted
    budget.reset(10)  # the next execution starts again
    assert budget.take("0123456789") == ("0123456789", False)
    assert budget.take("!") == ("", True)


def test_output_budget_counts_utf8_bytes_and_never_splits_a_character():
    budget = OutputBudget()
    budget.reset(5)
    assert budget.take("ééé") == ("éé", True)  # 6 bytes; the third would be cut in half


def test_out_stream_sends_writes_and_one_truncation_message():
    sent, budget = [], OutputBudget()
    budget.reset(4)
    stream = OutStream("stderr", 2, sent.append, budget)
    assert stream.write("ab") == 2
    assert stream.write("cdef") == 4
    assert stream.write("gh") == 2
    assert stream.write("") == 0
    assert sent == [{"type": "stream", "body": {"name": "stderr", "text": "ab"}},
                    {"type": "stream", "body": {"name": "stderr", "text": "cd"}},
                    {"type": "truncated", "body": {}}]
    assert stream.fileno() == 2
    assert not stream.isatty()
    with pytest.raises(TypeError):
        stream.write(b"bytes")


def test_out_stream_buffer_replaces_invalid_utf8():
    sent, budget = [], OutputBudget()
    stream = OutStream("stdout", 1, sent.append, budget)
    assert stream.buffer.write(b"ok \xff\xfe") == 5
    assert sent == [{"type": "stream", "body": {"name": "stdout", "text": "ok \ufffd\ufffd"}}]
    print("printed", file=stream)
    assert "".join(m["body"]["text"] for m in sent[1:]) == "printed\n"


def test_stdin_text_reads_then_ends_and_ignores_close():
    stdin = StdinText("one\ntwo")
    assert stdin.readline() == "one\n"
    stdin.close()  # exit()/quit() do this
    assert stdin.readline() == "two"
    assert stdin.readline() == ""
    assert not stdin.isatty()
    assert stdin.name == "<stdin>"


# -- records.Execution ----------------------------------------------------------------------

def make_execution(cap=None, **request):
    request.setdefault("code", "print(1)")
    return Execution(7, 3, request, "env-1", 2, cap)


def test_a_new_execution_is_a_queued_record():
    record = make_execution().snapshot()
    assert set(record) == RECORD_KEYS
    assert record["status"] == "queued"
    assert (record["env"], record["session"], record["execution_count"], record["code"]) == (
        "env-1", 2, 3, "print(1)")
    assert record["stdout"] == record["stderr"] == ""
    assert record["outputs"] == [] and record["result"] is None and record["error"] is None
    assert record["user_expressions"] == {} and record["truncated"] is False
    assert isinstance(record["queued_at"], str)
    assert record["started"] is record["finished"] is record["duration"] is None


def test_start_marks_it_running_with_its_timeout():
    execution = make_execution()
    execution.start(None)
    assert execution.snapshot()["status"] == "running"
    assert isinstance(execution.snapshot()["started"], str)
    assert execution.deadline is None
    execution = make_execution(timeout=3)
    execution.start(60)
    assert execution.timeout == 3.0 and execution.deadline is not None
    execution = make_execution()
    execution.start(60)
    assert execution.timeout == 60.0


def test_consecutive_writes_to_one_stream_merge_in_outputs():
    execution = make_execution()
    published = []
    for name, text in (("stdout", "a"), ("stdout", "b"), ("stderr", "c"), ("stdout", "d")):
        published += execution.add_stream(name, text)
    assert published == [{"output_type": "stream", "name": n, "text": t}
                         for n, t in (("stdout", "a"), ("stdout", "b"), ("stderr", "c"),
                                      ("stdout", "d"))]
    record = execution.snapshot()
    assert record["outputs"] == [{"output_type": "stream", "name": "stdout", "text": "ab"},
                                 {"output_type": "stream", "name": "stderr", "text": "c"},
                                 {"output_type": "stream", "name": "stdout", "text": "d"}]
    assert (record["stdout"], record["stderr"]) == ("abd", "c")


def test_a_display_output_separates_stream_pieces():
    execution = make_execution()
    execution.add_stream("stdout", "a")
    shown = {"output_type": "display_data", "data": {"text/plain": "1"}, "metadata": {}}
    assert execution.add_output(shown) == [shown]
    execution.add_stream("stdout", "b")
    assert [o["output_type"] for o in execution.snapshot()["outputs"]] == [
        "stream", "display_data", "stream"]
    assert execution.snapshot()["result"] is None


def test_an_execute_result_becomes_the_result():
    execution = make_execution()
    result = {"output_type": "execute_result", "execution_count": 3,
              "data": {"text/plain": "2"}, "metadata": {}}
    execution.add_output(result)
    assert execution.snapshot()["result"] == {"text/plain": "2"}
    assert execution.snapshot()["outputs"] == [result]


def test_the_cap_cuts_with_one_marker():
    execution = make_execution(cap=10)
    marker = TRUNCATION_MARKER % 10
    published = execution.add_stream("stdout", "0123456789abc")
    assert published == [{"output_type": "stream", "name": "stdout", "text": "0123456789"},
                         {"output_type": "stream", "name": "stderr", "text": marker}]
    assert execution.add_stream("stdout", "more") == []
    assert execution.add_output({"output_type": "execute_result", "data": {"text/plain": "1"},
                                 "metadata": {}}) == []
    assert execution.truncate() == []
    record = execution.snapshot()
    assert record["truncated"] is True
    assert record["stdout"] == "0123456789"
    assert record["stderr"] == marker
    assert record["result"] == {"text/plain": "1"}  # the value survives the cap
    assert "10" in marker and "truncated" in marker


def test_the_cap_counts_utf8_bytes():
    execution = make_execution(cap=5)
    execution.add_stream("stdout", "ééé")
    assert execution.snapshot()["stdout"] == "éé"
    assert execution.snapshot()["truncated"] is True


def test_a_rich_output_over_the_cap_is_dropped_with_the_marker():
    execution = make_execution(cap=50)
    published = execution.add_output({"output_type": "display_data",
                                      "data": {"text/plain": "x" * 100}, "metadata": {}})
    assert published == [{"output_type": "stream", "name": "stderr",
                          "text": TRUNCATION_MARKER % 50}]
    assert execution.snapshot()["truncated"] is True


def test_a_snapshot_is_a_copy():
    execution = make_execution()
    execution.add_stream("stdout", "a")
    first = execution.snapshot()
    first["outputs"][0]["text"] = "changed"
    execution.add_stream("stdout", "b")
    assert first["stdout"] == "a" and len(first["outputs"]) == 1
    assert execution.snapshot()["outputs"][0]["text"] == "ab"


def finish(execution, outcome, stop_reason=None):
    execution.start(None)
    execution.stop_reason = stop_reason
    return execution.completed(outcome)


def error_outcome(ename, evalue="", traceback=None):
    return {"status": "error", "result": None, "user_expressions": {},
            "error": {"ename": ename, "evalue": evalue, "traceback": traceback or [ename]}}


def test_completed_ok():
    execution = make_execution()
    record = finish(execution, {"status": "ok", "result": None, "error": None,
                                "user_expressions": {"a": {"status": "ok"}}})
    assert execution.done
    assert (record["status"], record["reason"], record["error"]) == ("ok", None, None)
    assert record["user_expressions"] == {"a": {"status": "ok"}}
    assert isinstance(record["finished"], str)
    assert isinstance(record["duration"], float) and record["duration"] >= 0
    assert execution.deadline is None and execution.kill_at is None


def test_completed_with_an_error_appends_the_error_output():
    outcome = error_outcome("ZeroDivisionError", "division by zero",
                            ["Traceback (most recent call last):", "ZeroDivisionError: x"])
    record = finish(make_execution(), outcome)
    assert (record["status"], record["reason"]) == ("error", None)
    assert record["error"] == outcome["error"]
    assert record["outputs"] == [dict(outcome["error"], output_type="error")]


def test_completed_keyboard_interrupt_is_interrupted_only_when_requested():
    execution = make_execution()
    execution.interrupt_requested = True
    record = finish(execution, error_outcome("KeyboardInterrupt"))
    assert (record["status"], record["reason"]) == ("error", "interrupted")
    assert record["error"]["ename"] == "KeyboardInterrupt"
    record = finish(make_execution(), error_outcome("KeyboardInterrupt"))  # the user's own
    assert (record["status"], record["reason"]) == ("error", None)


def test_completed_keyboard_interrupt_after_a_timeout_is_aborted():
    execution = make_execution(timeout=2)
    record = finish(execution, error_outcome("KeyboardInterrupt", "", ["tb"]), "timeout")
    assert (record["status"], record["reason"]) == ("aborted", "timeout")
    assert record["error"]["ename"] == "ExecutionTimeout"
    assert "timeout of 2 s" in record["error"]["evalue"]
    assert record["outputs"][-1]["ename"] == "ExecutionTimeout"


def test_completed_keyboard_interrupt_after_a_cancel_is_aborted():
    record = finish(make_execution(), error_outcome("KeyboardInterrupt"), "cancelled")
    assert (record["status"], record["reason"]) == ("aborted", "cancelled")
    assert record["error"]["ename"] == "ExecutionCancelled"


def test_another_error_after_a_stop_request_stays_an_error():
    record = finish(make_execution(), error_outcome("ValueError", "v"), "timeout")
    assert (record["status"], record["reason"]) == ("error", None)


def test_aborted():
    execution = make_execution()
    record = execution.aborted("kernel_died", "KernelDied", "the kernel was killed by SIGKILL")
    assert execution.done
    assert (record["status"], record["reason"]) == ("aborted", "kernel_died")
    assert record["error"] == {"ename": "KernelDied",
                               "evalue": "the kernel was killed by SIGKILL",
                               "traceback": ["KernelDied: the kernel was killed by SIGKILL"]}
    assert record["outputs"] == [dict(record["error"], output_type="error")]
    assert record["duration"] is None  # it never started
    assert isinstance(record["finished"], str)


def test_exit_description():
    assert records.exit_description(None, 9) == "the kernel was killed by SIGKILL"
    assert records.exit_description(3, None) == "the kernel exited with code 3"
    assert records.exit_description(None, None) == "the kernel exited (status unknown)"
