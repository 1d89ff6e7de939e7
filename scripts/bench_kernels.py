"""The kernel side of scripts/bench.py: creating and deleting envs, the pool, kernel memory.

``scripts/bench.py`` imports this module for what it measures through a
server's state dir and ``/proc``: creation series (paced, pool warm or cold)
and back-to-back bursts with how many creations a pooled kernel served,
deletion with a check that no process of the env is left, the probes of the
scale part, the summed memory of every kernel-side process of a state dir
(pooled kernels apart) beside bare interpreters measured at the same moment,
the jupyter_client + ipykernel comparison, and the figures (issue 15's
targets) built from them.  Standard library only (jupyter_client when
importable).  Every loop is bounded by a count and a deadline.
"""

import json
import os
import subprocess
import time

from bench_http import (PHASE_DEADLINE, PYTHON, TRIVIAL, BenchError, Deadline, call,
                        execute_path, figure, met_if, p50, percentile, timed)

POOL_WAIT = 15.0       # seconds to wait for the kernel pool to be full again
REFILL_QUIET = 0.5     # seconds without a pooled kernel starting: no refill is under way
IDLE = 0.7             # seconds an env (or a bare interpreter) idles before its memory is read
GONE_WAIT = 2.0        # seconds a process left by a DELETE is given before it counts as stuck
SLEEPER = "import time; time.sleep(60)"
BARE = {  # what an idle env's memory is compared with: name -> interpreter flags
    "isolated": ("-I", "-S"),   # python3 -I -S: no site, no user site, no .pth hooks
    "site": (),                 # python3 as a user starts it
}


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def env_record(state_dir, env_id):
    return read_json(os.path.join(state_dir, "envs", env_id, "env.json")) or {}


def env_pids(state_dir, env_id):
    record = env_record(state_dir, env_id)
    pids = [record.get("supervisor_pid"), record.get("pid")]
    if not all(pids):
        raise BenchError("env.json of %s has no supervisor_pid/pid: %r" % (env_id, record))
    return pids


# -- the pool -------------------------------------------------------------------------


def pool_counts(state_dir):
    """(ready, starting) pooled kernels: ``<state_dir>/pool/*/env.json`` says idle, or not yet."""
    pool = os.path.join(state_dir, "pool")
    try:
        names = [n for n in os.listdir(pool) if not n.startswith(".")]
    except FileNotFoundError:
        return 0, 0
    states = [(read_json(os.path.join(pool, n, "env.json")) or {}).get("state", "starting")
              for n in names]
    return states.count("idle"), states.count("starting")


def wait_pool(state_dir, size, timeout):
    """Wait until ``size`` pooled kernels are ready; True if they were.

    Gives up early when no refill is under way (no pooled kernel starting for
    REFILL_QUIET s): the server refills only when an env is created, so a pool
    left short stays short until the next creation.
    """
    end = time.monotonic() + timeout
    quiet_since = None
    while True:
        ready, starting = pool_counts(state_dir)
        if ready >= size:
            return True
        now = time.monotonic()
        quiet_since = None if starting else quiet_since or now
        if now > end or quiet_since and now - quiet_since > REFILL_QUIET:
            return False
        time.sleep(0.01)


def settle(server, pool_size):
    """Let a server's background pool refill finish before measuring; the kernels ready."""
    ready = None
    if pool_size and os.path.isdir(os.path.join(server.state_dir, "pool")):
        wait_pool(server.state_dir, pool_size, POOL_WAIT)
        ready = pool_counts(server.state_dir)[0]
    time.sleep(0.2)
    return ready


def from_pool(state_dir, env_id):
    """True if a pooled kernel served the env's creation.

    A pooled kernel was ready (env.json ``started``) before the PUT arrived
    (``created``, which ``bind`` gives it); a kernel started for the PUT is ready
    tens of ms after it.  Both are the server's UTC timestamps in one format, so
    they compare as strings.
    """
    record = env_record(state_dir, env_id)
    started, created = record.get("started"), record.get("created")
    if not started or not created:
        raise BenchError("env.json of %s has no started/created: %r" % (env_id, record))
    return started <= created


# -- creation and deletion --------------------------------------------------------------


