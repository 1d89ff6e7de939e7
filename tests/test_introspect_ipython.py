"""is_complete and completion cases taken from IPython, ipykernel, jupyter_kernel_test and codeop.

- The indent after ``pass``/``break``/``continue``/``raise``/``return`` is the
  enclosing block's, read from the source (IPython's inputsplitter dedent tests).
- A backslash continuation and CRLF line endings give one answer on every
  Python (IPython's ``check_complete("\\\\\\r\\n")``).
- Completion inside f-string replacement fields (IPython's completer tests).

Unit tests call the handlers with a plain dict namespace; two go through HTTP.
"""

import builtins
import os

import pytest

from helpers import run


def handlers():
    from wsgikernel.kernel.introspect import HANDLERS
    return HANDLERS


def is_complete(code):
    return handlers()["is_complete"]({}, {"code": code})


def incomplete(indent):
    return {"status": "incomplete", "indent": indent}


def namespace(code):
    ns = {"__builtins__": builtins, "__name__": "__main__"}
    exec(compile(code, "<setup>", "exec"), ns)
    return ns


def complete(ns, code, **message):
    reply = handlers()["complete"](ns, dict(message, code=code))
    assert reply["status"] == "ok"
    assert reply["cursor_end"] == message.get("cursor_pos", len(code))
    types_ = reply["metadata"]["_jupyter_types_experimental"]
    assert [entry["text"] for entry in types_] == reply["matches"]
    assert all((entry["start"], entry["end"]) == (reply["cursor_start"], reply["cursor_end"])
               for entry in types_)
    return reply


# -- 1. dedent after pass / break / continue / raise / return ------------------------

@pytest.mark.parametrize("code, indent", [
    ("if x:\n    pass", ""),
    ("if x:\n     pass", ""),                      # a 5-space body
    ("if x:\n  pass", ""),
    ("if x:\n\tpass", ""),
    ("if x:\n    pass      ", ""),                 # trailing spaces
    ("if x:\n    pass  # done", ""),               # a trailing comment
    ("if x:\n    pass# done", ""),
    ("for i in y:\n  if i:\n      break", "  "),
    ("while y:\n   continue", ""),
    ("if x:\n    raise", ""),
    ("if x:\n    raise TypeError()", ""),
    ("if x:\n    raise(TypeError)", ""),
    ("def f():\n    return", ""),
    ("def f():\n     return 5 + 493", ""),
    ("def f():\n    return      ", ""),
    ("def f():\n    return(0)", ""),
    ("def f():\n  for i in y:\n    return(0)", "  "),
    ("def f():\n\tif a:\n\t\treturn", "\t"),
    ("class A:\n  def f(self):\n        return 1  # one", "  "),
    ("def f():\n    if x:\n        return 1", "    "),
    ("class A:\n  def f(self):\n# a comment in column 0\n      pass", "  "),
    ("def f():\n    if (a and\nb):\n        return", "    "),    # a continuation line
    ("def f():\n    x = '''\nab'''\n    if x:\n        return", "    "),
    ("def f():\n    if x:\n        y = 1\n\n        return", "    "),
    ("def f():\n    return \\\n        1", ""),      # a backslash continuation
    ("\fif x:\n    pass", ""),                       # a form feed is no indent
])
def test_indent_returns_to_the_enclosing_block(code, indent):
    assert is_complete(code) == incomplete(indent)


@pytest.mark.parametrize("code", [
    "if x:\n    passed = 1",
    "if x:\n    pass_ = 1",
    "if x:\n    passé = 1",
    "def f():\n    returns(1)",
    "def f():\n    return_value = 1",
    "if x:\n    raise_error()",
    "if x:\n    raised = 4",
    "for i in y:\n    breaking = 1",
    "for i in y:\n    continued()",
    "if x:\n    x = 1  # pass",
    "if x:\n    y = 'return'",
    "def f():\n    if x: return",                   # a one-line `if` ends no block
])
def test_no_dedent_for_names_that_start_with_those_words(code):
    assert is_complete(code) == incomplete("    ")


