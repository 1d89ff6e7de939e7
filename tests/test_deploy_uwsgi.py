"""wsgikernel under real uWSGI (the pyuwsgi wheel) processes on free loopback ports.

``--master --die-on-term`` always: without --die-on-term, SIGTERM makes uWSGI
re-execute itself.  The app is built in the master and forked (uWSGI's
default, no lazy-apps), which is only safe because make_app() starts nothing.
"""

import os
import signal
import time


from deploy_helpers import (alive, assert_all_stopped, check_concurrent_increments, check_refused,
                            check_token_not_logged, check_workers_share_envs_and_token_file,
                            doc_block, execute, kernel_pids, kill_kernels, kill_recipe_kernels,
                            start_busy_and_idle_envs, text_result, uwsgi, uwsgi_command_recipe,
                            uwsgi_ini_recipe, uwsgi_stop_hook, wait_gone)
from helpers import TOKEN, wait_for


def test_workers_share_envs_and_the_token_file(state_dir):
    try:
        with uwsgi(state_dir, "--processes", "3", "--threads", "4", token=None) as server:
            check_workers_share_envs_and_token_file(server, state_dir)
    finally:
        kill_kernels(state_dir)


def test_error_answers_are_complete(state_dir):
    try:
        with uwsgi(state_dir, "--processes", "2", "--threads", "2") as server:
            check_refused(server)
    finally:
        kill_kernels(state_dir)


def test_concurrent_increments_are_not_lost(state_dir):
    try:
        with uwsgi(state_dir, "--processes", "3", "--threads", "4") as server:
            check_concurrent_increments(server)
    finally:
        kill_kernels(state_dir)


def test_ini_recipe_hook_stops_every_kernel(state_dir, tmp_path, make_test_app):
    """The ini of docs/deploy.md (atexit hook included); kill -TERM <master>: no kernel left.
    ``?token=`` stays out of its access log."""
    ini = doc_block("uwsgi-ini")
    for needed in ("die-on-term = true", "master = true", "hook-as-user-atexit = exec:"):
        assert needed in ini
    check_recipe_stops_every_kernel(uwsgi_ini_recipe(state_dir, tmp_path), state_dir,
                                    make_test_app, workers=2)  # processes = 2 from the ini


def test_command_line_recipe_hook_stops_every_kernel(state_dir, make_test_app):
    """The same for the one-command-line recipe of docs/deploy.md, run by bash as written."""
    check_recipe_stops_every_kernel(uwsgi_command_recipe(state_dir), state_dir, make_test_app,
                                    workers=2)  # --processes 2


def check_recipe_stops_every_kernel(server, state_dir, make_test_app, workers):
    pids = set()
    try:
        server.start()
        wait_for(lambda: len(server.worker_pids()) == workers,
                 message="%d workers" % workers)
        pids = start_busy_and_idle_envs(server, state_dir)
        assert server.request("GET", "/envs?token=" + TOKEN, token=False)[0] == 200
        check_token_not_logged(server)
        # uWSGI logs a request after its answer is out, and a worker killed by the stop
        # in between never logs it: wait for the line before stopping
        wait_for(lambda: '"GET /envs ' in server.log(), message="the log line of GET /envs")
        assert server.stop(signal.SIGTERM) == 0
        wait_gone(pids)
        log = server.log()
        assert "wsgikernel: stopped 2 kernel(s) of %s" % state_dir in log, log
        assert TOKEN not in log, log
    except BaseException:
        print("---- %s log ----\n%s" % (server.name, server.log()[-6000:]))
        raise
    finally:
        server.close()
        kill_recipe_kernels(state_dir, pids)
    assert_all_stopped(make_test_app(), ("idle-env", "busy-env"))


def test_worker_reload_keeps_the_kernels(state_dir, tmp_path, make_test_app):
    """lazy-apps + touch-workers-reload: new code in new workers, the hook does not run,
    kernels and namespaces stay; the hook still stops them when uWSGI stops."""
    trigger = tmp_path / "reload"
    trigger.write_text("")
    server = uwsgi(state_dir, "--processes", "2", "--threads", "2", "--lazy-apps",
                   "--touch-workers-reload", str(trigger), *uwsgi_stop_hook())
    pids = set()
    try:
        server.start()
        assert server.request("PUT", "/envs/kept")[0] == 201
        status, _, record = execute(server, "kept", "x = 5")
        assert status == 200 and record["status"] == "ok", record
        pids = kernel_pids(state_dir)
        workers = wait_for(lambda: (lambda w: w if len(w) == 2 else None)(server.worker_pids()))
        os.utime(str(trigger), (time.time() + 5, time.time() + 5))  # a visibly newer mtime
        # both workers respawned and done loading the app (a lazy-apps worker signalled
        # while it still loads is only reaped after worker-reload-mercy, 60 s)
        wait_for(lambda: server.log().count("Respawned uWSGI worker") == 2
                 and server.log().count("WSGI app 0 (mountpoint='') ready") == 4,
                 message="the workers to reload")
        status, _, record = execute(server, "kept", "x")
        assert status == 200 and text_result(record) == "5", record
        assert alive(pids) == pids and "wsgikernel: stopped" not in server.log()
        # a new worker answered (the access log line follows the answer: wait for it)
        wait_for(lambda: server.served("/envs/kept/execute", 200) - workers,
                 message="a log line from a new worker")
        assert server.stop(signal.SIGTERM) == 0
        wait_gone(pids)
        assert "wsgikernel: stopped 1 kernel(s)" in server.log()
    finally:
        server.close()
        kill_kernels(state_dir, pids)
    assert_all_stopped(make_test_app(), ["kept"])


def test_hook_module_command_line(capsys):
    from wsgikernel import uwsgi_hooks
    assert uwsgi_hooks.main(["--bogus"]) == 2
    assert "usage" in capsys.readouterr().err
