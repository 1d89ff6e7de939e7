"""scripts/bench.py runs end to end and cleans up; scripts/baseline_server.py answers like the tutorial.

These tests never assert a speed or a target: figures belong in the benchmark's
output (docs/benchmarks.md), not in pass/fail.
"""

import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from helpers import ROOT, pid_alive

BENCH = os.path.join(ROOT, "scripts", "bench.py")
BASELINE = os.path.join(ROOT, "scripts", "baseline_server.py")

# Every figure the quick run must report, with whether a baseline value is part of it.
FIGURES = {
    "execute_p50_ms": True, "execute_p99_ms": True, "execute_vs_flask_p50_ms": True,
    "floor_p50_ms": True, "floor_p99_ms": True,
    "create_warm_p50_ms": False, "create_warm_first_execute_p50_ms": False,
    "create_cold_p50_ms": False, "create_cold_first_execute_p50_ms": False,
    "idle_env_pss_mb": True, "idle_env_rss_mb": True,
    "throughput_trivial_rps": True, "throughput_cpu_rps": True,
    "output_1mb_p50_ms": True,
}
# Optional comparisons: a number when jupyter_client + ipykernel are installed, else null.
OPTIONAL = ("jupyter_start_p50_ms", "create_speedup_vs_jupyter", "ipykernel_idle_pss_mb")


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def processes_mentioning(marker):
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_quick_bench_reports_every_figure_and_leaves_nothing_behind():
    proc = subprocess.run([sys.executable, BENCH, "--quick", "--json", "--skip-scale"],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    figures = result["figures"]
    for key, has_baseline in FIGURES.items():
        assert key in figures, key
        assert is_number(figures[key]["value"]), (key, figures[key])
        if has_baseline:
            assert is_number(figures[key]["baseline"]), (key, figures[key])
            assert is_number(figures[key]["ratio"]), (key, figures[key])
        assert figures[key]["met"] in (True, False, None)
    for key in OPTIONAL:
        assert key in figures, key
        assert figures[key]["value"] is None or is_number(figures[key]["value"]), figures[key]
    assert result["skipped"] == ["scale"]
    assert not any(key.startswith("scale_") for key in figures)

    info = result["info"]
    assert len(info["pids"]) == 4  # two serve.py, the baseline and the floor
    assert not [pid for pid in info["pids"] if pid_alive(pid)]
    assert processes_mentioning(info["state_root"]) == []  # no kernel left behind
    assert not os.path.exists(info["state_root"])


@pytest.fixture
def baseline_server():
    proc = subprocess.Popen([sys.executable, BASELINE, "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
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
