"""IPython parity of cell semantics (DESIGN 5): a trailing ``;``, warnings once per
cell, failing formatters, and a user's own ``_``.

Unit tests drive ``wsgikernel.kernel.execute.Shell`` directly; a few functional
tests check the same through the HTTP API against a real kernel.
"""

import builtins
import warnings

import pytest

from helpers import run
from wsgikernel.kernel.execute import Shell


@pytest.fixture
def shell():
    """A Shell on a fresh namespace with the ``display`` builtin in it;
    ``shell.emitted`` is what it emitted."""
    emitted = []
    made = Shell({"__name__": "__main__"}, emit=emitted.append)
    made.namespace["display"] = made.display
    made.emitted = emitted
    try:
        yield made
    finally:
        if made.loop is not None:
            made.loop.close()


def frame_lines(lines):
    return [line for line in lines if line.lstrip().startswith('File "')]


def results(shell):
    return [o for o in shell.emitted if o["output_type"] == "execute_result"]


BAD_HTML = ("class BadHtml:\n"
            "    def _repr_html_(self):\n"
            "        raise RuntimeError('no html today')\n"
            "    def __repr__(self):\n"
            "        return 'BadHtml()'\n")
BAD_REPR = ("class Unprintable:\n"
            "    def __repr__(self):\n"
            "        raise ValueError('no repr')\n")


# -- 1. a trailing semicolon silences the result ----------------------------------------

@pytest.mark.parametrize("code", [
    "1+1;",
    "x = [1]; x;",
    "1;  # comment",
    "1;\n",
    "1;\n# a comment after it\n\n",
    "if True:\n    pass\n'last';",
    "(1,\n 2);",
])
def test_a_trailing_semicolon_shows_no_result(shell, code):
    shell.run_cell("'before'", 1)
    outcome = shell.run_cell(code, 2)
    assert outcome == {"status": "ok", "result": None, "error": None,
                       "user_expressions": {}}
    assert len(results(shell)) == 1  # the first cell's only
    assert shell.namespace["_"] == "before"  # the history did not move


def test_a_quiet_expression_is_still_evaluated(shell):
    outcome = shell.run_cell("calls = []\ncalls.append(1) or 'shown?';", 1)
    assert outcome["status"] == "ok" and outcome["result"] is None
    assert shell.namespace["calls"] == [1]


@pytest.mark.parametrize("code, shown", [
    ("a = 1; a", "1"),
    ('"a;"', "'a;'"),
    ("1  # ;", "1"),
    ("x = 2;\nx", "2"),
    ("'''\n;\n'''", repr("\n;\n")),
])
def test_a_semicolon_that_is_not_the_last_token_does_not_count(shell, code, shown):
    outcome = shell.run_cell(code, 1)
    assert outcome["status"] == "ok", outcome["error"]
    assert outcome["result"] == {"text/plain": shown}
    assert len(results(shell)) == 1


def test_a_semicolon_after_a_statement_changes_nothing(shell):
    outcome = shell.run_cell("y = 3;", 1)
    assert outcome == {"status": "ok", "result": None, "error": None, "user_expressions": {}}
    assert shell.namespace["y"] == 3


def test_the_quiet_rule_never_fails_a_cell():
    from wsgikernel.kernel import execute
    assert execute._ends_with_semicolon("1;") is True
    assert execute._ends_with_semicolon("1") is False
    assert execute._ends_with_semicolon("'unterminated") is False  # tokenize error: not quiet
    assert execute._ends_with_semicolon("(1;") is False


# -- 2. warnings: once per location per cell ---------------------------------------------

def test_a_warning_is_shown_in_each_cell(shell):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        shell.run_cell("import warnings\nwarnings.warn('x')", 1)
        shell.run_cell("import warnings\nwarnings.warn('x')", 2)
        shell.run_cell("def warn_me():\n    warnings.warn('from f')", 3)
        shell.run_cell("warn_me()", 4)
        shell.run_cell("warn_me()", 5)
    assert [(str(w.message), w.filename, w.lineno) for w in caught] == [
        ("x", "<cell 1>", 2), ("x", "<cell 2>", 2),
        ("from f", "<cell 3>", 2), ("from f", "<cell 3>", 2)]


def test_a_warning_repeated_within_one_cell_is_shown_once(shell):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        shell.run_cell("import warnings\nfor i in range(3):\n    warnings.warn('loop')", 1)
    assert [str(w.message) for w in caught] == ["loop"]


def test_a_non_dict_warningregistry_is_left_alone(shell):
    shell.run_cell("__warningregistry__ = 'mine'", 1)
    assert shell.run_cell("__warningregistry__", 2)["result"] == {"text/plain": "'mine'"}