def create_series(server, prefix, n, pool_size):
    """``n`` paced creations: (PUT->201 ms, PUT + first execute ms, pool seen, env ids).

    With a pool, each waits until the pool is full again, so each claims a pooled kernel.
    """
    puts, firsts, made = [], [], []
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
        made.append(env_id)
        call(server.port, "POST", execute_path(env_id), {"code": TRIVIAL})
        done = time.perf_counter()
        puts.append((created - start) * 1000.0)
        firsts.append((done - start) * 1000.0)
    return puts, firsts, pool_seen, made


def burst(server, prefix, n, pool_size):
    """``n`` creations back to back, the pool full before the first: (PUT ms, from pool, ids)."""
    if pool_size:
        wait_pool(server.state_dir, pool_size, POOL_WAIT)
    deadline = Deadline(PHASE_DEADLINE, "creation burst")
    puts, made = [], []
    for i in range(n):
        deadline.check()
        env_id = "%s%d" % (prefix, i)
        puts.append(timed(server.port, "PUT", "/envs/" + env_id, expect=(201,)))
        made.append(env_id)
    pooled = sum(1 for env_id in made if from_pool(server.state_dir, env_id))
    return puts, pooled, made


def proc_facts(pid):
    """(state letter, command line bytes, cwd) of ``pid``, or None if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read()
        return state, cmdline, os.readlink("/proc/%d/cwd" % pid)
    except (OSError, IndexError):
        return None


def in_dir(path, directory):
    return path == directory or path.startswith(directory + os.sep)


def running(pid, state_dir):
    """True if ``pid`` is a live (not zombie) process of ``state_dir``.

    Its command line names the state dir or its cwd is in it (a reused PID is not).
    """
    facts = proc_facts(pid)
    return bool(facts) and facts[0] not in (b"Z", b"X") and (
        state_dir.encode() in facts[1] or in_dir(facts[2], state_dir))


def delete_series(server, env_ids):
    """DELETE each env: (ms, pids still running when their DELETE returned, still after 2 s).

    The env's supervisor and user-code process (from its env.json) are checked
    (see running()) before the DELETE, where they must be running, and right
    after its 204.
    """
    deadline = Deadline(PHASE_DEADLINE, "deletion run")
    ms, left = [], []
    for env_id in env_ids:
        deadline.check()
        pids = env_pids(server.state_dir, env_id)
        if not all(running(pid, server.state_dir) for pid in pids):
            raise BenchError("the processes %r of %s were not running before its DELETE: "
                             "the check after it would prove nothing" % (pids, env_id))
        ms.append(timed(server.port, "DELETE", "/envs/" + env_id, expect=(204,)))
        left += [pid for pid in pids if running(pid, server.state_dir)]
    end = time.monotonic() + GONE_WAIT
    stuck = list(left)
    while stuck and time.monotonic() < end:
        time.sleep(0.05)
        stuck = [pid for pid in stuck if running(pid, server.state_dir)]
    return ms, left, stuck


def scale_point(server, env_total, counts, prefix, made, pool_size, create_probes=True):
    """Fill ``server`` up to ``env_total`` envs; probe creation, listing and execute there."""
    deadline = Deadline(PHASE_DEADLINE, "scale run")
    probes = counts["scale_probe_create"] if create_probes else 0
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


def fill_envs(port, total, prefix):
    """PUT envs ``prefix0``, ``prefix1``... until ``GET /envs`` lists ``total``; the ids made."""
    made = []
    _, body = call(port, "GET", "/envs")
    count = len(json.loads(body)["envs"])
    while count + len(made) < total:
        env_id = "%s%d" % (prefix, len(made))
        call(port, "PUT", "/envs/" + env_id, expect=(201,))
        made.append(env_id)
    return made


# -- memory ---------------------------------------------------------------------------


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


def parent_pid(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def process_table():
    """pid -> (parent pid, proc_facts()) of every process readable here but this one."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        facts = proc_facts(pid)
        if facts:
            table[pid] = (parent_pid(pid), facts)
    return table


