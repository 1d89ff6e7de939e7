"""The Slurm section of scripts/bench.py (issue 17): ``--launcher slurm`` beside local envs.

A single-node dev cluster of its own (``scripts/slurm-dev-cluster.sh start`` in
the bench's temporary directory, stopped in ``finally``), a ``--launcher slurm``
server with ``SLURM_CONF`` naming it, and three local servers with the same
settings: the default one (the baseline), one with ``--kernel-transport tcp``
(the transport a Slurm env is reached over, without the scheduler) and one with
``--pool-size 0`` (a create that starts its kernel, as every Slurm create does).
Measured in one run: create to first result (PUT + the first ``x=1+1``, the
job's start included), executes of ``x=1+1`` taking turns, and interrupt
latency (POST /interrupt on a busy cell until its record, long-polled, reads
``error``/``interrupted``).  Then every env is deleted and ``squeue`` must be
empty.  Skipped with a note where the dev cluster cannot start (no slurm-wlm or
munge, not root).  Every loop is bounded by a count and a deadline.
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import time

from bench_http import (PYTHON, ROOT, SERVE, TRIVIAL, BenchError, Deadline, call, execute_path,
                        figure, interleaved, p50, percentile, processes_mentioning)
from bench_kernels import POOL_WAIT, delete_series, from_pool, settle, wait_pool

SLURM_COUNTS = {  # name: (full, quick) -- the Slurm section (issue 17)
    "slurm_create": (5, 1),        # paced creations (+ first execute) on each of 3 servers
    "slurm_burst": (3, 0),         # Slurm creations back to back
    "slurm_execute": (400, 20),    # executes on each of three servers, taking turns
    "slurm_warmup": (20, 3),
    "slurm_interrupt": (10, 3),    # interrupted busy cells on the slurm and the local server
}
SLURM_DEADLINE = 90.0   # seconds the whole Slurm section may take (cluster start included)
CLUSTER_SCRIPT = os.path.join(ROOT, "scripts", "slurm-dev-cluster.sh")
CLUSTER_TIMEOUT = 60.0  # seconds `slurm-dev-cluster.sh start` may take (it waits <= 30 s)
RESOURCES = {"cpus": 1, "mem": "256M"}  # each Slurm env's job: two fit the 2-CPU dev node
BUSY_CELL = "while True: pass"
FIRST_WAIT = 60         # seconds the first execute may wait (a job that is still pending)
RUNNING_WAIT = 10.0     # seconds a busy cell may take to start running
INTERRUPT_WAIT = 10     # seconds the long-poll after an interrupt may wait
QUEUE_WAIT = 10.0       # seconds a deleted env's job may take to leave squeue
SETTLE = 0.02           # seconds a busy cell runs before it is interrupted
QUIET = 3.2             # seconds without a pass of slurmctld's main scheduler before a paced
                        # submission (its batch_sched_delay: 3 s by default, whole seconds)
QUIET_WAIT = 12.0       # seconds a paced submission waits for that at most


# -- the cluster ----------------------------------------------------------------------


def cluster_problem():
    """None if the dev cluster may start here, else why not (before trying)."""
    missing = [p for p in ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "munged")
               if not shutil.which(p)]
    if missing:
        return ("Slurm is not installed (%s not on PATH; scripts/install-system-deps.sh "
                "installs slurm-wlm and munge)" % ", ".join(missing))
    if os.geteuid() != 0:
        return "the dev cluster runs slurmd as root and this bench is not root"
    return None


def start_cluster(folder):
    """(SLURM_CONF, None) of a dev cluster started in ``folder``, or (None, why not)."""
    why = cluster_problem()
    if why:
        return None, why
    try:
        done = subprocess.run(["sh", CLUSTER_SCRIPT, "start", folder], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=CLUSTER_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, "slurm-dev-cluster.sh start did not finish: %r" % (exc,)
    conf = None
    for line in done.stdout.splitlines():
        if line.startswith("export SLURM_CONF="):
            conf = line.split("=", 1)[1].strip()
    if done.returncode or not conf:
        lines = done.stderr.strip().splitlines()
        return None, "slurm-dev-cluster.sh start failed: %s" % (
            lines[-1] if lines else "exit status %d" % done.returncode)
    return conf, None


def stop_cluster(folder):
    try:
        subprocess.run(["sh", CLUSTER_SCRIPT, "stop", folder], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=CLUSTER_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for pid in processes_mentioning(folder):  # daemons the script could not stop
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def slurm_command(env, *argv):
    """stdout of a Slurm command run against the dev cluster ("" if it failed)."""
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30, env=env)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def queue(env):
    """The cluster's jobs still in the queue (pending, running, completing): id|state|name."""
    return slurm_command(env, "squeue", "--noheader", "--format=%i|%T|%j").splitlines()