# -- 3. errors while formatting the result -----------------------------------------------

def test_a_failing_repr_method_keeps_the_others_and_reports_on_stderr(shell, capsys):
    outcome = shell.run_cell(BAD_HTML + "BadHtml()", 1)
    assert outcome["status"] == "ok", outcome["error"]
    assert outcome["result"] == {"text/plain": "BadHtml()"}
    assert results(shell)[0]["data"] == {"text/plain": "BadHtml()"}
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert frame_lines(err) == ['  File "<cell 1>", line 3, in _repr_html_']
    assert "    raise RuntimeError('no html today')" in err
    assert err[-1] == "RuntimeError: no html today"
    assert not any("wsgikernel" in line for line in err)
    assert shell.namespace["_"].__class__.__name__ == "BadHtml"


def test_a_failing_repr_method_beside_a_working_one(shell, capsys):
    code = ("class Half:\n"
            "    def _repr_html_(self):\n"
            "        return '<b>half</b>'\n"
            "    def _repr_markdown_(self):\n"
            "        raise KeyError('md')\n"
            "    def __repr__(self):\n"
            "        return 'Half()'\n"
            "Half()")
    outcome = shell.run_cell(code, 1)
    assert outcome["result"] == {"text/html": "<b>half</b>", "text/plain": "Half()"}
    err = capsys.readouterr().err
    assert 'File "<cell 1>", line 5, in _repr_markdown_' in err
    assert err.rstrip().endswith("KeyError: 'md'")


def test_a_failing_repr_mimebundle_is_reported_too(shell, capsys):
    code = ("class B:\n"
            "    def _repr_mimebundle_(self, include=None, exclude=None):\n"
            "        raise TypeError('bundle')\n"
            "B()")
    outcome = shell.run_cell(code, 1)
    assert outcome["status"] == "ok"
    assert set(outcome["result"]) == {"text/plain"}
    assert 'File "<cell 1>", line 3, in _repr_mimebundle_' in capsys.readouterr().err


def test_not_implemented_in_a_repr_method_is_silent(shell, capsys):
    code = ("class Lazy:\n"
            "    def _repr_html_(self):\n"
            "        raise NotImplementedError\n"
            "    def __repr__(self):\n"
            "        return 'Lazy()'\n"
            "Lazy()")
    assert shell.run_cell(code, 1)["result"] == {"text/plain": "Lazy()"}
    assert capsys.readouterr().err == ""


def test_a_failing_repr_of_the_result_is_an_error(shell):
    shell.run_cell("'before'", 1)
    outcome = shell.run_cell(BAD_REPR + "Unprintable()", 2)
    assert outcome["status"] == "error"
    assert outcome["result"] is None
    error = outcome["error"]
    assert (error["ename"], error["evalue"]) == ("ValueError", "no repr")
    assert frame_lines(error["traceback"]) == ['  File "<cell 2>", line 4, in <module>',
                                               '  File "<cell 2>", line 3, in __repr__']
    assert error["traceback"][-1] == "ValueError: no repr"
    assert not any("wsgikernel" in line for line in error["traceback"])
    assert len(results(shell)) == 1  # nothing emitted for the failed one
    assert shell.namespace["_"] == "before"


def test_display_of_an_unprintable_object_raises_in_the_cell(shell):
    outcome = shell.run_cell(BAD_REPR + "display(Unprintable())\nafter = 1", 1)
    assert outcome["status"] == "error"
    assert outcome["error"]["ename"] == "ValueError"
    assert frame_lines(outcome["error"]["traceback"]) == [
        '  File "<cell 1>", line 4, in <module>', '  File "<cell 1>", line 3, in __repr__']
    assert "after" not in shell.namespace
    assert shell.emitted == []


def test_display_reports_a_failing_repr_method_and_shows_the_rest(shell, capsys):
    outcome = shell.run_cell(BAD_HTML + "display(BadHtml())", 1)
    assert outcome["status"] == "ok"
    assert shell.emitted == [{"output_type": "display_data",
                              "data": {"text/plain": "BadHtml()"}, "metadata": {}}]
    assert "RuntimeError: no html today" in capsys.readouterr().err


def test_a_user_expression_with_a_failing_repr_is_an_error_for_its_key(shell):
    shell.run_cell(BAD_REPR + "u = Unprintable()", 1)
    outcome = shell.run_cell("", 2, user_expressions={"bad": "u", "good": "1"})
    assert outcome["status"] == "ok"
    assert outcome["user_expressions"] == {
        "bad": {"status": "error", "ename": "ValueError", "evalue": "no repr"},
        "good": {"status": "ok", "data": {"text/plain": "1"}, "metadata": {}}}