def kernel_processes(state_dir, server_pids):
    """pid -> the directory of the env (or pooled kernel) of every kernel-side process.

    A kernel-side process: one whose command line names the state dir or whose
    working directory is in it -- supervisors, user-code processes, pooled
    kernels, the forkserver and any helper the server starts for its kernels --
    and every descendant of one (a sandboxed env's supervisor runs bwrap ->
    bwrap -> python; user code's own subprocesses), minus the server's own
    processes: ``server_pids`` and their forks that kept their command line
    (gunicorn's workers).  Its directory is the working directory of its
    outermost kernel-side ancestor (or itself) inside ``envs/`` or ``pool/``:
    the supervisor's, which a claim's rename of ``pool/<k>`` to ``envs/<id>``
    carries along, whereas the processes inside a bwrap mount namespace still
    read as ``pool/<k>/work`` from outside after the rename.  A process under
    no such ancestor (the forkserver) keeps its own working directory.
    """
    servers = {pid: (proc_facts(pid) or (None, None, None))[1] for pid in server_pids}
    table = process_table()
    children = {}
    for pid, (parent, _) in table.items():
        children.setdefault(parent, []).append(pid)
    kernels = set()
    for pid, (parent, facts) in table.items():
        if pid in servers or not (state_dir.encode() in facts[1] or in_dir(facts[2], state_dir)):
            continue
        if parent in servers and servers[parent] == facts[1]:
            continue
        kernels.add(pid)
    todo = list(kernels)
    while todo:  # their descendants
        for child in children.get(todo.pop(), ()):
            if child not in kernels and child not in servers:
                kernels.add(child)
                todo.append(child)
    owned = [os.path.join(state_dir, "envs"), os.path.join(state_dir, "pool")]

    def directory(pid):
        found = table[pid][1][2]
        for _ in range(64):  # up the ancestry, while kernel-side
            if pid not in kernels:
                break
            cwd = table[pid][1][2]
            if any(in_dir(cwd, top) and cwd != top for top in owned):
                found = cwd
            pid = table[pid][0]
        return found

    return {pid: directory(pid) for pid in kernels}


def kernel_memory_kb(state_dir, server_pids):
    """Summed {"envs": [RSS, PSS, processes], "pool": [...]} of the kernel-side processes.

    "pool": the processes whose working directory is in ``<state_dir>/pool`` (a
    claimed kernel's directory is renamed into ``envs/``, and its cwd with it);
    "envs": all the others (the envs' processes and any shared helper).
    """
    pool = os.path.join(state_dir, "pool") + os.sep
    total = {"envs": [0, 0, 0], "pool": [0, 0, 0]}
    for pid, cwd in kernel_processes(state_dir, server_pids).items():
        try:
            rss, pss = memory_kb(pid)
        except (OSError, BenchError):
            continue  # exited between the listing and the reading
        part = total["pool" if (cwd + os.sep).startswith(pool) else "envs"]
        part[0], part[1], part[2] = part[0] + rss, part[1] + pss, part[2] + 1
    return total


def with_bare_pythons(measure):
    """(measure(), {"isolated"|"site": (RSS, PSS)}): bare interpreters read at the same moment.

    PSS splits shared pages (the interpreter binary, extension modules) between
    every process mapping them, so the bare ``python3 -c 'import time;
    time.sleep(60)'`` runs beside the kernels it is compared with; both are read
    after IDLE seconds, then the bare ones are killed.
    """
    procs = {name: subprocess.Popen([PYTHON] + list(flags) + ["-c", SLEEPER],
                                    stdin=subprocess.DEVNULL)
             for name, flags in BARE.items()}
    try:
        time.sleep(IDLE)
        value = measure()
        return value, {name: memory_kb(proc.pid) for name, proc in procs.items()}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()


def idle_envs(server, pool_size, prefix, made, total):
    """Create envs up to ``total`` (back to back), run x=1+1 once in each new one; settle()."""
    deadline = Deadline(PHASE_DEADLINE, "idle envs")
    new = []
    while len(made) < total:
        deadline.check()
        env_id = "%s%d" % (prefix, len(made))
        call(server.port, "PUT", "/envs/" + env_id, expect=(201,))
        made.append(env_id)
        new.append(env_id)
    for env_id in new:
        deadline.check()
        call(server.port, "POST", execute_path(env_id), {"code": TRIVIAL})
    return settle(server, pool_size)


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
                    time.sleep(IDLE)
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


# -- figures ----------------------------------------------------------------------------


def mb(kb):
    return None if kb is None else kb / 1024.0