@pytest.mark.parametrize("code, indent", [
    ("if (a and\n        b):", "    "),         # the header's indent, not its last line's
    ("def f():\n    if (a and\n            b):", "        "),
    ("def f():\n    x = [1,\n  2]", "    "),
    ("if x:  # a\n    # note", "    "),
    ("if x:\n    pass\n    # note", ""),
])
def test_indent_follows_the_logical_line(code, indent):
    assert is_complete(code) == incomplete(indent)


# -- 2. backslash continuations and line endings -------------------------------------

@pytest.mark.parametrize("code, expected", [
    ("\\\r\n", incomplete("")),
    ("\\\n", incomplete("")),
    ("\\\r", incomplete("")),
    ("x = 1 + \\\n", incomplete("")),
    ("x = 1 + \\\r\n", incomplete("")),
    ("def f():\n    x = 1 + \\\r\n", incomplete("    ")),
    ("def f():\n  x=0\n  \\\n  ", incomplete("  ")),   # IPython's check_complete case
    ("1\\\n+2", {"status": "complete"}),
    ("1 +* 2 \\\n", {"status": "invalid"}),
    ("x = 1 + \\\n\n", {"status": "invalid"}),          # a blank line after the backslash
    ("s = 'a\\\n", incomplete("")),                   # continued inside a string
    ("s = 'a\\\r\n", incomplete("")),
    ("s = 'a\\\\\n", {"status": "invalid"}),        # an escaped backslash continues nothing
    ("x = 1  # \\\n", {"status": "complete"}),        # a backslash in a comment neither
])
def test_backslash_continuation(code, expected):
    assert is_complete(code) == expected


def test_backslash_crlf_is_answered_like_backslash_lf():
    assert is_complete("\\\r\n") == is_complete("\\\n") == incomplete("")


@pytest.mark.parametrize("code", [
    "for a in b:\n",
    "for a in b:",
    "for a in b:\n    x\n",
    "for a in b:\n    x",
    "for a in b:\n    x\n\n",
    "for a in b:\n    pass",
    "def f():\n    if x:\n        return 1",
    "x = [1,\n",
    "a = '''\n",
    "if x:  # note\n    pass\nelse:  # other\n",
    "1 +* 2\n",
    "x = 'abc\n",
    "x = 1 + \\\n",
    "\n",
])
@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_and_cr_line_endings_behave_like_lf(code, newline):
    assert is_complete(code.replace("\n", newline)) == is_complete(code)


@pytest.mark.parametrize("code, expected", [
    ("for a in b:\r\n", incomplete("    ")),
    ("for a in b:\r", incomplete("    ")),
    ("for a in b:\r\n    x\r\n", {"status": "complete"}),
    ("for a in b:\r\n    pass", incomplete("")),
])
def test_crlf_answers(code, expected):
    assert is_complete(code) == expected


@pytest.mark.parametrize("code, expected", [
    (" \x0b", {"status": "complete"}),     # blank as str.strip() sees it, as "" is
    ("\t\x0b", {"status": "complete"}),
    ("\x0b#", {"status": "invalid"}),      # a vertical tab is not Python whitespace
    ("\x0c#", {"status": "complete"}),     # a form feed is
])
def test_blank_and_control_whitespace(code, expected):
    assert is_complete(code) == expected


# -- 3. completion inside f-string replacement fields ---------------------------------

SETUP = '''
class Thing:
    """Has a method."""
    def method(self):
        return 1
    def other(self):
        return 2

obj = Thing()
table = {"key": 1, "kettle": 2}
width = 10

class Trap:
    @property
    def prop(self):
        open("ran-property", "w").close()
        return 1
    def __getattr__(self, name):
        open("ran-getattr", "w").close()
        raise AttributeError(name)

trap = Trap()
'''


