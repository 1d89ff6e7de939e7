"""The fork section of scripts/bench.py (issue 18): fork, checkpoint and restore.

The floor is the kernel's own ``fork()``: a plain Python process holding the same data
forks (and its child exits at once), measured here in the same run; and the same floor
for a process started as kernels are by default, with glibc's huge pages.  Then, on
one server: fork of an empty env end to end (HTTP included; each fork is deleted
again), an env holding 1 GiB of touched data (fork -- and the same fork on a server
with ``kernel_huge_pages = false`` -- checkpoint, restore: each restore SETTLE s after
the last, as a user's, and back to back), what an idle checkpoint of it adds to the
summed PSS of the env's processes, and the only alternative a user has today: pickle
the namespace to disk and load it in a fresh env.
Every loop is bounded by a count and a deadline.
"""

import json
import os
import subprocess
import sys
import time

from bench_http import PYTHON, ROOT, BenchError, Deadline, call, execute_path, figure, p50
from bench_kernels import kernel_processes, memory_kb

sys.path.insert(0, ROOT)  # the checkout's package, the one the servers run
from wsgikernel.provisioning.launcher import HUGE_PAGES  # noqa: E402

FORK_COUNTS = {  # name: (full, quick)
    "fork_empty": (20, 3),      # forks of an empty env (each deleted)
    "fork_big": (5, 2),         # forks of the 1 GiB env (each deleted)
    "fork_restore": (20, 3),    # restores of the 1 GiB env's checkpoint (each way)
    "fork_floor": (20, 3),      # bare os.fork() of a plain process holding 1 GiB
}
FORK_DEADLINE = 300.0
SETTLE = 0.5  # s before a restore: the last one's old process gone, its spare forked
BIG = 2 ** 30
TOUCH = "data = bytearray(%d)\nfor i in range(0, len(data), 4096): data[i] = 1" % BIG
FLOOR = r"""
import os, sys, time, json
data = bytearray(%d)
for i in range(0, len(data), 4096):
    data[i] = 1
times = []
for _ in range(int(sys.argv[1])):
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    times.append((time.perf_counter() - start) * 1000.0)
    os.waitpid(pid, 0)
print(json.dumps(times))
""" % BIG


def floor_ms(n, huge_pages=False):
    """Bare fork() of a plain Python process holding 1 GiB of touched data, ms each; with
    ``huge_pages``, started as kernels are by default (launcher.with_huge_pages)."""
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    if huge_pages:
        env["GLIBC_TUNABLES"] = HUGE_PAGES
    done = subprocess.run([PYTHON, "-c", FLOOR, str(n)], capture_output=True, text=True,
                          timeout=FORK_DEADLINE, env=env)
    if done.returncode:
        raise BenchError("the fork floor did not run: %s" % done.stderr[-300:])
    return json.loads(done.stdout)


def timed(port, method, path, body=None, expect=(200,)):
    start = time.perf_counter()
    status, raw = call(port, method, path, body, expect=expect, timeout=FORK_DEADLINE)
    return (time.perf_counter() - start) * 1000.0, json.loads(raw) if raw else None


def forks_ms(port, source, n, deadline):
    out = []
    for i in range(n):
        deadline.check()
        ms, env = timed(port, "POST", "/envs/%s/fork" % source, {"id": "%s-f%d" % (source, i)},
                        expect=(201,))
        out.append(ms)
        call(port, "DELETE", "/envs/" + env["id"], expect=(204,))
    return out


def small_pages_forks_ms(fleet, state_dir, n, deadline):
    """The 1 GiB fork on a server whose kernels do not ask for huge pages: what they save."""
    server = fleet.wsgikernel("wsgikernel (fork, no huge pages)", state_dir, "--pool-size",
                              "0", "--kernel-huge-pages", "false")
    try:
        server.wait_url()
        call(server.port, "PUT", "/envs/big", expect=(201,))
        call(server.port, "POST", execute_path("big"), {"code": TOUCH}, timeout=FORK_DEADLINE)
        return forks_ms(server.port, "big", n, deadline)
    finally:
        server.stop()  # its 1 GiB freed before the checkpoint's memory is read


def pss_kb(state_dir, env_dir, server_pids):
    """Summed PSS (kB) of the kernel-side processes of one env."""
    total = 0
    for pid, where in kernel_processes(state_dir, server_pids).items():
        if where == env_dir:
            try:
                total += memory_kb(pid)[1]
            except (OSError, BenchError):
                pass
    return total