def wait_queue_empty(env, job_id=None, timeout=QUEUE_WAIT):
    """Wait until squeue lists no job (or not ``job_id``); what it still lists."""
    def listed():
        return [line for line in queue(env)
                if job_id is None or line.split("|", 1)[0] == str(job_id)]
    end = time.monotonic() + timeout
    jobs = listed()
    while jobs and time.monotonic() < end:
        time.sleep(0.05)
        jobs = listed()
    return jobs


def scheduler_cycles(env):
    """How many times slurmctld's main scheduler has run (sdiag), or None."""
    found = re.search(r"Main schedule statistics.*?Total cycles:\s*(\d+)",
                      slurm_command(env, "sdiag"), re.S)
    return int(found.group(1)) if found else None


def wait_scheduler_quiet(env, quiet=QUIET, timeout=QUIET_WAIT):
    """Wait until slurmctld's main scheduler has not run for ``quiet`` s (sdiag's count of
    its cycles unchanged), so that a job submitted now is scheduled at the next pass of
    its once-a-second loop rather than batch_sched_delay later.  The seconds waited, or
    None if sdiag cannot tell or the scheduler never went quiet within ``timeout``."""
    start = time.monotonic()
    last, since = scheduler_cycles(env), start
    if last is None:
        return None
    while time.monotonic() - since < quiet:
        if time.monotonic() - start > timeout:
            return None
        time.sleep(0.05)
        now = scheduler_cycles(env)
        if now != last:
            last, since = now, time.monotonic()
    return time.monotonic() - start


def conf_value(conf, key):
    """``key``'s value in slurm.conf (None if absent or unreadable)."""
    try:
        with open(conf) as handle:
            for line in handle:
                name, _, value = line.strip().partition("=")
                if name == key:
                    return value
    except OSError:
        pass
    return None


STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})\] (.*)$")
EVENTS = (  # (slurm.conf key of the log, pattern, event): the first of each per job counts
    ("SlurmctldLogFile", re.compile(r"_slurm_rpc_submit_batch_job: JobId=(\d+)"), "submitted"),
    ("SlurmctldLogFile", re.compile(r"(?:sched: Allocate|_start_job: Started) JobId=(\d+)"),
     "allocated"),
    ("SlurmdLogFile", re.compile(r"Launching batch job (\d+)"), "launched"),
)


def job_times(conf):
    """job id -> {"submitted", "allocated", "launched": seconds}, from the daemons' logs
    (their default ISO 8601 timestamps with milliseconds); {} if they cannot be read."""
    times = {}
    for key in sorted({key for key, _, _ in EVENTS}):
        try:
            with open(conf_value(conf, key) or "", errors="replace") as handle:
                lines = handle.read().splitlines()
        except OSError:
            continue
        for line in lines:
            stamped = STAMP.match(line)
            if not stamped:
                continue
            for log_key, pattern, event in EVENTS:
                found = log_key == key and pattern.search(stamped.group(2))
                if found:
                    at = datetime.datetime.strptime(stamped.group(1),
                                                    "%Y-%m-%dT%H:%M:%S.%f").timestamp()
                    times.setdefault(found.group(1), {}).setdefault(event, at)
    return times


def scheduling_waits(times, jobs):
    """ms from sbatch's submission (as slurmctld logged it) to the job's allocation, per job
    (None where a log line is missing)."""
    out = []
    for job_id in jobs:
        job = times.get(str(job_id), {})
        out.append((job["allocated"] - job["submitted"]) * 1000.0
                   if "allocated" in job and "submitted" in job else None)
    return out


