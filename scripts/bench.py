#!/usr/bin/env python3
"""Benchmark wsgikernel against its baselines, side by side in one run.

    python3 scripts/bench.py                 # every figure, a table with the targets
    python3 scripts/bench.py --json          # the same as JSON
    python3 scripts/bench.py --quick         # small counts (what the test runs)
    python3 scripts/bench.py --skip-scale    # without the 200-environment part
    python3 scripts/bench.py --skip-gunicorn # without the gunicorn -w 2 section
    python3 scripts/bench.py --skip-sandbox  # without the sandbox section (issue 16)
    python3 scripts/bench.py --only sandbox  # the sandbox section alone (~10 s)
    python3 scripts/bench.py --skip-slurm    # without the Slurm section (issue 17)
    python3 scripts/bench.py --only slurm    # the Slurm section alone (~50 s)
    python3 scripts/bench.py --only fork     # fork, checkpoint, restore (~30 s, 1 GiB)
    python3 scripts/bench.py --only ops      # /metrics: its cost on execute, a scrape at 200
    python3 scripts/bench.py --profile       # cProfile of the server's request threads

Standard library only (jupyter_client + ipykernel are used for one comparison
when importable; the tutorial's Flask app, ``scripts/flask_tutorial.py``, when
``--flask-python`` -- by default this interpreter -- can import Flask; gunicorn
for its section when this interpreter can import it: bench-only extras, each
skipped with a note when absent).  It starts, on loopback with free ports and
private temporary state dirs, ``scripts/serve.py`` (pool as configured by
default), a second ``scripts/serve.py`` with ``--pool-size 0`` (cold creation;
and ``--output-cap 128MiB`` for the 100 MiB output), the tutorial's in-process
server ``scripts/baseline_server.py`` and its ``--floor`` (a trivial app on the
same server class), the Flask app, ``gunicorn -w 2`` on ``wsgikernel.wsgi``,
bare interpreters (the memory baselines) and, where bubblewrap can run, a
``--sandbox none`` and a ``--sandbox bwrap`` server (the sandbox section) and,
where ``scripts/slurm-dev-cluster.sh`` can start a single-node Slurm cluster
(root, slurm-wlm and munge), that cluster with a ``--launcher slurm`` server
and three local ones (the Slurm section), and stops every one of them, and
every kernel they started, before it exits.  The HTTP side (servers, clients,
the HTTP front end figures of issue 14) is ``scripts/bench_http.py``; the
kernel side (creation, deletion, the pool, memory) ``scripts/bench_kernels.py``.
Every loop is bounded by a count and a deadline.  Figures drift +-30% from run
to run on a small machine: compare the ratios, which are measured in the same
run.  See docs/benchmarks.md.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_http import (  # noqa: E402 - the HTTP side: servers, clients, runs, table
    COUNTS as HTTP_COUNTS, PYTHON, ROOT, TRIVIAL, BenchError, Fleet, Server, call,
    concurrent, create_envs, execute_path, figure, flask_note, flask_reference, flask_version,
    front_end_figures, gunicorn_version, interleaved, kill_processes_of, log, machine, met_if,
    now, output_round_trips, p50, percentile, table, timed)
from bench_kernels import (  # noqa: E402 - the kernel side: creation, deletion, memory
    POOL_WAIT, burst, create_series, creation_figures, delete_series, deletion_figures,
    fill_envs, idle_envs, jupyter_figures, kernel_memory_kb, mb, memory_figures, scale_point,
    settle, wait_pool, with_bare_pythons)
from bench_sandbox import SANDBOX_COUNTS, sandbox_section  # noqa: E402 - issue 16
from bench_slurm import SLURM_COUNTS, slurm_section  # noqa: E402 - issue 17
from bench_fork import FORK_COUNTS, fork_section  # noqa: E402 - issue 18
from bench_ops import OPS_COUNTS, ops_section  # noqa: E402 - issue 21

CPU_CELL = "sum(range(300_000))"
MB_CELL = "print('x' * (2**20 - 1))"         # 1 MiB of output with its newline: the default cap
BIG_CELL = "print('x' * (100 * 2**20 - 1))"  # 100 MiB: needs a raised output cap
BIG_CAP = "128MiB"
BIG_WAIT = 120         # seconds a 100 MiB execute may wait before a 202 (default_wait is 25)
BIG_DEADLINE = 240.0   # seconds the whole 100 MiB run may take
FRONT_ENVS = ("e0", "t0", "t1", "t2", "t3", "lp")
GUNICORN_CONF = (  # the documented config module, access log off as for serve.py --quiet
    "from wsgikernel.gunicorn_conf import *  # noqa: F401,F403\n"
    "accesslog = None\n")

COUNTS = {
    # name: (full, quick); warmup, execute, concurrent, longpolls: bench_http.COUNTS
    "create": (20, 3),
    "burst": (10, 10),
    "jupyter": (3, 1),
    "memory_envs": (50, 5),
    "throughput_trivial": (1200, 80),
    "throughput_cpu": (240, 16),
    "output_1mb": (30, 3),
    "output_100mb": (3, 1),
    "output_100mb_warmup": (1, 0),
    "scale_envs": (200, 20),
    "scale_probe_create": (8, 2),
    "scale_probe_list": (20, 3),
    "scale_probe_execute": (100, 10),
    **HTTP_COUNTS,
    **SANDBOX_COUNTS,
    **SLURM_COUNTS,
    **FORK_COUNTS,
    **OPS_COUNTS,
}


# -- creation and deletion ----------------------------------------------------------------


def creation_phase(args, wk, cold, pool_size, counts, notes, info, deletes):
    """Paced warm creations, a back-to-back burst, cold creations, jupyter_client."""
    log(args, "creation x%d warm, x%d back to back, x%d cold"
        % (counts["create"], counts["burst"], counts["create"]))
    call(cold.port, "PUT", "/envs/w", expect=(201,))  # warm the server's own code paths
    call(cold.port, "DELETE", "/envs/w", expect=(204,))
    warm = create_series(wk, "c", counts["create"], pool_size)
    deletes.append(delete_series(wk, warm[3]))
    bursts = burst(wk, "b", counts["burst"], pool_size)
    deletes.append(delete_series(wk, bursts[2]))
    cold_series = create_series(cold, "c", counts["create"], 0)
    delete_series(cold, cold_series[3])
    info["pool_observed"] = warm[2]
    if pool_size and not warm[2]:
        notes.append("no pooled kernel was ever seen in <state_dir>/pool: the 'warm' "
                     "creation figures are cold starts")
    jup, jup_pss, jup_rss, why = (jupyter_figures(counts["jupyter"]) if not args.no_jupyter
                                  else (None, None, None, "--no-jupyter"))
    if why:
        notes.append("jupyter_client + ipykernel comparison: n/a (%s)" % why)
    info["ipykernel_idle_kb"] = {"pss": jup_pss, "rss": jup_rss}
    figures = creation_figures("", warm, bursts, pool_size)
    cc50 = p50(cold_series[0])
    figures["create_cold_p50_ms"] = figure(
        cc50, label="create PUT->201, cold (--pool-size 0)", target="<= 80 ms",
        met=met_if(cc50 <= 80.0, cc50))
    figures["create_cold_first_execute_p50_ms"] = figure(
        p50(cold_series[1]), label="create + first execute, cold")
    jup50, cw50 = p50(jup) if jup else None, p50(warm[0])
    figures["jupyter_start_p50_ms"] = figure(
        jup50, label="jupyter_client+ipykernel start-to-ready")
    speedup = jup50 / cw50 if jup50 and cw50 else None
    figures["create_speedup_vs_jupyter"] = figure(
        speedup, unit="x", label="jupyter start / wsgikernel warm create",
        target=">= 100x", met=met_if(speedup is not None and speedup >= 100, speedup))
    return figures, jup_pss


# -- memory -----------------------------------------------------------------------------


def memory_phase(args, wk, pool_size, counts, jup_pss, notes, info, deletes):
    """Idle memory per env of every kernel-side process, at 1 env and at N envs.

    ``wk`` has no env left when this starts; its envs are deleted at the end.
    """
    n = counts["memory_envs"]
    log(args, "idle memory at 1 and %d envs" % n)
    made, points = [], {}
    for total in (1, n):
        ready = idle_envs(wk, pool_size, "m", made, total)
        if ready is not None and ready < pool_size:
            notes.append("after creating %d envs back to back the pool held %d of %d ready "
                         "kernels and no refill was under way (a refill starts only with a "
                         "creation): the memory at %d envs has %d pooled"
                         % (total, ready, pool_size, total, ready))
        points[total] = with_bare_pythons(
            lambda: kernel_memory_kb(wk.state_dir, [wk.proc.pid]))
    deletes.append(delete_series(wk, made))
    info["memory_kb"] = {str(total): {"kernels": parts, "bare": bare}
                         for total, (parts, bare) in points.items()}
    return memory_figures(points, n, jup_pss)


# -- throughput and output -----------------------------------------------------------------


def throughput_figures(args, wk, base, pool_size, counts):
    """8 clients over 4 envs, trivial and CPU-bound cells, wsgikernel vs the baseline."""
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
    return {
        "throughput_trivial_rps": figure(
            rps["trivial", "wsgikernel"], rps["trivial", "baseline"], unit="req/s",
            label="throughput x=1+1, 8 clients / 4 envs", target=">= 1.0x baseline",
            met=rps["trivial", "wsgikernel"] >= rps["trivial", "baseline"]),
        "throughput_cpu_rps": figure(
            rps["cpu", "wsgikernel"], rps["cpu", "baseline"], unit="req/s",
            label="throughput sum(range(300_000)), 8 clients / 4 envs",
            target="> 1.0x baseline", met=rps["cpu", "wsgikernel"] > rps["cpu", "baseline"]),
    }


def output_figures(args, wk, base, flask, counts, info):
    """1 MiB of output: wsgikernel vs the in-process baseline and vs Flask."""
    log(args, "1 MiB output x%d" % counts["output_1mb"])
    body = {"code": MB_CELL}
    targets = {"wsgikernel": (wk.port, "e0", body), "baseline": (base.port, "e0", body)}
    if flask:
        targets["flask"] = (flask.port, "e0", body)
    big, sizes = output_round_trips(targets, counts["output_1mb"], 1, 2**20)
    info["output_1mb_response_bytes"] = sizes
    m50, b50, f50 = p50(big["wsgikernel"]), p50(big["baseline"]), p50(big.get("flask"))
    return {
        "output_1mb_p50_ms": figure(
            m50, b50, label="1 MiB output round trip p50 vs baseline",
            target="<= 1.5x baseline", met=m50 <= 1.5 * b50),
        "output_1mb_vs_flask_p50_ms": figure(
            m50, f50, label="1 MiB output round trip p50 vs Flask", target="<= 1.5x Flask",
            met=met_if(f50 is not None and m50 <= 1.5 * f50, f50)),
    }


def big_output_figures(args, cold, flask, counts, info):
    """100 MiB of output on the server with a raised cap (``cold``) vs Flask."""
    n = counts["output_100mb"]
    log(args, "100 MiB output x%d" % n)
    body = {"code": BIG_CELL, "wait": BIG_WAIT}
    create_envs(cold.port, ("e0",))
    targets = {"wsgikernel": (cold.port, "e0", body)}
    if flask:
        targets["flask"] = (flask.port, "e0", body)
    try:
        big, sizes = output_round_trips(targets, n, counts["output_100mb_warmup"],
                                        100 * 2**20, BIG_DEADLINE)
    finally:
        call(cold.port, "DELETE", "/envs/e0", expect=(204,))
    info["output_100mb_response_bytes"] = sizes
    m50, f50 = p50(big["wsgikernel"]), p50(big.get("flask"))
    return {"output_100mb_vs_flask_p50_ms": figure(
        m50, f50, label="100 MiB output round trip p50 (--output-cap %s, x%d) vs Flask"
        % (BIG_CAP, n), target="<= 2x Flask",
        met=met_if(f50 is not None and m50 <= 2.0 * f50, f50))}


# -- gunicorn -w 2 ----------------------------------------------------------------------


def gunicorn_section(args, fleet, state_root, flask, pool_size, counts, notes, info):
    """Issue 15's figures again with ``gunicorn -w 2`` serving ``wsgikernel.wsgi``.

    Its own fleet: the master's pid is in ``info["gunicorn"]["pids"]`` (``info["pids"]``
    lists the main fleet's servers); stopped here, or by run()'s ``finally``.
    """
    version = gunicorn_version()
    if args.skip_gunicorn or not version:
        notes.append("gunicorn -w 2 section skipped: %s" % (
            "--skip-gunicorn" if version else "gunicorn is not importable by %s (pip install "
            "'gunicorn~=27.0.1')" % PYTHON))
        return {}
    log(args, "gunicorn -w 2")
    config = os.path.join(state_root, "gunicorn_conf.py")
    with open(config, "w") as handle:
        handle.write(GUNICORN_CONF)
    gdir = os.path.join(state_root, "gunicorn")
    g = fleet.gunicorn("gunicorn -w 2", gdir, config, pool_size=args.pool_size)
    g.wait_url()
    info["gunicorn"] = {"version": version, "pids": fleet.pids}
    call(g.port, "GET", "/envs")  # a worker's first request starts filling the pool
    create_envs(g.port, ("e0",))
    settle(g, pool_size)

    targets = {"wsgikernel": (g.port, "POST", execute_path("e0"), {"code": TRIVIAL})}
    if flask:
        targets["flask"] = (flask.port, "POST", execute_path("e0"), {"code": TRIVIAL})
    lat = interleaved(targets, counts["execute"], counts["warmup"])
    w50, w99 = p50(lat["wsgikernel"]), percentile(lat["wsgikernel"], 99)
    fl50, fl99, who = flask_reference(lat)
    figures = {
        "gunicorn_execute_vs_flask_p50_ms": figure(
            w50, fl50, label="execute x=1+1 p50, new connection, vs %s" % who,
            target="<= 0.8x Flask", met=met_if(w50 <= 0.8 * fl50, w50, fl50)),
        "gunicorn_execute_vs_flask_p99_ms": figure(
            w99, fl99, label="execute x=1+1 p99, new connection, vs %s" % who,
            target="<= 1.0x Flask", met=met_if(fl99 is not None and w99 <= fl99, w99, fl99)),
    }
    deletes = []
    warm = create_series(g, "c", counts["create"], pool_size)
    deletes.append(delete_series(g, warm[3]))
    bursts = burst(g, "b", counts["burst"], pool_size)
    deletes.append(delete_series(g, bursts[2]))
    figures.update(creation_figures("gunicorn_", warm, bursts, pool_size))

    settle(g, pool_size)
    body = {"code": MB_CELL}
    out_targets = {"wsgikernel": (g.port, "e0", body)}
    if flask:
        out_targets["flask"] = (flask.port, "e0", body)
    big, _ = output_round_trips(out_targets, counts["output_1mb"], 1, 2**20)
    m50, f50 = p50(big["wsgikernel"]), p50(big.get("flask"))
    figures["gunicorn_output_1mb_vs_flask_p50_ms"] = figure(
        m50, f50, label="1 MiB output round trip p50 vs Flask", target="<= 1.5x Flask",
        met=met_if(f50 is not None and m50 <= 1.5 * f50, f50))

    made = fill_envs(g.port, 10, "l")
    if flask:
        fill_envs(flask.port, 10, "l")
    settle(g, pool_size)
    listing = {"wsgikernel": (g.port, "GET", "/envs", None)}
    if flask:
        listing["flask"] = (flask.port, "GET", "/envs", None)
    lists = interleaved(listing, counts["scale_probe_list"], 2)
    figures["gunicorn_list_10_p50_ms"] = figure(
        p50(lists["wsgikernel"]), p50(lists.get("flask")),
        label="GET /envs p50 at 10 envs vs Flask at 10 envs")
    deletes.append(delete_series(g, made + ["e0"]))
    figures.update(deletion_figures("gunicorn_", deletes, notes))
    g.stop()
    notes.append("gunicorn section: %s -m gunicorn --workers 2 -c <wsgikernel.gunicorn_conf, "
                 "access log off> wsgikernel.wsgi:application (%s; gthread, 8 threads) on "
                 "127.0.0.1, WSGIKERNEL_NO_AUTH=1, pool_size %d, a state dir of its own"
                 % (PYTHON, version, pool_size))
    for fig in figures.values():
        fig["section"] = "gunicorn -w 2, wsgikernel.wsgi:application"
    return figures


# -- scale ------------------------------------------------------------------------------


def scale_figures(args, fleet, scale_dir, pool_args, pool_size, counts, info):
    """A fresh server filled with envs: probes at 1, 10 and 200 envs; memory per env."""
    log(args, "scale to %d envs" % counts["scale_envs"])
    scale = fleet.wsgikernel("wsgikernel scale", scale_dir, *pool_args)
    scale.wait_url()
    call(scale.port, "GET", "/envs")  # starts the pool filling
    made = []
    started = time.perf_counter()
    one = scale_point(scale, 1, counts, "s", made, pool_size, create_probes=False)
    low = scale_point(scale, 10, counts, "s", made, pool_size)
    high = scale_point(scale, counts["scale_envs"], counts, "s", made, pool_size)
    wall = time.perf_counter() - started
    n = len(made)
    parts, bare = with_bare_pythons(lambda: kernel_memory_kb(scale_dir, [scale.proc.pid]))
    scale.stop()
    rss_each = (parts["envs"][0] + parts["pool"][0]) / n
    pss_each = (parts["envs"][1] + parts["pool"][1]) / n
    fill = one["fill_ms"] + low["fill_ms"] + low["create"] + high["fill_ms"] + high["create"]
    info["scale"] = {"envs": n, "wall_s": wall, "kernels_kb": parts, "bare_kb": bare}
    c200, c10 = p50(high["create"]), p50(low["create"])
    l200, l10 = p50(high["list"]), p50(low["list"])
    e200, e1 = p50(high["execute"]), p50(one["execute"])
    return {
        "scale_create_p50_ms": figure(
            c200, c10, label="scale: create PUT->201 p50, paced, at %d envs (baseline: at 10)"
            % n, target="flat (<= 1.5x)", met=c200 <= 1.5 * c10),
        "scale_list_p50_ms": figure(
            l200, l10, label="scale: GET /envs p50 at %d envs (baseline: at 10)" % n,
            target="<= 2x at 10 envs", met=l200 <= 2.0 * l10),
        "scale_execute_p50_ms": figure(
            e200, e1, label="scale: execute x=1+1 p50 at %d envs (baseline: at 1)" % n,
            target="<= 1.1x at 1 env", met=e200 <= 1.1 * e1),
        "scale_fill_s": figure(
            sum(fill) / 1000.0, unit="s", label="scale: time to create %d envs (sum of PUTs)"
            % n),
        "scale_create_mean_ms": figure(
            sum(fill) / len(fill), label="scale: mean PUT->201 over all %d envs" % n),
        "scale_pss_per_env_mb": figure(
            mb(pss_each), mb(bare["isolated"][1]), unit="MB",
            label="scale: PSS per env at %d envs, pool included, vs python3 -I -S" % n),
        "scale_rss_per_env_mb": figure(
            mb(rss_each), mb(bare["isolated"][0]), unit="MB",
            label="scale: RSS per env at %d envs, pool included, vs python3 -I -S" % n),
    }


# -- the sandbox section (issue 16) -----------------------------------------------------


def sandbox_figures(args, fleet, state_root, pool_size, counts, notes, info):
    """``--sandbox bwrap`` vs ``--sandbox none`` (bench_kernels.sandbox_section), or a note."""
    if args.skip_sandbox:
        notes.append("sandbox section skipped: --skip-sandbox")
        return {}
    return sandbox_section(lambda text: log(args, text), fleet, state_root, pool_size,
                           counts, notes, info)


# -- the Slurm section (issue 17) -------------------------------------------------------


def slurm_figures(args, fleet, state_root, pool_size, counts, notes, info):
    """``--launcher slurm`` on a dev cluster vs local servers (bench_slurm.slurm_section),
    or a note."""
    if args.skip_slurm:
        notes.append("slurm section skipped: --skip-slurm")
        return {}
    return slurm_section(lambda text: log(args, text), fleet, state_root, pool_size, counts,
                         notes, info)


def fork_figures(args, fleet, state_root, pool_size, counts, notes, info):
    """Fork, checkpoint and restore against the bare fork() floor (bench_fork.py)."""
    if args.skip_fork:
        notes.append("fork section skipped: --skip-fork")
        return {}
    return fork_section(lambda text: log(args, text), fleet, state_root, pool_size, counts,
                        notes, info)


def ops_figures(args, fleet, state_root, pool_size, counts, notes, info):
    """What /metrics costs: execute with and without it, a scrape at 200 envs."""
    if args.skip_ops:
        notes.append("operations section skipped: --skip-ops")
        return {}
    return ops_section(lambda text: log(args, text), fleet, state_root, pool_size, counts,
                       notes, info)


ONLY = {"sandbox": sandbox_figures, "slurm": slurm_figures, "fork": fork_figures,
        "ops": ops_figures}


def run_only(args):
    """``--only sandbox|slurm``: that section's servers and nothing else."""
    section = ONLY[args.only]
    counts = {k: v[1] if args.quick else v[0] for k, v in COUNTS.items()}
    load_before = os.getloadavg()[0]
    notes = []
    state_root = tempfile.mkdtemp(prefix="wkbench-")
    os.chmod(state_root, 0o700)
    fleet = Fleet()
    pool_size = args.pool_size if args.pool_size is not None else 2
    info = {"state_root": state_root, "pids": [], "pool_size": pool_size}
    try:
        figures = section(args, fleet, state_root, pool_size, counts, notes, info)
    finally:
        fleet.stop_all()
        kill_processes_of(state_root)
        shutil.rmtree(state_root, ignore_errors=True)
    return {
        "date": now(), "machine": machine(load_before),
        "quick": bool(args.quick), "counts": counts, "figures": figures, "notes": notes,
        "info": info, "skipped": ["all but %s" % args.only],
    }