def test_mime_bundle_itself_still_never_fails():
    from wsgikernel.kernel.display import mime_bundle
    namespace = {}
    exec(BAD_REPR, namespace)
    text = mime_bundle(namespace["Unprintable"]())[0]["text/plain"]
    assert "repr failed" in text and "no repr" in text


# -- 4. the result history never overwrites the user's own _ -------------------------

def test_a_users_underscore_is_not_overwritten(shell):
    shell.run_cell("_ = 42", 1)
    assert shell.run_cell("1+1", 2)["result"] == {"text/plain": "2"}
    assert shell.namespace["_"] == 42
    assert "__" not in shell.namespace and "___" not in shell.namespace
    assert shell.run_cell("_", 3)["result"] == {"text/plain": "42"}


@pytest.mark.parametrize("name", ["__", "___"])
def test_a_users_double_or_triple_underscore_stops_all_updates(shell, name):
    shell.run_cell("'r1'", 1)
    shell.run_cell("%s = 'mine'" % name, 2)
    shell.run_cell("'r2'", 3)
    assert shell.namespace[name] == "mine"
    assert shell.namespace["_"] == "r1"  # none of them moved


def test_deleting_the_users_names_resumes_the_history(shell):
    shell.run_cell("'r1'", 1)
    shell.run_cell("_ = 'mine'", 2)
    shell.run_cell("'r2'", 3)
    shell.run_cell("del _, __, ___", 4)
    shell.run_cell("'r3'", 5)
    ns = shell.namespace
    assert (ns["_"], ns["__"], ns["___"]) == ("r3", "r2", "r1")  # tracked all along


def test_the_history_still_shifts_when_untouched(shell):
    for n, code in enumerate(("'a'", "'b'", "None", "'c'", "'d'"), 1):
        shell.run_cell(code, n)
    assert (shell.namespace["_"], shell.namespace["__"], shell.namespace["___"]) == (
        "d", "c", "b")


def test_a_builtin_underscore_is_left_visible(shell, monkeypatch):
    shell.run_cell("'r1'", 1)
    assert shell.namespace["_"] == "r1"

    def gettext(message):
        return "translated " + message
    monkeypatch.setattr(builtins, "_", gettext, raising=False)
    assert shell.run_cell("'r2'", 2)["result"] == {"text/plain": "'r2'"}
    assert "_" not in shell.namespace  # the shell's own was removed, as IPython does
    assert shell.run_cell("_('hi')", 3)["result"] == {"text/plain": "'translated hi'"}
    assert "_" not in shell.namespace


# -- functional: through the HTTP API ------------------------------------------------

@pytest.fixture
def env(testapp):
    testapp.put("/envs/x")
    return "x"


def ok(testapp, env, code):
    record = run(testapp, env, code)
    assert record["status"] == "ok", record["error"]
    return record


def test_http_a_trailing_semicolon(testapp, env):
    ok(testapp, env, "'first'")
    record = ok(testapp, env, "x = [1]; x;")
    assert record["result"] is None
    assert record["outputs"] == []
    assert ok(testapp, env, '"a;"')["result"] == {"text/plain": "'a;'"}
    assert ok(testapp, env, "1;  # comment")["result"] is None
    assert ok(testapp, env, "__")["result"] == {"text/plain": "'first'"}


def test_http_a_warning_in_two_cells(testapp, env):
    code = "import warnings; warnings.warn('x')"
    for _ in range(2):
        record = ok(testapp, env, code)
        assert "UserWarning: x" in record["stderr"], record


def test_http_a_failing_repr_html(testapp, env):
    record = ok(testapp, env, BAD_HTML + "BadHtml()")
    assert record["result"] == {"text/plain": "BadHtml()"}
    err = record["stderr"].splitlines()
    assert err[0] == "Traceback (most recent call last):"
    assert frame_lines(err) == ['  File "<cell 1>", line 3, in _repr_html_']
    assert err[-1] == "RuntimeError: no html today"


def test_http_a_failing_repr(testapp, env):
    record = run(testapp, env, BAD_REPR + "Unprintable()")
    assert record["status"] == "error"
    assert record["result"] is None
    assert record["error"]["ename"] == "ValueError"
    assert '  File "<cell 1>", line 3, in __repr__' in record["error"]["traceback"]
    assert [o["output_type"] for o in record["outputs"]] == ["error"]


def test_http_a_users_underscore(testapp, env):
    ok(testapp, env, "_ = 42")
    ok(testapp, env, "1+1")
    assert ok(testapp, env, "print(_)")["stdout"] == "42\n"
