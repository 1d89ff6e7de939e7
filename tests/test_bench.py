"""scripts/bench.py runs end to end and cleans up; the baseline and the Flask app answer like the tutorial.

These tests never assert a speed or a target: figures belong in the benchmark's
output (docs/benchmarks.md), not in pass/fail.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from helpers import ROOT, command_lines, pid_alive

BENCH = os.path.join(ROOT, "scripts", "bench.py")
BASELINE = os.path.join(ROOT, "scripts", "baseline_server.py")
FLASK_APP = os.path.join(ROOT, "scripts", "flask_tutorial.py")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import bench_http  # noqa: E402

# Every figure the quick run must report, with whether a baseline value is part of it.
FIGURES = {
    "execute_p50_ms": True, "execute_p99_ms": True, "execute_vs_flask_p50_ms": True,
    "floor_p50_ms": True, "floor_p99_ms": True, "floor_vs_flask_p50_ms": True,
    "keepalive_execute_p50_ms": True, "keepalive_floor_p50_ms": True,
    "longpoll_short_p50_ms": True, "longpoll_short_p99_ms": True,
    "create_warm_p50_ms": False, "create_warm_first_execute_p50_ms": False,
    "create_cold_p50_ms": False, "create_cold_first_execute_p50_ms": False,
    "idle_env_pss_mb": True, "idle_env_rss_mb": True,
    "throughput_trivial_rps": True, "throughput_cpu_rps": True,
    "output_1mb_p50_ms": True,
    "metrics_execute_p50_ms": True, "metrics_scrape_p50_ms": True,
}
# Figures whose baseline is Flask measured in the run: null without Flask.  Counts have
# no ratio.
CONCURRENT = ["concurrent_%d_%s_%s" % (clients, mode, what) for clients in (8, 32)
              for mode in ("new", "keepalive") for what in ("rps", "p99_ms", "failed",
                                                            "slow_connects")]
FLASK_ONLY = ["execute_vs_flask_p99_ms", "keepalive_execute_p99_ms", "keepalive_reconnects"]
FLASK_ONLY += CONCURRENT
# Optional comparisons: a number when jupyter_client + ipykernel are installed, else null.
OPTIONAL = ("jupyter_start_p50_ms", "create_speedup_vs_jupyter", "ipykernel_idle_pss_mb")


def flask_python():
    """An interpreter that can import Flask (this one or python3 on PATH), or None."""
    for candidate in (sys.executable, shutil.which("python3")):
        if not candidate:
            continue
        proc = subprocess.run([candidate, "-c", "import sys, flask; print(sys.executable)"],
                              capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return proc.stdout.strip()
    return None


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def processes_mentioning(marker):
    return [pid for pid, args in command_lines() if any(marker in arg for arg in args)]


@pytest.mark.slow
def test_quick_bench_reports_every_figure_and_leaves_nothing_behind():
    # With Flask when some interpreter here has it (the Flask rows are then measured).
    python = flask_python()
    extra = ["--flask-python", python] if python else []
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--json", "--skip-scale"] + extra,
                          capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    figures = result["figures"]
    with_flask = bool(result["info"]["flask"])
    assert with_flask == bool(python)
    for key, has_baseline in list(FIGURES.items()) + [(key, with_flask) for key in FLASK_ONLY]:
        assert key in figures, key
        fig = figures[key]
        assert is_number(fig["value"]), (key, fig)
        if has_baseline:
            assert is_number(fig["baseline"]), (key, fig)
            assert is_number(fig["ratio"]) or fig["unit"] == "count", (key, fig)
        else:
            assert key in FIGURES or fig["baseline"] is None, (key, fig)
        assert fig["met"] in (True, False, None)
        if fig["unit"] == "count":
            assert fig["ratio"] is None and fig["value"] == int(fig["value"]), (key, fig)
    for key in OPTIONAL:
        assert key in figures, key
        assert figures[key]["value"] is None or is_number(figures[key]["value"]), figures[key]
    assert result["skipped"] == ["scale"]
    assert not any(key.startswith("scale_") for key in figures)
    assert with_flask or any("Flask is not importable" in note for note in result["notes"])

    info = result["info"]
    assert info["longpoll"]["still_alive"] == 0
    assert info["longpoll"]["longpolls"] == result["counts"]["longpolls"]
    # two serve.py, the baseline, the floor (and the Flask app)
    assert len(info["pids"]) == 4 + with_flask
    assert not [pid for pid in info["pids"] if pid_alive(pid)]
    assert processes_mentioning(info["state_root"]) == []  # no kernel left behind
    assert not os.path.exists(info["state_root"])


def test_flask_figures_fall_back_to_the_reference_without_flask():
    lat = {name: [1.0, 2.0, 3.0] for name in ("wsgikernel", "baseline", "floor",
                                               "wsgikernel keep-alive", "floor keep-alive")}
    targets = {"wsgikernel keep-alive": bench_http.Client(1, "GET", "/")}
    notes = []
    figures = bench_http.latency_figures(lat, targets, notes)
    reference = bench_http.FLASK_REFERENCE_MS
    for key in ("execute_vs_flask_p50_ms", "floor_vs_flask_p50_ms", "keepalive_execute_p50_ms"):
        assert figures[key]["baseline"] == reference, figures[key]
        assert figures[key]["met"] in (True, False)
    for key in ("execute_vs_flask_p99_ms", "keepalive_execute_p99_ms", "keepalive_reconnects"):
        assert figures[key]["baseline"] is None and figures[key]["ratio"] is None
    assert figures["execute_vs_flask_p99_ms"]["met"] is None
    assert notes == []

    run = {"rps": 10.0, "p50_ms": 1.0, "p99_ms": 2.0, "failed": 0, "slow_connects": 0}
    without = bench_http.concurrency_figures({(8, "new"): {"wsgikernel": run, "flask": None}}, 4)
    assert without["concurrent_8_new_rps"]["baseline"] is None
    assert without["concurrent_8_new_rps"]["met"] is None
    both = bench_http.concurrency_figures({(8, "new"): {"wsgikernel": run, "flask": run}}, 4)
    assert both["concurrent_8_new_rps"]["ratio"] == 1.0
    assert both["concurrent_8_new_rps"]["met"] is False  # 1.0x < 1.5x


SERVERS = {"baseline": [sys.executable, BASELINE, "--port", "0"],
           "flask": [None, FLASK_APP, "--port", "0", "--quiet"]}


@pytest.fixture(params=sorted(SERVERS))
def baseline_server(request):
    cmd = list(SERVERS[request.param])
    if cmd[0] is None:
        cmd[0] = flask_python()
        if cmd[0] is None:
            pytest.skip("Flask is not installed (a bench-only extra)")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert " serving on http://127.0.0.1:" in first, (first, proc.stderr.read())
        yield first.split(" on ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post_form(url, **fields):
    data = urllib.parse.urlencode(fields).encode()
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=30) as res:
        assert res.status == 200
        return json.loads(res.read())


def post_json(url, body, method="POST"):
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as res:
        return res.status, json.loads(res.read())


def test_baseline_server_answers_like_the_tutorial(baseline_server):
    url = baseline_server
    assert post_form(url + "env/create", id="a") == {"envs": ["a"]}
    assert post_form(url, id="a", code="x = 40 + 2") == {"message": ""}
    assert post_form(url, id="a", code="print(x)") == {"message": "42\n"}
    # The original split code on the two characters backslash-n.
    assert post_form(url, id="a", code="y = x\\nprint(y + 1)") == {"message": "43\n"}
    assert post_form(url, id="nope", code="print(1)") == {"error": "Kernel does not exist!"}
    failed = post_form(url, id="a", code="print('before'); 1/0")
    assert failed["error"].startswith("before\n") and "ZeroDivisionError" in failed["error"]
    assert post_form(url + "env/get", id="a")["env"] == ["x", "y"]
    assert post_form(url + "env/delete", id="a") == {"envs": []}


def test_baseline_server_json_routes_match_wsgikernels(baseline_server):
    url = baseline_server
    assert post_json(url + "envs/b", {}, method="PUT") == (201, {"id": "b"})
    status, record = post_json(url + "envs/b/execute", {"code": "x = 1 + 1\nprint(x)"})
    assert status == 200
    assert record["status"] == "ok" and record["stdout"] == "2\n"
    with urllib.request.urlopen(url + "envs", timeout=30) as res:
        assert json.loads(res.read()) == {"envs": [{"id": "b"}]}
