"""The sandbox section of scripts/bench.py (issue 16): ``--sandbox bwrap`` beside ``none``.

Two servers on fresh state dirs, the same pool size: warm creates taking turns
(each checked as served by a pooled kernel), idle PSS of the envs they made
(every kernel-side process, bwrap -> bwrap -> python included, divided by the
envs), and executes of a trivial cell on new connections, taking turns; then
every env is deleted and anything left is noted.  Skipped with a note where
bubblewrap cannot make a sandbox.  Every loop is bounded by a count and a deadline.
"""

import json
import os
import shutil
import subprocess
import time

from bench_http import (PYTHON, TRIVIAL, BenchError, Deadline, call, execute_path, figure,
                        interleaved, p50, percentile)
from bench_kernels import (IDLE, POOL_WAIT, delete_series, from_pool, kernel_processes, mb,
                           memory_kb, parent_pid, proc_facts, settle, wait_pool)

SANDBOX_COUNTS = {  # name: (full, quick) -- the sandbox section (issue 16)
    "sandbox_create": (20, 3),     # paced creations on each server; their envs are the idle ones
    "sandbox_execute": (500, 20),  # executes on each server, taking turns
    "sandbox_warmup": (20, 3),
}
SANDBOX_DEADLINE = 120.0  # seconds the whole sandbox section may take


# -- the sandbox section (issue 16) ---------------------------------------------------------


