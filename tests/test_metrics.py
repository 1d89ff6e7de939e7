"""GET /metrics with real kernels, read with prometheus_client's parser: counters move by
exactly what was done, histograms agree with themselves, counts outlive kernels, envs
and web workers, labels stay bounded, and the token is required unless metrics_public."""

import os
import secrets
import signal
import subprocess
import sys

import pytest

import webtest
from prometheus_client.parser import text_string_to_metric_families
from wsgikernel.metrics import kernels

from deploy_helpers import gunicorn, kill_kernels, uwsgi
from helpers import HANG_GUARD, ROOT, TOKEN, assert_problem, pid_alive, run, wait_for

AUTH = {"Authorization": "Bearer " + TOKEN}


def parse(text):
    return {f.name: f for f in text_string_to_metric_families(text)}


def scrape(testapp):
    res = testapp.get("/metrics")
    assert res.status_int == 200 and res.content_type == "text/plain"
    assert "version=0.0.4" in res.headers["Content-Type"]
    return parse(res.text)


def value(fams, family, sample=None, **labels):
    """The sample of ``family`` with exactly ``labels`` (0 if there is none)."""
    sample = sample or (family + "_total" if fams[family].type == "counter" else family)
    found = [s.value for s in fams[family].samples
             if s.name == sample and s.labels == {k: str(v) for k, v in labels.items()}]
    assert len(found) <= 1, found
    return found[0] if found else 0.0


def requests(fams, route, method, status):
    return value(fams, "wsgikernel_http_requests", route=route, method=method, status=status)


def executions(fams, status, reason=""):
    return value(fams, "wsgikernel_executions", status=status, reason=reason)


def check_histograms(fams):
    """Every histogram: buckets never decrease, +Inf is _count, _sum is not negative."""
    for family in fams.values():
        if family.type != "histogram":
            continue
        series = {}
        for s in family.samples:
            base = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
            series.setdefault(base, {"buckets": [], "count": None, "sum": None})
            entry = series[base]
            if s.name.endswith("_bucket"):
                entry["buckets"].append((float(s.labels["le"]), s.value))
            elif s.name.endswith("_count"):
                entry["count"] = s.value
            elif s.name.endswith("_sum"):
                entry["sum"] = s.value
        for base, entry in series.items():
            counts = [v for _, v in sorted(entry["buckets"])]
            assert counts == sorted(counts), (family.name, base, entry)
            assert counts[-1] == entry["count"] and entry["sum"] >= 0, (family.name, entry)


def test_counters_move_by_exactly_the_requests_and_executions_made(testapp):
    before = scrape(testapp)
    testapp.post_json("/envs", {"id": "m1"}, status=201)
    assert run(testapp, "m1", "x = 1")["status"] == "ok"
    assert run(testapp, "m1", "print(x)")["status"] == "ok"
    assert run(testapp, "m1", "1/0")["status"] == "error"
    testapp.get("/envs/m1", status=200)
    testapp.get("/envs/no-such-env", status=404)
    after = scrape(testapp)
    delta = lambda *args: requests(after, *args) - requests(before, *args)  # noqa: E731
    assert delta("/envs", "POST", "201") == 1
    assert delta("/envs/{id}/execute", "POST", "200") == 3
    assert delta("/envs/{id}", "GET", "200") == 1
    assert delta("/envs/{id}", "GET", "404") == 1
    assert delta("/metrics", "GET", "200") == 1  # the first scrape; this one is not done yet
    assert executions(after, "ok") - executions(before, "ok") == 2
    assert executions(after, "error") - executions(before, "error") == 1
    duration = "wsgikernel_execution_duration_seconds"
    assert value(after, duration, duration + "_count") == 3
    route = "wsgikernel_http_request_duration_seconds"
    assert value(after, route, route + "_count", route="/envs/{id}/execute") == 3
    assert value(after, "wsgikernel_envs", state="idle") == 1
    assert value(after, "wsgikernel_kernel_memory_bytes") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    build = after["wsgikernel_build_info"].samples
    assert len(build) == 1 and build[0].labels["version"] and build[0].labels["python"]
    check_histograms(after)