# -- the servers ----------------------------------------------------------------------


def slurm_server(fleet, name, state_dir, conf, *extra):
    """Fleet.wsgikernel()'s settings, with ``--launcher slurm`` and SLURM_CONF set."""
    os.mkdir(state_dir, 0o700)
    env = dict(os.environ, SLURM_CONF=conf)
    return fleet.start(name, [PYTHON, SERVE, "--port", "0", "--state-dir", state_dir,
                              "--no-auth", "--quiet", "--max-envs", "300", "--kill-grace", "1",
                              "--launcher", "slurm"] + list(extra), state_dir, env=env)


# -- the measurements -----------------------------------------------------------------


def create_first_result(server, env_id, body):
    """PUT ``env_id`` then execute ``x=1+1``: (PUT ms, PUT + first result ms, the env as
    the PUT answered).  A job still queued when the PUT answers (``starting``,
    ``reason: queued``) gets 503 for an execute: it is sent again every 50 ms,
    within FIRST_WAIT s, as a client would."""
    start = time.perf_counter()
    _, created = call(server.port, "PUT", "/envs/" + env_id, body, expect=(201,))
    put = time.perf_counter()
    end = time.monotonic() + FIRST_WAIT
    while True:
        status, payload = call(server.port, "POST", execute_path(env_id),
                               {"code": TRIVIAL, "wait": FIRST_WAIT}, expect=(200, 202, 503),
                               timeout=FIRST_WAIT + 30)
        if status != 503:
            break
        if time.monotonic() > end:
            raise BenchError("%s: %s still refused its first execute %d s after its PUT: %s"
                             % (server.name, env_id, FIRST_WAIT, payload[:300]))
        time.sleep(0.05)
    record = json.loads(payload)
    if status == 202:  # still queued after FIRST_WAIT s: once more, then give up
        _, payload = call(server.port, "GET", "/envs/%s/executions/%d?wait=%d"
                          % (env_id, record["execution_count"], FIRST_WAIT), expect=(200,),
                          timeout=FIRST_WAIT + 30)
        record = json.loads(payload)
    done = time.perf_counter()
    if record.get("status") != "ok":
        raise BenchError("%s: the first x=1+1 of %s ended %s/%s" % (
            server.name, env_id, record.get("status"), record.get("reason")))
    return (put - start) * 1000.0, (done - start) * 1000.0, json.loads(created)


def delete_env(server, env_id, slurm_env=None, job_id=None):
    """DELETE an env: its ms.  A Slurm env's job must then leave squeue (bounded)."""
    start = time.perf_counter()
    call(server.port, "DELETE", "/envs/" + env_id, expect=(204,))
    ms = (time.perf_counter() - start) * 1000.0
    if slurm_env is not None:
        if not job_id:
            raise BenchError("the Slurm env %s had no job id" % env_id)
        left = wait_queue_empty(slurm_env, job_id)
        if left:
            raise BenchError("the job of deleted Slurm env %s is still in squeue %.0f s after "
                             "its DELETE: %s" % (env_id, QUEUE_WAIT, left))
    return ms