def bwrap_problem():
    """None if bubblewrap can make a sandbox here (new PID and network namespaces), else why."""
    program = shutil.which("bwrap")
    if not program:
        return "bubblewrap is not installed (no bwrap on PATH; apt-get install bubblewrap)"
    argv = [program, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-net",
            "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", PYTHON, "-c", "pass"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "bwrap cannot be run: %r" % (exc,)
    if done.returncode:
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        return "bwrap cannot create a sandbox: %s" % (
            lines[-1] if lines else "exit status %d" % done.returncode)
    return None


def bwrap_version():
    try:
        return subprocess.run(["bwrap", "--version"], capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        return None


def paired_creates(servers, prefix, n, pool_size, deadline):
    """``n`` paced creations (+ a first execute) on each server, the servers taking turns.

    Before each PUT every server's pool is full again (so the PUT claims a pooled
    kernel and no refill competes for the CPU).  name -> (PUT ms, PUT + first
    execute ms, env ids).
    """
    names = list(servers)
    out = {name: ([], [], []) for name in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            deadline.check()
            if pool_size:
                for server in servers.values():
                    wait_pool(server.state_dir, pool_size, POOL_WAIT)
            server, env_id = servers[name], "%s%d" % (prefix, i)
            start = time.perf_counter()
            call(server.port, "PUT", "/envs/" + env_id, expect=(201,))
            created = time.perf_counter()
            call(server.port, "POST", execute_path(env_id), {"code": TRIVIAL})
            done = time.perf_counter()
            puts, firsts, made = out[name]
            puts.append((created - start) * 1000.0)
            firsts.append((done - start) * 1000.0)
            made.append(env_id)
    return out


def process_kind(pid, state_dir):
    """What a kernel-side process is: forkserver, supervisor, bwrap, user code (forked or
    exec'd) -- from its command line, working directory and its parent's."""
    facts = proc_facts(pid)
    if facts is None:
        return None
    if os.path.basename(facts[1].split(b"\0", 1)[0]) == b"bwrap":
        return "bwrap"
    if b"wsgikernel.kernel.executor" in facts[1]:
        return "user code (exec'd)"
    if facts[2] == state_dir:
        return "forkserver"
    parent = proc_facts(parent_pid(pid) or 0)
    if parent and parent[2] == state_dir:
        return "supervisor"  # the forkserver's child
    return "user code (forked)" if parent and parent[1] == facts[1] else "other"


def env_memory_kb(state_dir, server_pids):
    """{"envs": {kind: [RSS, PSS, processes]}, "pool": [RSS, PSS, processes]}, envs apart.

    As kernel_memory_kb(), with the envs' side split by process_kind() (the
    forkserver, a shared helper, is one of the kinds).
    """
    pool = os.path.join(state_dir, "pool") + os.sep
    kinds, pooled = {}, [0, 0, 0]
    for pid, cwd in kernel_processes(state_dir, server_pids).items():
        kind = process_kind(pid, state_dir)
        try:
            rss, pss = memory_kb(pid)
        except (OSError, BenchError):
            continue  # exited between the listing and the reading
        if kind is None:
            continue
        if (cwd + os.sep).startswith(pool):
            part = pooled
        else:
            part = kinds.setdefault(kind, [0, 0, 0])
        part[0], part[1], part[2] = part[0] + rss, part[1] + pss, part[2] + 1
    return {"envs": kinds, "pool": pooled}


def summed(kinds):
    return [sum(part[i] for part in kinds.values()) for i in range(3)]


def sandbox_section(log, fleet, state_root, pool_size, counts, notes, info):
    """Issue 16's three figures: a ``--sandbox bwrap`` server against a ``--sandbox none``
    one, same pool_size, fresh state dirs, measured side by side in this run.

    Skipped, with a note, when bubblewrap cannot run here (or the sandboxed server
    refuses a sandboxed env: 503).  ``fleet`` is the section's own; its servers are
    stopped here (or by the caller's ``finally``).
    """
    why = bwrap_problem()
    if why:
        notes.append("sandbox section skipped: %s" % why)
        log("sandbox section skipped: %s" % why)
        return {}
    deadline = Deadline(SANDBOX_DEADLINE, "sandbox section")
    started = time.perf_counter()
    log("sandbox: --sandbox none vs --sandbox bwrap, pool_size %d" % pool_size)
    servers = {}
    for mode in ("bwrap", "none"):
        servers[mode] = fleet.wsgikernel(
            "wsgikernel --sandbox %s" % mode, os.path.join(state_root, "sandbox-" + mode),
            "--sandbox", mode, "--pool-size", str(pool_size))
    for server in servers.values():
        server.wait_url()
        call(server.port, "GET", "/envs")  # starts the pool filling
    boxed, local = servers["bwrap"], servers["none"]
    status, body = call(boxed.port, "PUT", "/envs/w", expect=(201, 503))
    if status == 503:
        detail = json.loads(body).get("detail", body[:200])
        notes.append("sandbox section skipped: the --sandbox bwrap server refused a sandboxed "
                     "env (503): %s" % detail)
        log("sandbox section skipped: 503 %s" % detail)
        for server in servers.values():
            server.stop()
        return {}
    shown = json.loads(call(boxed.port, "GET", "/envs/w")[1]).get("sandbox")
    if shown != "bwrap":
        raise BenchError("the --sandbox bwrap server made an env with sandbox %r" % shown)
    call(local.port, "PUT", "/envs/w", expect=(201,))  # the server's own code paths warm
    for server in servers.values():
        call(server.port, "DELETE", "/envs/w", expect=(204,))

    # (1) warm creation, paced, the two servers taking turns.
    series = paired_creates(servers, "c", counts["sandbox_create"], pool_size, deadline)
    pooled = {mode: sum(1 for env_id in series[mode][2]
                        if from_pool(servers[mode].state_dir, env_id)) for mode in servers}
    # (2) idle memory of those envs (each has run one cell), both read at the same moment.
    for server in servers.values():
        settle(server, pool_size)
    time.sleep(IDLE)
    memory = {mode: env_memory_kb(server.state_dir, [server.proc.pid])
              for mode, server in servers.items()}
    # (3) execute on a new connection each, taking turns.
    deadline.check()
    lat = interleaved({mode: (server.port, "POST", execute_path("c0"), {"code": TRIVIAL})
                       for mode, server in servers.items()},
                      counts["sandbox_execute"], counts["sandbox_warmup"])
    # deleted, each checked for processes left (bwrap's included: they are the env's pid)
    deletes = {mode: delete_series(server, series[mode][2]) for mode, server in servers.items()}
    for server in servers.values():
        server.stop()
    for mode, (_, left, stuck) in deletes.items():
        if stuck:
            notes.append("sandbox section: processes of deleted --sandbox %s envs still running "
                         "2 s after their DELETE: %s" % (mode, stuck[:10]))
    wall = time.perf_counter() - started

    n = counts["sandbox_create"]
    b50, l50 = p50(series["bwrap"][0]), p50(series["none"][0])
    bf50, lf50 = p50(series["bwrap"][1]), p50(series["none"][1])
    be50, le50 = p50(lat["bwrap"]), p50(lat["none"])
    be99, le99 = percentile(lat["bwrap"], 99), percentile(lat["none"], 99)
    envs = {mode: summed(memory[mode]["envs"]) for mode in servers}
    bm, lm = envs["bwrap"][1] / n, envs["none"][1] / n
    info["sandbox"] = {
        "pids": fleet.pids, "bwrap": bwrap_version(), "wall_s": round(wall, 1),
        "pool_size": pool_size, "from_pool": pooled, "memory_kb": memory,
        "deleted_left": {mode: run[1] for mode, run in deletes.items()}}
    for mode in servers:
        parts = ", ".join("%s %d x %.1f MB" % (kind, part[2], mb(part[1]) / part[2])
                          for kind, part in sorted(memory[mode]["envs"].items()))
        notes.append("sandbox section: PSS of the --sandbox %s server's %d idle envs by "
                     "process (mean of each kind): %s; the forkserver is shared by all its "
                     "envs" % (mode, n, parts))
    notes.append("sandbox section: %.0f s, %s" % (wall, info["sandbox"]["bwrap"] or "bwrap"))
    figures = {
        "sandbox_create_warm_p50_ms": figure(
            b50, l50, label="create PUT->201 p50, pool warm (%d paced; from the pool: %d/%d "
            "bwrap, %d/%d none)" % (n, pooled["bwrap"], n, pooled["none"], n),
            target="<= 1.5x local", met=b50 <= 1.5 * l50),
        "sandbox_create_first_execute_p50_ms": figure(
            bf50, lf50, label="create + first execute p50, pool warm"),
        "sandbox_execute_p50_ms": figure(
            be50, le50, label="execute x=1+1 p50, new connection (%d each, taking turns)"
            % len(lat["bwrap"]), target="<= 1.05x local", met=be50 <= 1.05 * le50),
        "sandbox_execute_p99_ms": figure(be99, le99, label="execute x=1+1 p99, new connection"),
        "sandbox_idle_pss_per_env_mb": figure(
            mb(bm), mb(lm), unit="MB", label="idle PSS per env at %d envs, pool excluded "
            "(%d vs %d processes, forkserver included)" % (n, envs["bwrap"][2], envs["none"][2]),
            target="<= 1.2x local", met=bm <= 1.2 * lm),
        "sandbox_idle_rss_per_env_mb": figure(
            mb(envs["bwrap"][0] / n), mb(envs["none"][0] / n), unit="MB",
            label="idle RSS per env at %d envs, pool excluded" % n),
    }
    for fig in figures.values():
        fig["section"] = ("sandbox (issue 16): serve.py --sandbox bwrap (wsgikernel column) vs "
                          "--sandbox none (baseline), pool_size %d" % pool_size)
    return figures
