#!/usr/bin/env python3
"""Benchmark wsgikernel against the in-process baseline, side by side in one run.

    python3 scripts/bench.py                 # every figure, a table with the targets
    python3 scripts/bench.py --json          # the same as JSON
    python3 scripts/bench.py --quick         # small counts (what the test runs)
    python3 scripts/bench.py --skip-scale    # without the 200-environment part
    python3 scripts/bench.py --profile       # cProfile of the server's request threads

Standard library only (jupyter_client + ipykernel are used for one comparison
when importable; the tutorial's Flask app, ``scripts/flask_tutorial.py``, when
``--flask-python`` -- by default this interpreter -- can import Flask: a
bench-only extra, skipped with a note when absent).  It starts, on loopback
with free ports and private temporary state dirs, ``scripts/serve.py`` (pool as
configured by default), a second ``scripts/serve.py`` with ``--pool-size 0``
(cold creation), the tutorial's in-process server ``scripts/baseline_server.py``
and its ``--floor`` (a trivial app on the same server class) and the Flask app,
and stops every one of them, and every kernel they started, before it exits.
The HTTP side (servers, clients, the HTTP front end figures of issue 14) is
``scripts/bench_http.py``.  Every loop is bounded by a count and a deadline.
Figures drift +-30% from run to run on a small machine: compare the ratios,
which are measured in the same run.  See docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_http import (  # noqa: E402 - the HTTP side: servers, clients, runs, table
    COUNTS as HTTP_COUNTS, PHASE_DEADLINE, PYTHON, ROOT, TRIVIAL, BenchError, Deadline,
    Fleet, Server, call, concurrent, create_envs, execute_path, figure, flask_note,
    flask_version, front_end_figures, interleaved, kill_processes_of, log, machine, met_if,
    now, p50, table, timed)

CPU_CELL = "sum(range(300_000))"
MB_CELL = "print('x' * 1_000_000)"
POOL_WAIT = 15.0       # seconds to wait for the kernel pool to be full again

COUNTS = {
    # name: (full, quick); warmup, execute, concurrent, longpolls: bench_http.COUNTS
    "create": (20, 3),
    "jupyter": (3, 1),
    "memory_envs": (3, 1),
    "throughput_trivial": (1200, 80),
    "throughput_cpu": (240, 16),
    "output_1mb": (30, 3),
    "scale_envs": (200, 20),
    "scale_probe_create": (8, 2),
    "scale_probe_list": (20, 3),
    "scale_probe_execute": (100, 10),
    **HTTP_COUNTS,
}


def memory_kb(pid):
    """(RSS, PSS) of ``pid`` in kB from /proc/<pid>/smaps_rollup."""
    rss = pss = None
    with open("/proc/%d/smaps_rollup" % pid) as handle:
        for line in handle:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    if rss is None or pss is None:
        raise BenchError("no Rss/Pss in /proc/%d/smaps_rollup" % pid)
    return rss, pss


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def env_pids(state_dir, env_id):
    record = read_json(os.path.join(state_dir, "envs", env_id, "env.json")) or {}
    pids = [record.get("supervisor_pid"), record.get("pid")]
    if not all(pids):
        raise BenchError("env.json of %s has no supervisor_pid/pid: %r" % (env_id, record))
    return pids


def processes_memory_kb(pids):
    rss = pss = 0
    for pid in pids:
        r, p = memory_kb(pid)
        rss, pss = rss + r, pss + p
    return rss, pss


def pool_ready(state_dir):
    """How many pooled kernels are ready (``<state_dir>/pool/*/env.json`` says idle)."""
    pool = os.path.join(state_dir, "pool")
    try:
        names = [n for n in os.listdir(pool) if not n.startswith(".")]
    except FileNotFoundError:
        return 0
    return sum(1 for n in names
               if (read_json(os.path.join(pool, n, "env.json")) or {}).get("state") == "idle")


def create_series(server, prefix, n, pool_size):
    """PUT /envs/{id} -> 201 and PUT + first execute, ``n`` times; (put ms, first ms, note)."""
    puts, firsts = [], []
    pool_seen = False
    deadline = Deadline(PHASE_DEADLINE, "creation run")
    for i in range(n):
        deadline.check()
        if pool_size:
            pool_seen = wait_pool(server.state_dir, pool_size,
                                  POOL_WAIT if pool_seen or i == 0 else 0.3) or pool_seen
        env_id = "%s%d" % (prefix, i)
        start = time.perf_counter()
        call(server.port, "PUT", "/envs/" + env_id, expect=(201,))
        created = time.perf_counter()
        call(server.port, "POST", execute_path(env_id), {"code": TRIVIAL})
        done = time.perf_counter()
        puts.append((created - start) * 1000.0)
        firsts.append((done - start) * 1000.0)
    for i in range(n):
        call(server.port, "DELETE", "/envs/%s%d" % (prefix, i), expect=(204,))
    return puts, firsts, pool_seen


def wait_pool(state_dir, size, timeout):
    """Wait until ``size`` pooled kernels are ready; True if they were."""
    end = time.monotonic() + timeout
    while pool_ready(state_dir) < size:
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def settle(server, pool_size):
    """Let a server's background pool refill finish before measuring latency."""
    if pool_size and os.path.isdir(os.path.join(server.state_dir, "pool")):
        wait_pool(server.state_dir, pool_size, POOL_WAIT)
    time.sleep(0.2)


def jupyter_figures(n):
    """(start-to-ready ms samples, idle PSS kB, RSS kB, note) of ipykernel via jupyter_client."""
    try:
        from jupyter_client.manager import start_new_kernel
    except Exception as exc:  # noqa: BLE001 - optional comparison
        return None, None, None, "jupyter_client not importable (%s)" % type(exc).__name__
    samples, pss, rss = [], None, None
    try:
        for i in range(n):
            start = time.perf_counter()
            km, kc = start_new_kernel(kernel_name="python3", startup_timeout=60,
                                      stderr=subprocess.DEVNULL)
            samples.append((time.perf_counter() - start) * 1000.0)
            try:
                if i == 0:
                    time.sleep(0.5)
                    pid = getattr(getattr(km, "provisioner", None), "pid", None)
                    if pid is None:
                        pid = getattr(getattr(km, "kernel", None), "pid", None)
                    if pid:
                        rss, pss = memory_kb(pid)
            finally:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
    except Exception as exc:  # noqa: BLE001 - optional comparison
        return None, None, None, "jupyter_client failed: %r" % (exc,)
    return samples, pss, rss, None


def bare_python_memory_kb():
    """(RSS, PSS) of a bare ``python3 -c 'import time; time.sleep(60)'``, measured now."""
    proc = subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)"],
                            stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.7)
        return memory_kb(proc.pid)
    finally:
        proc.kill()
        proc.wait()


def scale_point(server, env_total, counts, prefix, made, pool_size):
    """Fill ``server`` up to ``env_total`` envs; probe creation, listing and execute there."""
    deadline = Deadline(PHASE_DEADLINE, "scale run")
    probes = counts["scale_probe_create"]
    fill_ms = []
    while len(made) < env_total - probes:
        deadline.check()
        env_id = "%s%d" % (prefix, len(made))
        fill_ms.append(timed(server.port, "PUT", "/envs/" + env_id, expect=(201,)))
        made.append(env_id)
    create = []
    while len(made) < env_total:
        deadline.check()
        settle(server, pool_size)  # a paced creation, as a user would make one
        env_id = "%s%d" % (prefix, len(made))
        create.append(timed(server.port, "PUT", "/envs/" + env_id, expect=(201,)))
        made.append(env_id)
    settle(server, pool_size)  # the pool's refill would compete with the probes for the CPU
    listing = []
    for _ in range(counts["scale_probe_list"]):
        deadline.check()
        listing.append(timed(server.port, "GET", "/envs"))
    status, body = call(server.port, "GET", "/envs")
    listed = len(json.loads(body)["envs"])
    if listed < env_total:
        raise BenchError("GET /envs listed %d envs, expected %d" % (listed, env_total))
    for _ in range(3):  # untimed: the env's first executions pay one-time costs
        call(server.port, "POST", execute_path(made[0]), {"code": TRIVIAL})
    execute = []
    for i in range(counts["scale_probe_execute"]):
        deadline.check()
        execute.append(timed(server.port, "POST", execute_path(made[0]), {"code": TRIVIAL}))
    return {"fill_ms": fill_ms, "create": create, "list": listing, "execute": execute}


# -- the run --------------------------------------------------------------------------


def run(args):
    counts = {k: v[1] if args.quick else v[0] for k, v in COUNTS.items()}
    load_before = os.getloadavg()[0]
    figures = {}
    notes = []
    state_root = tempfile.mkdtemp(prefix="wkbench-")
    os.chmod(state_root, 0o700)
    warm_dir = os.path.join(state_root, "warm")
    cold_dir = os.path.join(state_root, "cold")
    scale_dir = os.path.join(state_root, "scale")
    fleet = Fleet()
    info = {"state_root": state_root, "pids": fleet.pids,
            "flask": flask_version(args.flask_python)}

    try:
        pool_args = () if args.pool_size is None else ("--pool-size", str(args.pool_size))
        wk = fleet.wsgikernel("wsgikernel", warm_dir, *pool_args)
        cold = fleet.wsgikernel("wsgikernel --pool-size 0", cold_dir, "--pool-size", "0")
        base = fleet.baseline("baseline")
        floor = fleet.baseline("floor", "--floor")
        flask = fleet.flask(args.flask_python) if info["flask"] else None
        notes.append(flask_note(args.flask_python, info["flask"]))
        for server in fleet.servers:
            server.wait_url()
        pool_size = args.pool_size if args.pool_size is not None else 2
        info["pool_size"] = pool_size

        # Environments for the latency, throughput and long-poll figures (pool filling
        # starts now).
        create_envs(wk.port, ("e0", "t0", "t1", "t2", "t3", "lp"))
        for server in (base, flask) if flask else (base,):
            create_envs(server.port, ("e0", "t0", "t1", "t2", "t3"))

        # (1) execute round trip, new connection and keep-alive; the HTTP front end
        # with 8 and 32 clients, and with long-polls open (pool refills finished first:
        # starting kernels in the background would compete for the CPU).
        settle(wk, pool_size)
        figures.update(front_end_figures(
            args, {"wsgikernel": wk.port, "baseline": base.port, "floor": floor.port},
            flask.port if flask else None, counts, notes, info))

        # (2) environment creation: warm pool, cold, jupyter_client.
        log(args, "creation x%d warm, x%d cold" % (counts["create"], counts["create"]))
        call(cold.port, "PUT", "/envs/w", expect=(201,))  # warm the server's own code paths
        call(cold.port, "DELETE", "/envs/w", expect=(204,))
        warm_put, warm_first, pool_seen = create_series(wk, "c", counts["create"], pool_size)
        cold_put, cold_first, _ = create_series(cold, "c", counts["create"], 0)
        info["pool_observed"] = pool_seen
        if pool_size and not pool_seen:
            notes.append("no pooled kernel was ever seen in <state_dir>/pool: the 'warm' "
                         "creation figures are cold starts")
        cold.stop()
        jup, jup_pss, jup_rss, why = (jupyter_figures(counts["jupyter"]) if not args.no_jupyter
                                      else (None, None, None, "--no-jupyter"))
        if why:
            notes.append("jupyter_client + ipykernel comparison: n/a (%s)" % why)
        jup50 = p50(jup) if jup else None
        cw50, cc50 = p50(warm_put), p50(cold_put)
        figures["create_warm_p50_ms"] = figure(
            cw50, label="create PUT->201, pool warm (pool_size %d)" % pool_size,
            target="<= 5 ms", met=met_if(cw50 <= 5.0, cw50))
        figures["create_warm_first_execute_p50_ms"] = figure(
            p50(warm_first), label="create + first execute, pool warm")
        figures["create_cold_p50_ms"] = figure(
            cc50, label="create PUT->201, cold (--pool-size 0)", target="<= 80 ms",
            met=met_if(cc50 <= 80.0, cc50))
        figures["create_cold_first_execute_p50_ms"] = figure(
            p50(cold_first), label="create + first execute, cold")
        figures["jupyter_start_p50_ms"] = figure(
            jup50, label="jupyter_client+ipykernel start-to-ready")
        speedup = jup50 / cw50 if jup50 and cw50 else None
        figures["create_speedup_vs_jupyter"] = figure(
            speedup, unit="x", label="jupyter start / wsgikernel warm create",
            target=">= 100x", met=met_if(speedup is not None and speedup >= 100, speedup))

        # (3) idle env memory vs a bare interpreter.
        log(args, "idle memory")
        settle(wk, pool_size)
        mem_ids = ["m%d" % i for i in range(counts["memory_envs"])]
        for env_id in mem_ids:
            call(wk.port, "PUT", "/envs/" + env_id, expect=(201,))
            call(wk.port, "POST", execute_path(env_id), {"code": TRIVIAL})
        time.sleep(0.7)
        env_mem = [processes_memory_kb(env_pids(warm_dir, env_id)) for env_id in mem_ids]
        bare_rss, bare_pss = bare_python_memory_kb()
        env_rss, env_pss = p50([m[0] for m in env_mem]), p50([m[1] for m in env_mem])
        for env_id in mem_ids:
            call(wk.port, "DELETE", "/envs/" + env_id, expect=(204,))
        figures["idle_env_pss_mb"] = figure(
            env_pss / 1024, bare_pss / 1024, unit="MB",
            label="idle env PSS (supervisor+user) vs bare python", target="<= 1.5x baseline",
            met=env_pss <= 1.5 * bare_pss)
        figures["idle_env_rss_mb"] = figure(
            env_rss / 1024, bare_rss / 1024, unit="MB",
            label="idle env RSS (supervisor+user) vs bare python")
        figures["ipykernel_idle_pss_mb"] = figure(
            jup_pss / 1024 if jup_pss else None, bare_pss / 1024, unit="MB",
            label="ipykernel idle PSS vs bare python")

        # (4) throughput: 8 clients over 4 envs.
        log(args, "throughput")
        settle(wk, pool_size)
        tenvs = ["t0", "t1", "t2", "t3"]
        rps = {}
        for kind, code, total in (("trivial", TRIVIAL, counts["throughput_trivial"]),
                                  ("cpu", CPU_CELL, counts["throughput_cpu"])):
            for name, server in (("wsgikernel", wk), ("baseline", base)):
                for env_id in tenvs:
                    call(server.port, "POST", execute_path(env_id), {"code": code})
                result = concurrent(server.port, tenvs, 8, total, False, code=code)
                if result["failed"]:
                    raise BenchError("throughput run failed: %s" % result["errors"][0])
                rps[kind, name] = result["rps"]
        figures["throughput_trivial_rps"] = figure(
            rps["trivial", "wsgikernel"], rps["trivial", "baseline"], unit="req/s",
            label="throughput x=1+1, 8 clients / 4 envs", target=">= 1.0x baseline",
            met=rps["trivial", "wsgikernel"] >= rps["trivial", "baseline"])
        figures["throughput_cpu_rps"] = figure(
            rps["cpu", "wsgikernel"], rps["cpu", "baseline"], unit="req/s",
            label="throughput sum(range(300_000)), 8 clients / 4 envs",
            target="> 1.0x baseline", met=rps["cpu", "wsgikernel"] > rps["cpu", "baseline"])

        # (5) 1 MB of output.
        log(args, "1 MB output x%d" % counts["output_1mb"])
        big = interleaved({
            "wsgikernel": (wk.port, "POST", execute_path("e0"), {"code": MB_CELL}),
            "baseline": (base.port, "POST", execute_path("e0"), {"code": MB_CELL}),
        }, counts["output_1mb"], 1)
        _, body = call(wk.port, "POST", execute_path("e0"), {"code": MB_CELL})
        record = json.loads(body)
        if len(record.get("stdout", "")) != 1_000_001 or record.get("truncated"):
            raise BenchError("the 1 MB cell came back cut: %d chars, truncated=%r"
                             % (len(record.get("stdout", "")), record.get("truncated")))
        _, base_body = call(base.port, "POST", execute_path("e0"), {"code": MB_CELL})
        info["output_1mb_response_bytes"] = {"wsgikernel": len(body), "baseline": len(base_body)}
        m50, mb50 = p50(big["wsgikernel"]), p50(big["baseline"])
        figures["output_1mb_p50_ms"] = figure(
            m50, mb50, label="1 MB output round trip p50", target="<= 1.5x baseline",
            met=m50 <= 1.5 * mb50)

        for server in (wk, base, floor, flask):
            if server:
                server.stop()

        # (6) scale: up to 200 idle envs on one server.
        if not args.skip_scale:
            log(args, "scale to %d envs" % counts["scale_envs"])
            scale = fleet.wsgikernel("wsgikernel scale", scale_dir, *pool_args)
            scale.wait_url()
            call(scale.port, "GET", "/envs")  # starts the pool filling
            made = []
            started = time.perf_counter()
            low = scale_point(scale, 10, counts, "s", made, pool_size)
            high = scale_point(scale, counts["scale_envs"], counts, "s", made, pool_size)
            wall = time.perf_counter() - started
            per_env = [processes_memory_kb(env_pids(scale_dir, env_id)) for env_id in made]
            n_envs = len(made)
            rss_each = sum(m[0] for m in per_env) / n_envs
            pss_each = sum(m[1] for m in per_env) / n_envs
            fill = low["fill_ms"] + low["create"] + high["fill_ms"] + high["create"]
            info["scale"] = {"envs": n_envs, "wall_s": wall,
                             "total_pss_mb": sum(m[1] for m in per_env) / 1024,
                             "total_rss_mb": sum(m[0] for m in per_env) / 1024}
            for key, label in (("create", "create PUT->201 p50, paced"),
                               ("list", "GET /envs p50"), ("execute", "execute x=1+1 p50")):
                hi, lo = p50(high[key]), p50(low[key])
                figures["scale_%s_p50_ms" % key] = figure(
                    hi, lo, label="scale: %s at %d envs (baseline: at 10)" % (label, n_envs),
                    target="flat (<= 1.5x)", met=hi <= 1.5 * lo)
            figures["scale_fill_s"] = figure(
                sum(fill) / 1000.0, unit="s",
                label="scale: time to create %d envs (sum of PUTs)" % n_envs)
            figures["scale_create_mean_ms"] = figure(
                sum(fill) / len(fill), label="scale: mean PUT->201 over all %d envs" % n_envs)
            figures["scale_pss_per_env_mb"] = figure(
                pss_each / 1024, bare_pss / 1024, unit="MB",
                label="scale: PSS per env at %d envs vs bare python" % n_envs,
                target="<= 1.5x baseline", met=pss_each <= 1.5 * bare_pss)
            figures["scale_rss_per_env_mb"] = figure(
                rss_each / 1024, bare_rss / 1024, unit="MB",
                label="scale: RSS per env at %d envs vs bare python" % n_envs)
            scale.stop()
    finally:
        fleet.stop_all()
        kill_processes_of(state_root)
        shutil.rmtree(state_root, ignore_errors=True)
    return {
        "date": now(), "machine": machine(load_before),
        "quick": bool(args.quick), "counts": counts, "figures": figures, "notes": notes,
        "info": info, "skipped": ["scale"] if args.skip_scale else [],
    }


# -- profile -----------------------------------------------------------------------

PROFILED_SERVER = r"""
import cProfile, pstats, sys, threading
sys.path.insert(0, sys.argv.pop(1))
out = sys.argv.pop(1)
from wsgikernel import server
profiles, lock = [], threading.Lock()
base = server.RequestHandler.handle  # one connection's requests, on a worker thread
def handle(self):
    profile = cProfile.Profile()
    profile.enable()
    try:
        return base(self)
    finally:
        profile.disable()
        with lock:
            profiles.append(profile)
server.RequestHandler.handle = handle
try:
    code = server.main(sys.argv[1:], prog="serve.py")
finally:
    with lock:
        if profiles:
            stats = pstats.Stats(profiles[0])
            for profile in profiles[1:]:
                stats.add(profile)
            stats.dump_stats(out)
sys.exit(code)
"""


def profile(args):
    """cProfile the request threads of a real server: execute, 1 MB output, creation.

    Each phase gets its own profiled ``serve.py`` (so the stats of one kind of
    request are not mixed with another's); the kernel's own time shows up as
    waiting in the server's socket reads.
    """
    import io
    import pstats
    n = args.profile
    phases = (("execute x=1+1", "execute", TRIVIAL, n),
              ("execute print('x' * 1_000_000)", "execute", MB_CELL, max(5, n // 20)),
              ("create PUT /envs/{id}, pool warm", "create", None, max(5, n // 25)))
    state_root = tempfile.mkdtemp(prefix="wkbench-")
    os.chmod(state_root, 0o700)
    try:
        for number, (title, kind, code, count) in enumerate(phases):
            out = os.path.join(state_root, "phase%d.prof" % number)
            state_dir = os.path.join(state_root, "state%d" % number)
            os.mkdir(state_dir, 0o700)
            server = Server("profiled wsgikernel", [
                PYTHON, "-c", PROFILED_SERVER, ROOT, out, "--port", "0", "--state-dir",
                state_dir, "--no-auth", "--quiet", "--kill-grace", "1"], state_dir)
            client, kernel = [], []
            try:
                server.launch().wait_url()
                call(server.port, "PUT", "/envs/p", expect=(201,))
                for i in range(count):
                    if kind == "execute":
                        start = time.perf_counter()
                        _, body = call(server.port, "POST", execute_path("p"), {"code": code})
                        client.append((time.perf_counter() - start) * 1000.0)
                        kernel.append(json.loads(body)["duration"] * 1000.0)
                    else:
                        wait_pool(state_dir, 2, POOL_WAIT)
                        client.append(timed(server.port, "PUT", "/envs/c%d" % i, expect=(201,)))
            finally:
                server.stop()
            text = io.StringIO()
            stats = pstats.Stats(out, stream=text)
            stats.sort_stats("cumulative").print_stats(args.profile_lines)
            stats.sort_stats("tottime").print_stats(args.profile_lines)
            print("=" * 78)
            print("%s: %d requests (+1 PUT); client round trip p50 %.3f ms%s" % (
                title, count, p50(client),
                "; kernel-reported duration p50 %.3f ms" % p50(kernel) if kernel else ""))
            print("=" * 78)
            print(text.getvalue())
    finally:
        kill_processes_of(state_root)
        shutil.rmtree(state_root, ignore_errors=True)
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--quick", action="store_true", help="small counts (seconds, not minutes)")
    parser.add_argument("--skip-scale", action="store_true", help="skip the 200-env part")
    parser.add_argument("--no-jupyter", action="store_true",
                        help="skip the jupyter_client + ipykernel comparison")
    parser.add_argument("--flask-python", default=PYTHON,
                        help="interpreter that runs the tutorial's Flask app (default: this "
                             "one; without Flask the Flask rows fall back or are n/a)")
    parser.add_argument("--pool-size", type=int, default=None,
                        help="pool_size of the main server (default: the server's default)")
    parser.add_argument("--profile", type=int, nargs="?", const=500, default=None, metavar="N",
                        help="instead: cProfile the server's request threads over N executes "
                             "(and N/20 1 MB outputs, N/25 creations)")
    parser.add_argument("--profile-lines", type=int, default=25, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.profile is not None:
        return profile(args)
    try:
        result = run(args)
    except BenchError as exc:
        print("bench failed: %s" % exc, file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