def creation_figures(prefix, warm, bursts, pool_size):
    """Issue 15's creation rows from create_series() (paced) and burst() results."""
    puts, firsts = warm[0], warm[1]
    w50, w99 = p50(puts), percentile(puts, 99)
    figures = {
        prefix + "create_warm_p50_ms": figure(
            w50, label="create PUT->201 p50, pool warm (pool_size %d, %d paced)"
            % (pool_size, len(puts)), target="<= 3 ms", met=met_if(w50 <= 3.0, w50)),
        prefix + "create_warm_p99_ms": figure(
            w99, label="create PUT->201 p99, pool warm", target="<= 6 ms",
            met=met_if(w99 <= 6.0, w99)),
        prefix + "create_warm_first_execute_p50_ms": figure(
            p50(firsts), label="create + first execute, pool warm"),
    }
    times, pooled, made = bursts
    n = len(made)
    figures[prefix + "create_burst_from_pool"] = figure(
        pooled, unit="count", label="%d creations back to back: served by a pooled kernel "
        "(env.json started <= created)" % n, target="%d of %d" % (n, n), met=pooled == n)
    figures[prefix + "create_burst_p50_ms"] = figure(
        p50(times), label="%d creations back to back: PUT->201 p50" % n)
    figures[prefix + "create_burst_max_ms"] = figure(
        max(times), label="%d creations back to back: PUT->201 max" % n)
    return figures


def deletion_figures(prefix, deletes, notes):
    """DELETE latency over every env deleted, and processes running when it returned."""
    ms = [t for run in deletes for t in run[0]]
    left = [pid for run in deletes for pid in run[1]]
    stuck = [pid for run in deletes for pid in run[2]]
    if stuck:
        notes.append("%sprocesses of deleted envs still running 2 s after their DELETE: %s"
                     % (prefix.replace("_", " "), stuck[:10]))
    d50 = p50(ms)
    return {
        prefix + "delete_p50_ms": figure(
            d50, label="delete DELETE /envs/{id} p50 (%d idle envs)" % len(ms),
            target="<= 5 ms", met=met_if(d50 <= 5.0, d50)),
        prefix + "delete_p99_ms": figure(percentile(ms, 99), label="delete p99"),
        prefix + "delete_processes_left": figure(
            len(left), unit="count", label="delete: env processes running when DELETE "
            "returned (of %d)" % (2 * len(ms)), target="0", met=not left),
    }


def memory_figures(points, n, jup_pss):
    """Issue 15's memory rows from with_bare_pythons(kernel_memory_kb) at 1 and ``n`` envs."""
    (one, bare1), (many, bare) = points[1], points[n]
    iso1, site1 = bare1["isolated"][1], bare1["site"][1]
    pooled1 = one["pool"][2] // 2
    figures = {
        "idle_env_pss_mb": figure(
            mb(one["envs"][1]), mb(iso1), unit="MB", label="idle PSS per env at 1 env, pool "
            "excluded (%d processes) vs python3 -I -S" % one["envs"][2]),
        "idle_env_pss_site_mb": figure(
            mb(one["envs"][1]), mb(site1), unit="MB",
            label="idle PSS per env at 1 env, pool excluded, vs python3 (site)"),
        "idle_env_pss_with_pool_mb": figure(
            mb(one["envs"][1] + one["pool"][1]), mb(iso1), unit="MB",
            label="idle PSS per env at 1 env, pool included (%d pooled kernels) vs "
            "python3 -I -S" % pooled1),
        "idle_env_rss_mb": figure(
            mb(one["envs"][0]), mb(bare1["isolated"][0]), unit="MB",
            label="idle RSS per env at 1 env, pool excluded, vs python3 -I -S"),
        "ipykernel_idle_pss_mb": figure(
            mb(jup_pss), mb(iso1), unit="MB", label="ipykernel idle PSS vs python3 -I -S"),
        "idle_env_pss_vs_ipykernel_mb": figure(
            mb(one["envs"][1]), mb(jup_pss), unit="MB",
            label="idle PSS per env at 1 env, pool excluded, vs ipykernel"),
    }
    iso = bare["isolated"][1]
    per_env = (many["envs"][1] + many["pool"][1]) / n
    figures["idle_pss_per_env_mb"] = figure(
        mb(per_env), mb(iso), unit="MB", label="idle PSS per env at %d envs, pool included "
        "(%d pooled kernels) vs python3 -I -S" % (n, many["pool"][2] // 2),
        target="<= 1.3x baseline", met=per_env <= 1.3 * iso)
    figures["idle_pss_per_env_no_pool_mb"] = figure(
        mb(many["envs"][1] / n), mb(iso), unit="MB",
        label="idle PSS per env at %d envs, pool excluded, vs python3 -I -S" % n)
    return figures