def test_cancelled_truncated_and_queued_executions(make_test_app):
    testapp = webtest.TestApp(make_test_app(output_cap=1000), extra_environ={
        "HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    testapp.post_json("/envs", {"id": "m2"}, status=201)
    assert run(testapp, "m2", "print('x' * 5000)")["truncated"] is True
    started = testapp.post_json("/envs/m2/execute", {
        "code": "import time\nwhile True: time.sleep(0.05)", "wait": 0}, status=202).json
    queued = testapp.post_json("/envs/m2/execute", {"code": "1", "wait": 0}, status=202).json
    wait_for(lambda: value(scrape(testapp), "wsgikernel_queue_depth") == 1,
             message="the queued cell in wsgikernel_queue_depth")
    assert value(scrape(testapp), "wsgikernel_envs", state="busy") == 1
    testapp.post_json("/envs/m2/executions/%d/cancel" % queued["execution_count"], {})
    testapp.post_json("/envs/m2/executions/%d/cancel" % started["execution_count"], {})
    wait_for(lambda: testapp.get("/envs/m2").json["state"] == "idle", message="idle again")
    fams = scrape(testapp)
    assert value(fams, "wsgikernel_output_truncated") == 1
    assert executions(fams, "aborted", "cancelled") == 2  # one never ran, one interrupted
    duration = "wsgikernel_execution_duration_seconds"
    assert value(fams, duration, duration + "_count") == 2  # the one that never ran: none
    assert value(fams, "wsgikernel_queue_depth") == 0


def test_deaths_are_counted_by_reason_and_survive_restart_and_delete(testapp):
    testapp.post_json("/envs", {"id": "m3"}, status=201)
    assert run(testapp, "m3", "1")["status"] == "ok"
    record = run(testapp, "m3", "import os; os.kill(os.getpid(), 9)")
    assert record["reason"] == "kernel_died", record
    fams = scrape(testapp)
    assert value(fams, "wsgikernel_kernel_deaths", reason="kernel_died") == 1
    assert value(fams, "wsgikernel_envs", state="dead") == 1
    assert executions(fams, "aborted", "kernel_died") == 1
    testapp.post_json("/envs/m3/restart", {}, status=200)
    assert run(testapp, "m3", "2")["status"] == "ok"
    fams = scrape(testapp)
    assert value(fams, "wsgikernel_kernel_deaths", reason="kernel_died") == 1
    assert executions(fams, "ok") == 2

    # A supervisor killed outright: only the web tier can tell (kernel_lost), and a whole
    # new kernel then takes the env (its status.json replaces the old one's).
    supervisor = testapp.app.manager.read("m3")["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not pid_alive(supervisor), message="the supervisor to die")
    wait_for(lambda: testapp.get("/envs/m3").json["state"] == "dead", message="dead")
    testapp.post_json("/envs/m3/restart", {}, status=200)
    assert run(testapp, "m3", "3")["status"] == "ok"
    fams = scrape(testapp)
    assert value(fams, "wsgikernel_kernel_deaths", reason="kernel_lost") == 1
    assert executions(fams, "ok") == 3

    testapp.delete("/envs/m3", status=204)
    fams = scrape(testapp)
    assert executions(fams, "ok") == 3 and executions(fams, "aborted", "kernel_died") == 1
    assert value(fams, "wsgikernel_kernel_deaths", reason="kernel_died") == 1
    assert value(fams, "wsgikernel_envs", state="idle") == 0


def test_counts_survive_a_new_web_process(make_test_app, state_dir):
    """Each app has its own count file: the second one (a restarted server) sees the first's."""
    first = webtest.TestApp(make_test_app(), extra_environ={"HTTP_AUTHORIZATION": "Bearer " +
                                                           TOKEN})
    first.post_json("/envs", {"id": "m4"}, status=201)
    assert run(first, "m4", "1")["status"] == "ok"
    second = webtest.TestApp(make_test_app(), extra_environ={"HTTP_AUTHORIZATION": "Bearer " +
                                                            TOKEN})
    fams = scrape(second)
    assert requests(fams, "/envs", "POST", "201") == 1
    assert requests(fams, "/envs/{id}/execute", "POST", "200") == 1
    assert executions(fams, "ok") == 1


def test_labels_stay_bounded_whatever_the_paths(testapp):
    ids = [secrets.token_hex(6) for _ in range(1000)]
    for n, env_id in enumerate(ids):
        path = ("/envs/%s" % env_id, "/no/such/%s" % env_id, "/envs/%s/execute" % env_id,
                "/envs/%s/executions/%d" % (env_id, n))[n % 4]
        testapp.request(path, method=("GET", "BREW", "POST", "GET")[n % 4],
                        expect_errors=True)
    text = testapp.get("/metrics").text
    assert not any(env_id in text for env_id in ids)
    fams = parse(text)
    labels = {(s.labels.get("route"), s.labels.get("method"))
              for s in fams["wsgikernel_http_requests"].samples}
    assert ("unmatched", "other") in labels  # BREW on a path no route has
    assert all(route == "unmatched" or route.startswith("/") for route, _ in labels)
    assert len(fams["wsgikernel_http_requests"].samples) < 20


def test_metrics_need_the_token_unless_metrics_public(make_test_app):
    anonymous = webtest.TestApp(make_test_app())
    assert_problem(anonymous.get("/metrics", expect_errors=True), 401)
    public = webtest.TestApp(make_test_app(metrics_public=True))
    assert "wsgikernel_build_info" in public.get("/metrics", status=200).text
    assert_problem(public.get("/envs", expect_errors=True), 401)  # only /metrics


def test_the_console_never_lists_metrics(testapp):
    assert "/metrics" not in testapp.get("/ui").text
    assert "metrics" not in testapp.get("/").json["links"]


# -- the same counts whichever worker answers -----------------------------------------

def check_same_totals(server, workers):
    status, _, _ = server.request("POST", "/envs", {"id": "shared"})
    assert status == 201
    for n in range(6):
        status, _, record = server.request("POST", "/envs/shared/execute",
                                           {"code": "%d" % n})
        assert status == 200 and record["status"] == "ok", record
    wait_for(lambda: len(server.worker_pids()) == workers, message="the workers to boot")
    seen = []

    def totals():
        status, headers, text = server.request("GET", "/metrics",
                                               headers={"Connection": "close"})
        assert status == 200, text
        fams = parse(text)
        seen.append(requests(fams, "/metrics", "GET", "200"))
        return (requests(fams, "/envs", "POST", "201"),
                requests(fams, "/envs/{id}/execute", "POST", "200"), executions(fams, "ok"))

    def all_workers_answered():
        assert totals() == (1, 6, 6)
        return len(server.served("/metrics", 200)) >= workers  # pids in the access log

    wait_for(all_workers_answered, interval=0, message="scrapes by different workers")
    assert seen == list(range(len(seen))), seen  # every earlier scrape, whoever served it


def test_the_same_totals_through_three_gunicorn_workers(state_dir):
    try:
        with gunicorn(state_dir, "-w", "3", "--threads", "4") as server:
            check_same_totals(server, 3)
    finally:
        kill_kernels(state_dir)


def test_the_same_totals_through_uwsgi_processes(state_dir):
    try:
        with uwsgi(state_dir, "--processes", "3", "--threads", "4") as server:
            check_same_totals(server, 3)
    finally:
        kill_kernels(state_dir)


def test_metrics_false_counts_nothing(make_test_app, state_dir):
    testapp = webtest.TestApp(make_test_app(metrics=False), extra_environ={
        "HTTP_AUTHORIZATION": "Bearer " + TOKEN})
    testapp.post_json("/envs", {"id": "m5"}, status=201)
    assert run(testapp, "m5", "1")["status"] == "ok"
    assert_problem(testapp.get("/metrics", expect_errors=True), 404, "route-not-found")
    assert not os.path.exists(os.path.join(state_dir, "metrics"))
    assert not os.path.exists(os.path.join(testapp.app.manager.env_dir("m5"),
                                           kernels.COUNTS_FILE))  # nor the kernel's


def test_a_lost_kernel_is_one_death_however_many_workers_find_it(make_test_app):
    apps = [webtest.TestApp(make_test_app(), extra_environ={
        "HTTP_AUTHORIZATION": "Bearer " + TOKEN}) for _ in range(3)]
    apps[0].post_json("/envs", {"id": "m6"}, status=201)
    supervisor = apps[0].app.manager.read("m6")["supervisor_pid"]
    os.kill(supervisor, signal.SIGKILL)
    wait_for(lambda: not pid_alive(supervisor), message="the supervisor to die")
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(6) as pool:  # every worker at once, twice
        states = list(pool.map(lambda i: apps[i % 3].get("/envs/m6").json["state"], range(6)))
    assert states == ["dead"] * 6
    for testapp in apps:
        fams = scrape(testapp)
        assert value(fams, "wsgikernel_kernel_deaths", reason="kernel_lost") == 1
    apps[1].post_json("/envs/m6/restart", {}, status=200)
    assert value(scrape(apps[2]), "wsgikernel_kernel_deaths", reason="kernel_lost") == 1


def test_a_full_state_dir_counts_in_memory_and_is_not_ready(tmp_path):
    """On a full disk a write into a mapped sparse file is a SIGBUS: the blocks are
    allocated first, and the worker goes on counting in memory."""
    from test_operations import can_remount
    if not can_remount():
        pytest.skip("needs mount namespaces (unshare -m as root)")
    script = (
        "import os, sys, webtest\n"
        "from wsgikernel import make_app\n"
        "state = sys.argv[1]\n"
        "app = make_app(state_dir=state, token='t', pool_size=0)\n"
        "t = webtest.TestApp(app, extra_environ={'HTTP_AUTHORIZATION': 'Bearer t'})\n"
        "fd = os.open(os.path.join(state, 'filler'), os.O_WRONLY | os.O_CREAT)\n"
        "try:\n"
        "    while True: os.write(fd, b'x' * 4096)\n"
        "except OSError: os.close(fd)\n"
        "for n in range(50): t.get('/envs/e%d' % n, status=404)\n"
        "print(t.get('/readyz', expect_errors=True).json['checks']['state_dir'])\n"
        "text = t.get('/metrics').text\n"
        "print([l for l in text.splitlines() if 'route=\"/envs/{id}\",method=\"GET\"' in l\n"
        "       and 'requests_total' in l])\n")
    state = str(tmp_path / "full")
    os.mkdir(state, 0o700)
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                           'mount -t tmpfs -o size=256k,mode=700 tmpfs "$1" && '
                           'exec "$2" -c "$3" "$1"', "sh", state, sys.executable, script],
                          capture_output=True, text=True, timeout=HANG_GUARD,
                          cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    ready, counted = done.stdout.splitlines()[-2:]
    assert "No space left on device" in ready, done.stdout
    assert '} 50.0' in counted, done.stdout