def fork_section(log, fleet, state_root, pool_size, counts, notes, info):
    deadline = Deadline(FORK_DEADLINE, "the fork section")
    figures = {}
    floor = floor_ms(counts["fork_floor"])
    huge_floor = floor_ms(counts["fork_floor"], huge_pages=True)
    state_dir = os.path.join(state_root, "fork")
    server = fleet.wsgikernel("wsgikernel (fork)", state_dir, "--pool-size", "0")
    server.wait_url()
    port = server.port
    log("fork: empty env")
    call(port, "PUT", "/envs/empty", expect=(201,))
    call(port, "POST", execute_path("empty"), {"code": "x = 1"})
    empty = forks_ms(port, "empty", counts["fork_empty"], deadline)
    log("fork: an env holding 1 GiB")
    call(port, "PUT", "/envs/big", expect=(201,))
    call(port, "POST", execute_path("big"), {"code": TOUCH}, timeout=FORK_DEADLINE)
    big = forks_ms(port, "big", counts["fork_big"], deadline)
    small_pages = small_pages_forks_ms(fleet, state_dir + "-4k", counts["fork_big"], deadline)
    env_dir = os.path.join(state_dir, "envs", "big")
    before = pss_kb(state_dir, env_dir, fleet.pids)
    take_ms, _ = timed(port, "POST", "/envs/big/checkpoints", {"name": "c"}, expect=(201,))
    time.sleep(0.5)  # let the copy settle (its own pages: stack, a few heap pages)
    after = pss_kb(state_dir, env_dir, fleet.pids)
    restores, in_a_row = [], []
    for _ in range(counts["fork_restore"]):
        deadline.check()
        time.sleep(SETTLE)  # as a user restores: not in the wake of the last restore
        restores.append(timed(port, "POST", "/envs/big/checkpoints/c/restore")[0])
    for _ in range(counts["fork_restore"]):
        deadline.check()
        in_a_row.append(timed(port, "POST", "/envs/big/checkpoints/c/restore")[0])
    log("fork: the alternative (pickle to disk, load in a fresh env)")
    path = os.path.join(state_root, "namespace.pickle")
    start = time.perf_counter()
    call(port, "POST", execute_path("big"), {"code": "import pickle\nwith open(%r, 'wb') as f:"
                                             " pickle.dump(data, f, protocol=5)" % path},
         timeout=FORK_DEADLINE)
    call(port, "PUT", "/envs/loaded", expect=(201,))
    call(port, "POST", execute_path("loaded"), {"code": "import pickle\nwith open(%r, 'rb') "
                                                "as f: data = pickle.load(f)" % path},
         timeout=FORK_DEADLINE)
    pickled = (time.perf_counter() - start) * 1000.0
    os.unlink(path)
    base = p50(floor)
    figures.update({
        "fork_floor_1g": figure(base, label="floor: bare os.fork() holding 1 GiB (p50)"),
        "fork_floor_1g_huge": figure(p50(huge_floor), base, label="floor with huge pages "
                                     "(%s, as kernels start by default)" % HUGE_PAGES),
        "fork_1g": figure(p50(big), base, target="<= floor + 5 ms",
                          met=p50(big) <= base + 5,
                          label="fork of an env holding 1 GiB, HTTP included (p50)",
                          note="%.1f ms above the huge-page floor" % (
                              p50(big) - p50(huge_floor))),
        "fork_1g_small_pages": figure(p50(small_pages), p50(big), label="the same fork, "
                                      "kernel_huge_pages = false (vs on)"),
        "fork_empty": figure(p50(empty), target="<= 10 ms", met=p50(empty) <= 10,
                             label="fork of an empty env, HTTP included (p50)"),
        "checkpoint_1g": figure(take_ms, base, label="checkpoint of the 1 GiB env (one)"),
        "restore_1g": figure(p50(restores), target="<= 10 ms", met=p50(restores) <= 10,
                             label="restore of the 1 GiB env's checkpoint (p50)"),
        "restore_1g_in_a_row": figure(p50(in_a_row), p50(restores),
                                      label="restores of it back to back (p50)",
                                      note="each in the wake of the last: its old process's "
                                      "teardown and the spare's fork"),
        "checkpoint_pss": figure((after - before) / 1024.0, before / 1024.0, unit="MB",
                                 target="<= 5% of the env", met=(after - before) <= before * 0.05,
                                 label="PSS an idle checkpoint adds (env's processes)"),
        "pickle_alternative": figure(pickled, p50(big), label="pickle to disk + load in a "
                                     "fresh env (vs fork)",
                                     note="speed-up of fork: %.0fx" % (pickled / p50(big))),
    })
    info["fork"] = {"floor_ms": floor, "huge_floor_ms": huge_floor, "empty_ms": empty,
                    "big_ms": big, "small_pages_ms": small_pages,
                    "restore_ms": restores, "restore_in_a_row_ms": in_a_row,
                    "pss_kb": [before, after]}
    return figures