def create_series(servers, bodies, n, burst, pool_size, slurm_env, deadline):
    """Creations + first execute, each env deleted right after its first result.

    ``n`` rounds: a Slurm creation once slurmctld's scheduler has been quiet for
    QUIET s (wait_scheduler_quiet()), so that the job is scheduled at the next
    pass of slurmctld's once-a-second loop; then one on ``local cold`` and one on
    ``local`` (its pool full again first); the local servers' pool refills are
    done before each Slurm creation.  Then ``burst`` Slurm creations back to
    back, each right after the previous env's job left the queue.  Every Slurm
    env's job has left squeue before the next creation.  name -> {"put",
    "first", "delete": [ms], "jobs": [job id], "pooled": n, "quiet": [s waited or None]};
    "slurm burst" holds the back-to-back ones.
    """
    names = list(servers) + ["slurm burst"]
    out = {name: {"put": [], "first": [], "delete": [], "jobs": [], "pooled": 0, "quiet": []}
           for name in names}

    def one(name, env_id):
        server = servers["slurm" if name == "slurm burst" else name]
        if name == "slurm":
            for other in servers.values():
                settle(other, pool_size)
            out[name]["quiet"].append(wait_scheduler_quiet(slurm_env))
        elif name == "local":
            wait_pool(server.state_dir, pool_size, POOL_WAIT)
        put, first, env = create_first_result(server, env_id, bodies[
            "slurm" if name == "slurm burst" else name])
        run = out[name]
        run["put"].append(put)
        run["first"].append(first)
        job = env.get("slurm") or {}
        if name.startswith("slurm"):
            run["jobs"].append(job.get("job_id"))
        elif name == "local" and from_pool(server.state_dir, env_id):
            run["pooled"] += 1
        run["delete"].append(delete_env(server, env_id,
                                        slurm_env if name.startswith("slurm") else None,
                                        job.get("job_id")))

    for i in range(n):
        for name in servers:
            deadline.check()
            one(name, "c%d" % i)
    for i in range(burst):
        deadline.check()
        one("slurm burst", "b%d" % i)
    return out


def wait_running(port, env_id, n, deadline):
    """Poll execution ``n`` until the kernel runs it (status ``running``)."""
    end = time.monotonic() + RUNNING_WAIT
    path = "/envs/%s/executions/%d" % (env_id, n)
    while True:
        deadline.check()
        _, payload = call(port, "GET", path, expect=(200, 202))
        status = json.loads(payload).get("status")
        if status == "running":
            return
        if status != "queued":
            raise BenchError("%s on port %d ended %s before it was interrupted"
                             % (path, port, status))
        if time.monotonic() > end:
            raise BenchError("%s on port %d was not running after %g s"
                             % (path, port, RUNNING_WAIT))
        time.sleep(0.002)


def interrupt_once(port, env_id, deadline):
    """A busy cell, running; then ms from POST /interrupt being sent to the long-poll of
    its record returning ``error``/``interrupted``; and the POST's own ms."""
    _, payload = call(port, "POST", execute_path(env_id), {"code": BUSY_CELL, "wait": 0},
                      expect=(202,))
    n = json.loads(payload)["execution_count"]
    wait_running(port, env_id, n, deadline)
    time.sleep(SETTLE)
    start = time.perf_counter()
    call(port, "POST", "/envs/%s/interrupt" % env_id, expect=(200,))
    posted = time.perf_counter()
    status, payload = call(port, "GET", "/envs/%s/executions/%d?wait=%d"
                           % (env_id, n, INTERRUPT_WAIT), expect=(200, 202),
                           timeout=INTERRUPT_WAIT + 30)
    done = time.perf_counter()
    record = json.loads(payload)
    if status != 200 or (record.get("status"), record.get("reason")) != ("error",
                                                                        "interrupted"):
        call(port, "POST", "/envs/%s/restart" % env_id, expect=None)  # stop the loop
        raise BenchError("the busy cell %d of %s on port %d was not interrupted within %d s: "
                         "%s/%s" % (n, env_id, port, INTERRUPT_WAIT, record.get("status"),
                                    record.get("reason")))
    return (done - start) * 1000.0, (posted - start) * 1000.0


