"""``python -m wsgikernel`` client commands against a real scripts/serve.py."""

import json
import os
import subprocess
import sys


from helpers import HANG_GUARD, ROOT, TOKEN



def cli_env(live, token=TOKEN):
    env = dict(os.environ, WSGIKERNEL_URL=live.url, WSGIKERNEL_TOKEN=token,
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


def wk(live, *args, stdin=None, token=TOKEN):
    """(exit status, stdout, stderr) of ``python -m wsgikernel ARGS``."""
    result = subprocess.run([sys.executable, "-m", "wsgikernel", *args], input=stdin,
                            capture_output=True, text=True, timeout=HANG_GUARD,
                            env=cli_env(live, token), cwd=ROOT)
    return result.returncode, result.stdout, result.stderr


def test_exec_reads_code_from_stdin_and_splits_the_streams(live):
    code = "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n6 * 7\n"
    status, out, err = wk(live, "exec", "cli-stdin", "-", stdin=code)
    assert status == 0, err
    assert out == "to out\n42\n"
    assert err == "to err\n"
    status, out, err = wk(live, "exec", "cli-stdin", stdin="'code omitted: stdin'")
    assert (status, out) == (0, "'code omitted: stdin'\n"), err


def test_exec_creates_the_env_and_keeps_the_namespace(live):
    assert wk(live, "exec", "cli-keep", "x = 5")[:2] == (0, "")
    assert wk(live, "exec", "cli-keep", "x + 1")[:2] == (0, "6\n")


def test_exec_user_error_exits_1_with_the_traceback_on_stderr(live):
    status, out, err = wk(live, "exec", "cli-error", "print('before')\n1/0")
    assert status == 1
    assert out == "before\n"
    assert "Traceback (most recent call last):" in err
    assert err.rstrip().endswith("ZeroDivisionError: division by zero")


def test_service_errors_exit_2_with_the_detail_on_stderr(live):
    status, out, err = wk(live, "envs", token="wrong")
    assert (status, out) == (2, "")
    assert err == "wsgikernel: the token is not valid\n"
    status, out, err = wk(live, "rm", "cli-never-created")
    assert status == 2 and "cli-never-created" in err and out == ""
    status, _, err = wk(live, "exec", "bad id!", "1")
    assert status == 2 and "invalid" in err


def test_exec_prints_output_while_the_cell_runs(live):
    """The cell waits for a file the test creates only after reading the first line."""
    code = ("import os, time\nprint('first', flush=True)\n"
            "deadline = time.monotonic() + %r\n"
            "while not os.path.exists('go') and time.monotonic() < deadline:\n"
            "    time.sleep(0.01)\n"
            "print('second' if os.path.exists('go') else 'gave up')\n" % HANG_GUARD)
    assert wk(live, "create", "cli-live")[0] == 0
    proc = subprocess.Popen([sys.executable, "-m", "wsgikernel", "exec", "cli-live", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=cli_env(live), cwd=ROOT)
    try:
        assert proc.stdout.readline() == "first\n"
        cwd = live.request("GET", "/envs/cli-live")[2]["cwd"]
        open(os.path.join(cwd, "go"), "w").close()
        assert proc.stdout.read() == "second\n"
        assert proc.wait(HANG_GUARD) == 0
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_run_executes_a_file_as_one_cell(live, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("def f(x):\n\n    return x * 2\n\nprint(f(21))\n")
    assert wk(live, "run", "cli-run", str(script))[:2] == (0, "42\n")
    status, _, err = wk(live, "run", "cli-run", str(tmp_path / "missing.py"))
    assert status == 2 and "missing.py" in err


def test_envs_create_rm(live):
    status, out, _ = wk(live, "create", "cli-listed")
    assert status == 0 and out.startswith("cli-listed ")
    status, out, _ = wk(live, "envs")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "STATE", "SESSION", "EXECUTIONS", "LAST", "ACTIVITY"]
    assert any(line.split()[0] == "cli-listed" for line in lines[1:])
    status, out, _ = wk(live, "envs", "--json")
    assert "cli-listed" in [env["id"] for env in json.loads(out)]
    assert wk(live, "rm", "cli-listed")[:2] == (0, "")
    assert "cli-listed" not in wk(live, "envs")[1].split()


def test_complete_history_notebook(live):
    assert wk(live, "exec", "cli-hist", "value = 1\nprint('hi')\nvalue + 1")[0] == 0
    wk(live, "exec", "cli-hist", "1/0")
    status, out, _ = wk(live, "complete", "cli-hist", "val")
    assert status == 0 and "value" in out.splitlines()
    status, out, _ = wk(live, "history", "cli-hist")
    assert status == 0
    assert "In [1]: value = 1" in out and "Out[1]: 2" in out
    assert "In [2]: 1/0" in out and "ZeroDivisionError: division by zero" in out
    status, out, _ = wk(live, "notebook", "cli-hist")
    assert status == 0
    notebook = json.loads(out)
    assert notebook["nbformat"] == 4
    assert [cell["source"] for cell in notebook["cells"]] == [
        "value = 1\nprint('hi')\nvalue + 1", "1/0"]


def test_url_and_token_options_override_the_environment(live):
    args = ("--url", live.url, "--token", TOKEN)
    environ = dict(cli_env(live, token="wrong"), WSGIKERNEL_URL="http://127.0.0.1:1")
    for argv in (args + ("envs",), ("envs",) + args):
        result = subprocess.run([sys.executable, "-m", "wsgikernel", *argv], env=environ,
                                capture_output=True, text=True, timeout=HANG_GUARD, cwd=ROOT)
        assert result.returncode == 0, (argv, result.stderr)
        assert result.stdout.startswith("ID")


def test_usage_and_serve_dispatch(live):
    status, out, _ = wk(live)
    assert status == 2 and "exec ENV" in out
    status, out, _ = wk(live, "serve", "--help")
    assert status == 0 and "--max-envs" in out and "--token-file" in out
    status, _, err = wk(live, "nonsense")
    assert status == 2 and "invalid choice" in err


def test_create_passes_resources_and_refuses_what_is_not_a_json_object(live):
    # The live server runs kernels on its own host: resources are its 422, passed through.
    status, _, err = wk(live, "create", "cli-job", "--resources", '{"cpus": 2}')
    assert status == 2 and "resources" in err, err
    for bad in ("cpus=2", "[2]"):
        status, _, err = wk(live, "create", "cli-job", "--resources", bad)
        assert status == 2 and "--resources" in err, err
    assert "cli-job" not in wk(live, "envs")[1].split()


def test_checkpoint_restore_and_fork(live):
    assert wk(live, "exec", "cli-ck", "rows = [1, 2]")[0] == 0
    status, out, err = wk(live, "checkpoint", "cli-ck", "before")
    assert (status, out) == (0, "before\n"), err
    assert wk(live, "exec", "cli-ck", "rows.clear()")[0] == 0
    status, out, _ = wk(live, "checkpoint", "cli-ck", "--list")
    assert status == 0 and out.startswith("before  after cell 1  "), out
    status, out, _ = wk(live, "restore", "cli-ck", "before")
    assert status == 0 and "checkpoint before (after cell 1), session 2" in out, out
    assert wk(live, "exec", "cli-ck", "rows")[1] == "[1, 2]\n"
    status, out, _ = wk(live, "fork", "cli-ck", "cli-ck-2")
    assert (status, out) == (0, "cli-ck-2 idle\n")
    assert wk(live, "exec", "cli-ck-2", "rows")[1] == "[1, 2]\n"
    status, _, err = wk(live, "restore", "cli-ck")  # no auto_checkpoints on this server
    assert status == 2 and "auto_checkpoints is 0" in err, err