@pytest.fixture
def ns():
    return namespace(SETUP)


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("code", [
    "f'{obj.me", 'f"{obj.me', "rf'{obj.me", "Rf'{obj.me", "fr'{obj.me", "F'{obj.me",
    "f'text {obj.me", "f'''{obj.me", 'f"""line\n{obj.me', "x = f'{obj.me",
    "f'{{literal}} {obj.me", "f'{ obj.me", "f'{width} {obj.me", "print(f'{obj.me",
])
def test_attribute_completion_in_fstring_field(ns, code):
    reply = complete(ns, code)
    assert reply["matches"] == ["method"]
    assert reply["cursor_start"] == len(code) - len("me")  # as for a plain `obj.me`
    types_ = reply["metadata"]["_jupyter_types_experimental"]
    assert [entry["type"] for entry in types_] == ["function"]
    plain = complete(ns, "obj.me")
    assert (plain["matches"], plain["cursor_start"]) == (["method"], len("obj."))


def test_name_completion_in_fstring_field(ns):
    reply = complete(ns, "f'{ob")
    assert "obj" in reply["matches"] and "object" in reply["matches"]
    assert reply["cursor_start"] == len("f'{")
    assert complete(ns, "f'{obj} {wid")["matches"] == ["width"]
    assert complete(ns, "f'{obj:{wid")["matches"] == ["width"]  # a field in the format spec
    assert complete(ns, "f'{obj.method() + wid")["matches"] == ["width"]


def test_fstring_field_before_the_cursor(ns):
    code = "f'{obj.me}'"
    reply = complete(ns, code, cursor_pos=len("f'{obj.me"))
    assert (reply["matches"], reply["cursor_start"]) == (["method"], len("f'{obj."))


def test_dict_keys_in_a_string_inside_an_fstring_field(ns):
    reply = complete(ns, "f'{table[\"ke")
    assert (reply["matches"], reply["cursor_start"]) == (["kettle", "key"], len("f'{table[\""))


@pytest.mark.parametrize("code", [
    "f'{obj.method()} me", "f'{{obj.me", "f'{obj!r:me", "f'{obj:me", "'{obj.me", "'{ob",
    "b'{obj.me", "f'\\N{obj", "u'{ob",
])
def test_no_code_completion_outside_replacement_fields(ns, in_tmp, code):
    assert complete(ns, code)["matches"] == []


def test_literal_part_of_strings_keeps_path_completion(ns, in_tmp):
    (in_tmp / "data.csv").write_text("x")
    assert complete(ns, "f'da")["matches"] == ["data.csv"]
    assert complete(ns, "open(f'da")["cursor_start"] == len("open(f'")
    assert complete(ns, "'da")["matches"] == ["data.csv"]
    assert complete(ns, "f'{obj}/da")["matches"] == []  # the path depends on a value


def test_fstring_completion_runs_no_user_code(ns, in_tmp):
    assert complete(ns, "f'{trap.prop.x")["matches"] == []
    assert complete(ns, "f'{trap.nothing.x")["matches"] == []
    assert "prop" in complete(ns, "f'{trap.pr")["matches"]
    assert not [name for name in os.listdir(in_tmp) if name.startswith("ran-")]


# -- through HTTP ----------------------------------------------------------------------

@pytest.fixture
def env_id(testapp):
    env_id = testapp.post_json("/envs", {}).json["id"]
    record = run(testapp, env_id, SETUP)
    assert record["status"] == "ok", record
    return env_id


def test_http_is_complete_dedent_and_crlf(testapp, env_id):
    def ask(code):
        return testapp.post_json("/envs/%s/is_complete" % env_id, {"code": code}).json
    assert ask("if x:\n     pass") == incomplete("")
    assert ask("def f():\n\tif a:\n\t\treturn") == incomplete("\t")
    assert ask("\\\r\n") == ask("\\\n") == incomplete("")
    assert ask("for a in b:\r\n") == incomplete("    ")


def test_http_completion_in_fstring(testapp, env_id):
    code = "f'{obj.me"
    reply = testapp.post_json("/envs/%s/complete" % env_id, {"code": code}).json
    assert (reply["matches"], reply["cursor_start"], reply["cursor_end"]) == (
        ["method"], len(code) - 2, len(code))
    reply = testapp.post_json("/envs/%s/complete" % env_id, {"code": 'rf"{ob'}).json
    assert "obj" in reply["matches"] and reply["cursor_start"] == 4
