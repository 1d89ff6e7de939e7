"""Shell escapes and magics without IPython (issue 19's first part): real kernels.

kernel/magics.py rewrites a cell that is not Python, line for line; these go through
the HTTP API as a user's cells would.
"""

import pytest
import webtest

from helpers import TOKEN, run, value


@pytest.fixture
def testapp(testapp):
    """conftest's client, with the env ``nb``."""
    testapp.post_json("/envs", {"id": "nb"})
    return testapp


def ok(testapp, code):
    record = run(testapp, "nb", code)
    assert record["status"] == "ok", record
    return record


def test_a_shell_escape_streams_into_the_cell_and_expands_names(testapp):
    record = ok(testapp, "x = 41\nprint('before')\n!echo $x {x + 1} '$$HOME' $undefined\n"
                         "print('after')")  # $$: a $ for the shell; unknown names left
    assert record["stdout"] == "before\n41 42 $HOME\nafter\n", record
    assert ok(testapp, "for i in range(2):\n    !echo loop $i")["stdout"] == "loop 0\nloop 1\n"


def test_an_assigned_shell_escape_gives_its_lines(testapp):
    ok(testapp, "!printf 'a\\nb\\n' > two.txt")
    assert value(testapp, "nb", "lines = !cat two.txt\nlines, lines.n, lines.s") == \
        "(['a', 'b'], 'a\\nb', 'a b')"


def test_line_magics_do_what_ipythons_do(testapp):
    assert ok(testapp, "%cd /tmp")["stdout"] == "/tmp\n"
    assert value(testapp, "nb", "%pwd") == "'/tmp'"
    assert ok(testapp, "%env WK_MAGIC=on")["stdout"] == "env: WK_MAGIC=on\n"
    assert value(testapp, "nb", "%env WK_MAGIC") == "'on'"
    record = ok(testapp, "%time sum(range(10))")
    assert record["result"]["text/plain"] == "45", record
    assert record["stdout"].startswith("CPU times: user ") and "Wall time: " in record["stdout"]
    record = ok(testapp, "%timeit -1 + 1")
    assert " per loop (mean ± std. dev. of 7 runs, " in record["stdout"], record
    assert record["stdout"].rstrip().endswith(" loops each)"), record


def test_who_whos_and_reset(testapp):
    ok(testapp, "import os\nalpha = 1\nbeta = 'two'\n_hidden = 3")
    assert ok(testapp, "%who")["stdout"] == "alpha\tbeta\n"
    table = ok(testapp, "%whos")["stdout"].splitlines()
    assert table[0].split() == ["Variable", "Type", "Data/Info"], table
    assert table[2].split() == ["alpha", "int", "1"] and table[3].split()[:2] == ["beta", "str"]
    record = run(testapp, "nb", "%reset")
    assert record["error"]["ename"] == "UsageError" and "%reset -f" in record["error"]["evalue"]
    ok(testapp, "%reset -f")
    assert run(testapp, "nb", "alpha")["error"]["ename"] == "NameError"


def test_cell_magics(testapp):
    assert ok(testapp, "%%bash\necho bash $((20 + 22))")["stdout"] == "bash 42\n"
    assert ok(testapp, "%%sh\necho sh")["stdout"] == "sh\n"
    assert ok(testapp, "%%writefile mod_wk.py\nVALUE = 7\n")["stdout"] == "Writing mod_wk.py\n"
    assert ok(testapp, "%%writefile -a mod_wk.py\nOTHER = 8\n")["stdout"] == \
        "Appending to mod_wk.py\n"
    assert value(testapp, "nb", "import mod_wk\nmod_wk.VALUE + mod_wk.OTHER") == "15"
    record = ok(testapp, "%%time\ny = 2\ny * 21")
    assert record["result"]["text/plain"] == "42" and "Wall time: " in record["stdout"], record
    assert ok(testapp, "%%capture kept\nprint('quiet')")["stdout"] == ""
    assert value(testapp, "nb", "kept.stdout") == "'quiet\\n'"


def test_pip_runs_for_the_envs_interpreter(testapp):
    record = ok(testapp, "%pip --version")
    assert record["stdout"].startswith("pip ") and " from " in record["stdout"], record


def test_an_unknown_magic_is_an_error_naming_it_and_the_known_ones(testapp):
    record = run(testapp, "nb", "%nope 1")
    assert (record["status"], record["error"]["ename"]) == ("error", "UsageError"), record
    assert "%nope" in record["error"]["evalue"] and "%timeit" in record["error"]["evalue"]
    record = run(testapp, "nb", "%%nope\nbody")
    assert "%%nope" in record["error"]["evalue"] and "%%bash" in record["error"]["evalue"]


def test_tracebacks_keep_the_users_line_numbers_and_text(testapp):
    record = run(testapp, "nb", "!echo first\nx = 1\n1 / 0")
    assert record["stdout"] == "first\n" and record["error"]["ename"] == "ZeroDivisionError"
    traceback = "\n".join(record["error"]["traceback"])
    assert 'line 3, in <module>' in traceback and "1 / 0" in traceback, traceback
    assert "__wsgikernel_magics__" not in traceback
    record = run(testapp, "nb", "%%time\nx = 1\nundefined_name")
    traceback = "\n".join(record["error"]["traceback"])
    assert "line 3" in traceback and "undefined_name" in traceback, traceback
    record = run(testapp, "nb", "!echo x\nif True print(1)")
    assert record["error"]["ename"] == "SyntaxError", record
    assert "if True print(1)" in "\n".join(record["error"]["traceback"]), record


def test_python_is_never_rewritten(testapp):
    assert value(testapp, "nb", "x = 10\nx % 3") == "1"
    assert value(testapp, "nb", "s = '''\n%not a magic\n!nor this\n'''\ns.split()") == \
        "['%not', 'a', 'magic', '!nor', 'this']"
    record = ok(testapp, "t = '''\n%literal\n'''\n!echo outside")
    assert record["stdout"] == "outside\n"
    assert value(testapp, "nb", "t") == "'\\n%literal\\n'"


def test_is_complete_understands_them(testapp):
    def verdict(code):
        return testapp.post_json("/envs/nb/is_complete", {"code": code}).json
    assert verdict("!ls") == {"status": "complete"}
    assert verdict("%timeit x") == {"status": "complete"}
    assert verdict("for i in range(3):\n    !echo $i") == {"status": "incomplete",
                                                         "indent": "    "}


def test_magics_off_is_plain_python(make_test_app):
    testapp = webtest.TestApp(make_test_app(magics=False),
                              extra_environ={"HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    testapp.post_json("/envs", {"id": "nb"})
    record = run(testapp, "nb", "!echo hi")
    assert record["error"]["ename"] == "SyntaxError", record


def test_complete_knows_magic_names_and_paths_after_a_shell_escape(testapp):
    def complete(code):
        return testapp.post_json("/envs/nb/complete", {"code": code}).json
    assert complete("%ti")["matches"] == ["%time", "%timeit"]
    assert complete("%%wr")["matches"] == ["%%writefile"]
    ok(testapp, "%cd /tmp\n!mkdir -p wk_complete_dir")
    found = complete("!ls wk_complete_d")
    assert found["matches"] == ["wk_complete_dir/"] and found["cursor_start"] == 4, found
    assert "wk_complete_dir/" in complete("%cd wk_complete")["matches"]
    ok(testapp, "number = 1")
    assert complete("number.bit_len")["matches"] == ["bit_length"]  # Python as before