# -- the run --------------------------------------------------------------------------


def run(args):
    counts = {k: v[1] if args.quick else v[0] for k, v in COUNTS.items()}
    load_before = os.getloadavg()[0]
    figures, notes = {}, []
    state_root = tempfile.mkdtemp(prefix="wkbench-")
    os.chmod(state_root, 0o700)
    fleet, gunicorn_fleet, sandbox_fleet, slurm_fleet = Fleet(), Fleet(), Fleet(), Fleet()
    info = {"state_root": state_root, "pids": fleet.pids,
            "flask": flask_version(args.flask_python)}
    try:
        pool_args = () if args.pool_size is None else ("--pool-size", str(args.pool_size))
        wk = fleet.wsgikernel("wsgikernel", os.path.join(state_root, "warm"), *pool_args)
        cold = fleet.wsgikernel("wsgikernel --pool-size 0", os.path.join(state_root, "cold"),
                                "--pool-size", "0", "--output-cap", BIG_CAP)
        base = fleet.baseline("baseline")
        floor = fleet.baseline("floor", "--floor")
        flask = fleet.flask(args.flask_python) if info["flask"] else None
        notes.append(flask_note(args.flask_python, info["flask"]))
        for server in fleet.servers:
            server.wait_url()
        pool_size = args.pool_size if args.pool_size is not None else 2
        info["pool_size"] = pool_size

        # Environments for the latency, throughput, long-poll and output figures (pool
        # filling starts now).
        create_envs(wk.port, FRONT_ENVS)
        for server in (base, flask) if flask else (base,):
            create_envs(server.port, FRONT_ENVS[:-1])

        # (1) execute round trip, new connection and keep-alive; the HTTP front end
        # with 8 and 32 clients, and with long-polls open (pool refills finished first:
        # starting kernels in the background would compete for the CPU).
        settle(wk, pool_size)
        figures.update(front_end_figures(
            args, {"wsgikernel": wk.port, "baseline": base.port, "floor": floor.port},
            flask.port if flask else None, counts, notes, info))
        # (2) creation: pool warm (paced, then back to back), cold, jupyter_client.
        deletes = []
        created, jup_pss = creation_phase(args, wk, cold, pool_size, counts, notes, info,
                                          deletes)
        figures.update(created)
        # (3) throughput; (4) 1 MiB of output, then 100 MiB with a raised cap.
        figures.update(throughput_figures(args, wk, base, pool_size, counts))
        figures.update(output_figures(args, wk, base, flask, counts, info))
        figures.update(big_output_figures(args, cold, flask, counts, info))
        for server in (cold, base, floor):
            server.stop()
        # (5) idle memory at 1 and N envs, on wk emptied of its envs; (6) deletion.
        deletes.append(delete_series(wk, FRONT_ENVS))
        figures.update(memory_phase(args, wk, pool_size, counts, jup_pss, notes, info,
                                    deletes))
        figures.update(deletion_figures("", deletes, notes))
        wk.stop()
        # (7) the same targets under gunicorn -w 2 (printed last), Flask still up.
        gunicorn = gunicorn_section(args, gunicorn_fleet, state_root, flask, pool_size,
                                    counts, notes, info)
        if flask:
            flask.stop()
        # (8) sandbox: --sandbox bwrap vs --sandbox none, two servers of its own (printed
        # after gunicorn).
        sandbox = sandbox_figures(args, sandbox_fleet, state_root, pool_size, counts, notes,
                                  info)
        # (9) Slurm: --launcher slurm on a dev cluster of its own vs local servers (printed
        # after the sandbox section).
        slurm = slurm_figures(args, slurm_fleet, state_root, pool_size, counts, notes, info)
        # (9b) fork, checkpoints, restore: one server of its own, 1 GiB of data.
        forks = fork_figures(args, slurm_fleet, state_root, pool_size, counts, notes, info)
        # (9c) operations: /metrics on vs --metrics false, a scrape at 200 envs.
        ops = ops_figures(args, slurm_fleet, state_root, pool_size, counts, notes, info)
        # (10) scale: up to 200 idle envs on one server.
        if not args.skip_scale:
            figures.update(scale_figures(args, fleet, os.path.join(state_root, "scale"),
                                         pool_args, pool_size, counts, info))
        figures.update(gunicorn)
        figures.update(sandbox)
        figures.update(slurm)
        figures.update(forks)
        figures.update(ops)
    finally:
        slurm_fleet.stop_all()
        sandbox_fleet.stop_all()
        gunicorn_fleet.stop_all()
        fleet.stop_all()
        kill_processes_of(state_root)
        shutil.rmtree(state_root, ignore_errors=True)
    return {
        "date": now(), "machine": machine(load_before),
        "quick": bool(args.quick), "counts": counts, "figures": figures, "notes": notes,
        "info": info, "skipped": (["scale"] if args.skip_scale else [])
        + (["sandbox"] if args.skip_sandbox else [])
        + (["slurm"] if args.skip_slurm else []) + (["fork"] if args.skip_fork else [])
        + (["ops"] if args.skip_ops else []),
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
              ("execute " + MB_CELL, "execute", MB_CELL, max(5, n // 20)),
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
    parser.add_argument("--skip-gunicorn", action="store_true",
                        help="skip the gunicorn -w 2 section")
    parser.add_argument("--skip-sandbox", action="store_true",
                        help="skip the sandbox section (--sandbox bwrap vs none)")
    parser.add_argument("--skip-fork", action="store_true",
                        help="leave out the fork section (issue 18: 1 GiB of memory)")
    parser.add_argument("--skip-ops", action="store_true",
                        help="leave out the operations section (issue 21: /metrics)")
    parser.add_argument("--skip-slurm", action="store_true",
                        help="skip the Slurm section (--launcher slurm vs local)")
    parser.add_argument("--only", choices=tuple(ONLY), default=None,
                        help="run one section alone: sandbox (--sandbox bwrap vs none, "
                             "issue 16) or slurm (--launcher slurm on a dev cluster vs local, "
                             "issue 17)")
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
        result = run_only(args) if args.only else run(args)
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