def interrupt_series(servers, n, deadline):
    """name -> (total ms, POST ms) lists, the servers taking turns."""
    names = list(servers)
    out = {name: ([], []) for name in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            total, posted = interrupt_once(servers[name].port, "e0", deadline)
            out[name][0].append(total)
            out[name][1].append(posted)
    return out


def version(env):
    return slurm_command(env, "sinfo", "--version") or None


def span(values):
    return "%.0f-%.0f ms" % (min(values), max(values)) if values else "n/a"


# -- the section ----------------------------------------------------------------------


def slurm_section(log, fleet, state_root, pool_size, counts, notes, info):
    """Issue 17's figures: a ``--launcher slurm`` server on a dev cluster of its own against
    local servers with the same settings, measured side by side in this run.

    Skipped, with a note, when the dev cluster cannot start here.  ``fleet`` is the
    section's own; its servers are stopped here (or by the caller's ``finally``),
    the cluster always here.
    """
    folder = os.path.join(state_root, "slurm-cluster")
    os.mkdir(folder, 0o700)
    started = time.perf_counter()
    try:
        conf, why = start_cluster(folder)
        if why:
            notes.append("slurm section skipped: %s" % why)
            log("slurm section skipped: %s" % why)
            return {}
        cluster_s = time.perf_counter() - started
        try:
            return measure(log, fleet, state_root, pool_size, counts, notes, info, conf,
                           cluster_s, started)
        finally:
            fleet.stop_all()  # the servers before the cluster they use
    finally:
        stop_cluster(folder)


def measure(log, fleet, state_root, pool_size, counts, notes, info, conf, cluster_s,
            started):
    deadline = Deadline(SLURM_DEADLINE, "slurm section")
    slurm_env = dict(os.environ, SLURM_CONF=conf)
    log("slurm: --launcher slurm vs local (unix, tcp, --pool-size 0), cluster up in %.1f s"
        % cluster_s)
    pool = ("--pool-size", str(pool_size))
    servers = {
        "slurm": slurm_server(fleet, "wsgikernel --launcher slurm",
                              os.path.join(state_root, "slurm-slurm"), conf, *pool),
        "local": fleet.wsgikernel("wsgikernel (local)", os.path.join(state_root, "slurm-local"),
                                  *pool),
        "local tcp": fleet.wsgikernel("wsgikernel --kernel-transport tcp",
                                      os.path.join(state_root, "slurm-local-tcp"),
                                      "--kernel-transport", "tcp", *pool),
        "local cold": fleet.wsgikernel("wsgikernel --pool-size 0",
                                       os.path.join(state_root, "slurm-local-cold"),
                                       "--pool-size", "0"),
    }
    for server in servers.values():
        server.wait_url()
        call(server.port, "GET", "/envs")  # starts the pools filling
    bodies = {name: ({"resources": RESOURCES} if name == "slurm" else {}) for name in servers}
    slurm = servers["slurm"]
    # The env of the executes and interrupts first (the cluster's first job; it keeps
    # one of the node's CPUs for the rest of the section), and one create + delete on
    # the cold server: every server's own code paths warm.
    first_job = create_first_result(slurm, "e0", bodies["slurm"])[1]
    for name in ("local", "local tcp"):
        create_first_result(servers[name], "e0", bodies[name])
    create_first_result(servers["local cold"], "w", {})
    delete_env(servers["local cold"], "w")
    env = json.loads(call(slurm.port, "GET", "/envs/e0")[1])
    job = env.get("slurm") or {}
    if job.get("state") != "RUNNING":
        raise BenchError("the Slurm env e0 is %s with its job %r" % (env.get("state"), job))

    # (1) create to first result: slurm (paced, then back to back), local --pool-size 0
    # and local pool warm.
    creating = {name: servers[name] for name in ("slurm", "local cold", "local")}
    series = create_series(creating, bodies, counts["slurm_create"], counts["slurm_burst"],
                           pool_size, slurm_env, deadline)

    # (2) execute x=1+1 on a new connection each, the three servers taking turns.
    for server in servers.values():
        settle(server, pool_size)
    deadline.check()
    lat = interleaved({name: (servers[name].port, "POST", execute_path("e0"), {"code": TRIVIAL})
                       for name in ("slurm", "local", "local tcp")},
                      counts["slurm_execute"], counts["slurm_warmup"])

    # (3) interrupt a busy cell: slurm and local, taking turns.
    deadline.check()
    stops = interrupt_series({name: servers[name] for name in ("slurm", "local")},
                             counts["slurm_interrupt"], deadline)
    value = json.loads(call(slurm.port, "POST", execute_path("e0"),
                            {"code": "x"})[1]).get("result") or {}
    if value.get("text/plain") != "2":
        raise BenchError("the Slurm env's namespace did not survive its interrupts: x is %r"
                         % value)

    # every env deleted; squeue empty; no kernel process of the slurm state dir left
    call(slurm.port, "DELETE", "/envs/e0", expect=(204,))
    left = wait_queue_empty(slurm_env)
    for name in ("local", "local tcp"):
        _, _, stuck = delete_series(servers[name], ["e0"])
        if stuck:
            notes.append("slurm section: processes of the deleted env e0 of %s still running "
                         "2 s after its DELETE: %s" % (servers[name].name, stuck))
    end = time.monotonic() + QUEUE_WAIT
    kernels = processes_mentioning(os.path.join(slurm.state_dir, "envs"))
    while kernels and time.monotonic() < end:
        time.sleep(0.05)
        kernels = processes_mentioning(os.path.join(slurm.state_dir, "envs"))
    envs_left = {name: [e["id"] for e in json.loads(call(server.port, "GET", "/envs")[1])["envs"]]
                 for name, server in servers.items()}
    for server in servers.values():
        server.stop()
    wall = time.perf_counter() - started

    if left:
        notes.append("slurm section: squeue was not empty %.0f s after every env was deleted: "
                     "%s" % (QUEUE_WAIT, left))
    if kernels:
        notes.append("slurm section: processes of deleted Slurm envs still running %.0f s "
                     "after their DELETE: %s" % (QUEUE_WAIT, kernels[:10]))
    if any(envs_left.values()):
        notes.append("slurm section: envs left after the deletes: %s" % envs_left)
    n, nb = counts["slurm_create"], counts["slurm_burst"]
    runs = series
    times = job_times(conf)
    waits = {name: scheduling_waits(times, runs[name]["jobs"]) for name in ("slurm",
                                                                           "slurm burst")}
    paced_waits = [w for w in waits["slurm"] if w is not None]
    burst_waits = [w for w in waits["slurm burst"] if w is not None]
    own = [first - wait for first, wait in zip(runs["slurm"]["first"], waits["slurm"])
           if wait is not None]
    launches = [(job["launched"] - job["allocated"]) * 1000.0 for job in times.values()
                if "launched" in job and "allocated" in job]
    unpaced = sum(1 for waited in runs["slurm"]["quiet"] if waited is None)
    if unpaced:
        notes.append("slurm section: %d of %d paced Slurm creations did not find the scheduler "
                     "quiet for %g s (sdiag) within %g s" % (unpaced, n, QUIET, QUIET_WAIT))
    if len(paced_waits) < n or len(burst_waits) < nb:
        notes.append("slurm section: the scheduling wait of %d of %d jobs could not be read "
                     "from slurmctld's log" % (n + nb - len(paced_waits) - len(burst_waits),
                                               n + nb))
    sp50, cp50 = p50(runs["slurm"]["put"]), p50(runs["local cold"]["put"])
    sf50, cf50, wf50 = (p50(runs[name]["first"]) for name in ("slurm", "local cold", "local"))
    se50, le50, te50 = (p50(lat[name]) for name in ("slurm", "local", "local tcp"))
    se99, le99 = percentile(lat["slurm"], 99), percentile(lat["local"], 99)
    si50, li50 = p50(stops["slurm"][0]), p50(stops["local"][0])
    info["slurm"] = {
        "pids": fleet.pids, "version": version(slurm_env), "wall_s": round(wall, 1),
        "cluster_start_s": round(cluster_s, 2), "resources": RESOURCES,
        "jobs": {"paced": runs["slurm"]["jobs"], "back to back": runs["slurm burst"]["jobs"],
                 "e0": job.get("job_id"), "node": job.get("node")},
        "first_job_create_first_result_ms": round(first_job, 1),
        "scheduling_wait_ms": {name: [None if w is None else round(w, 1) for w in ws]
                               for name, ws in waits.items()},
        "allocated_to_launched_ms": [round(v, 1) for v in launches],
        "paced_quiet_waited_s": [None if w is None else round(w, 2)
                                 for w in runs["slurm"]["quiet"]],
        "create_ms": {name: {k: [round(v, 1) for v in run[k]] for k in ("put", "first")}
                      for name, run in runs.items()},
        "interrupt_post_ms": {name: [round(v, 1) for v in pair[1]]
                              for name, pair in stops.items()},
        "interrupt_ms": {name: [round(v, 1) for v in pair[0]] for name, pair in stops.items()},
        "squeue_after": left, "envs_left": envs_left}
    notes.append(
        "slurm section: %.0f s (cluster start %.1f s included, its stop not), %s, "
        "single-node dev cluster "
        "(scripts/slurm-dev-cluster.sh), each Slurm env a batch job with resources %s; "
        "squeue %s after every env was deleted"
        % (wall, cluster_s, info["slurm"]["version"] or "slurm", json.dumps(RESOURCES),
           "empty" if not left else "NOT empty"))
    notes.append(
        "slurm section: create + first result ranges: slurm paced %s, back to back %s, "
        "the cluster's first job (env e0) %.0f ms; local --pool-size 0 %s, local pool warm "
        "%s; job allocated -> slurmd launching its batch script p50 %s ms; the interrupt "
        "POST alone p50: slurm %.1f ms, local %.1f ms"
        % (span(runs["slurm"]["first"]), span(runs["slurm burst"]["first"]), first_job,
           span(runs["local cold"]["first"]), span(runs["local"]["first"]),
           "%.0f" % p50(launches) if launches else "n/a", p50(stops["slurm"][1]),
           p50(stops["local"][1])))
    figures = {
        "slurm_create_first_result_p50_ms": figure(
            sf50, cf50, label="create + first x=1+1 p50, job start included, paced (%d "
            "each; baseline: local --pool-size 0)" % n),
        "slurm_create_first_result_vs_pool_p50_ms": figure(
            sf50, wf50, label="create + first x=1+1 p50 (baseline: local, pool warm, %d/%d "
            "from the pool)" % (runs["local"]["pooled"], n)),
        "slurm_create_p50_ms": figure(
            sp50, cp50, label="create PUT->201 p50, job start included, paced (baseline: "
            "local --pool-size 0)"),
        "slurm_create_scheduling_wait_p50_ms": figure(
            p50(paced_waits), label="  of which Slurm's scheduling wait p50, paced (sbatch "
            "received -> job allocated, slurmctld's log)"),
        "slurm_create_own_p50_ms": figure(
            p50(own), cf50, label="  create + first x=1+1 minus that wait p50, paced "
            "(baseline: local --pool-size 0)"),
        "slurm_create_burst_first_result_p50_ms": figure(
            p50(runs["slurm burst"]["first"]), label="create + first x=1+1 p50, back to back "
            "(%d, each after the previous job left squeue)" % nb),
        "slurm_create_burst_scheduling_wait_p50_ms": figure(
            p50(burst_waits), label="  of which Slurm's scheduling wait p50, back to back"),
        "slurm_delete_p50_ms": figure(
            p50(runs["slurm"]["delete"]), p50(runs["local cold"]["delete"]),
            label="DELETE->204 p50 (baseline: local --pool-size 0)"),
        "slurm_execute_p50_ms": figure(
            se50, le50, label="execute x=1+1 p50, new connection (%d each, taking turns)"
            % len(lat["slurm"]), target="<= 1.2x local", met=se50 <= 1.2 * le50),
        "slurm_execute_p99_ms": figure(se99, le99, label="execute x=1+1 p99, new connection"),
        "slurm_execute_vs_tcp_p50_ms": figure(
            se50, te50, label="execute x=1+1 p50 (baseline: local --kernel-transport tcp)"),
        "slurm_local_tcp_execute_p50_ms": figure(
            te50, le50, label="execute x=1+1 p50 of local --kernel-transport tcp (in this "
            "column) vs local"),
        "slurm_interrupt_p50_ms": figure(
            si50, li50, label="interrupt: POST /interrupt -> record error/interrupted p50 "
            "(%d each, %s)" % (len(stops["slurm"][0]), BUSY_CELL), target="<= 100 ms",
            met=si50 <= 100.0),
        "slurm_interrupt_max_ms": figure(
            max(stops["slurm"][0]), max(stops["local"][0]), label="interrupt: max"),
    }
    for fig in figures.values():
        fig["section"] = ("slurm (issue 17): serve.py --launcher slurm on a single-node dev "
                          "cluster (wsgikernel column) vs the local launcher (baseline), "
                          "pool_size %d" % pool_size)
    return figures
