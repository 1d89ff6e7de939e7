"""One scrape of /metrics: every count, every gauge read now, in the text format.

Counts are the same whichever worker answers: the web workers' count files (files.py)
summed, plus what each env's kernel counted, from its kernel.counts (kernels.py).
Gauges are read at the scrape from the state dir, which every worker shares: the
envs by state and their queues (the listing's own reads), the pool's kernels, and
the memory of every kernel-side process of this host (one /proc pass; kernels on
Slurm nodes are not in it).  The ``process_*`` metrics are the answering process's.

Risks: the memory walk reads each kernel process's smaps_rollup, whose cost grows with
the process's mapped memory (about 0.5 ms for a small kernel): it runs off the scrape's
path (KernelMemory), so the figure may be one scrape interval old.
"""

import logging
import os
import platform
import resource
import threading
import time

from .. import __version__
from ..provisioning import for_record, forkserver
from ..provisioning.processes import tree_memory
from ..store import read_record
from . import files, kernels
from .exposition import CONTENT_TYPE, render

ENV_STATES = ("starting", "idle", "busy", "stopped", "dead")
POOL_STATES = ("starting", "ready", "dead")

__all__ = ["CONTENT_TYPE", "Scraper"]


class Scraper:
    """The scrapes of one app: ``scrape()`` is the exposition (bytes) of everything its
    manager's state dir counted and holds, with this process's ``counts``."""

    def __init__(self, manager, counts):
        self.manager, self.counts = manager, counts
        self.memory = KernelMemory()
        self.seen = {}  # env dir -> (its kernel.counts' bytes, their samples)

    def scrape(self):
        manager = self.manager
        # Under the lock, no env's counts move (retire) and only files are read: the
        # listing, which may ask kernels, comes after.
        with files.locked(self.counts.directory):
            samples = files.collect(self.counts)
            ids = manager.ids()
            for env_id in ids:
                files.add_into(samples, kernels.env_samples(manager.env_dir(env_id),
                                                            self.seen))
        if len(self.seen) > 2 * len(ids) + 16:  # deleted envs' entries
            self.seen.clear()
        envs = manager.list()
        by_state = dict.fromkeys(ENV_STATES, 0)
        for env in envs:
            by_state[env["state"]] = by_state.get(env["state"], 0) + 1
        gauge(samples, "wsgikernel_envs", "state", by_state)
        gauge(samples, "wsgikernel_queue_depth", None,
              sum(env.get("queued") or 0 for env in envs))
        pool = dict.fromkeys(POOL_STATES, 0)
        for name in manager.pool.names():
            record = read_record(os.path.join(manager.pool.dir, name)) or {}
            state = {"idle": "ready", "starting": "starting"}.get(record.get("state"), "dead")
            pool[state] += 1
        gauge(samples, "wsgikernel_pool_kernels", "state", pool)
        gauge(samples, "wsgikernel_kernel_memory_bytes", None,
              self.memory.read(manager, envs))
        samples.update(process_samples())
        samples[("wsgikernel_build_info", (("version", __version__),
                                           ("python", platform.python_version())))] = 1
        return render(samples)


class KernelMemory:
    """The kernel-side processes' summed PSS, measured off the scrape's path.

    Reading smaps_rollup costs about half a millisecond per kernel process (two per
    env, more with checkpoints), so at 200 envs a walk takes longer than a scrape may.
    A scrape answers the last walk's figure and, if it is older than REFRESH seconds,
    starts the next walk on a thread of its own: the figure is at most one scrape
    interval old.  The first scrape of a process waits for its walk (the figure is
    never missing), and so does any scrape after a walk that found no kernel (it costs
    nothing, and the first kernels show at once)."""

    REFRESH = 5.0

    def __init__(self):
        self.value, self.measured, self.lock = None, 0.0, threading.Lock()
        self.roots = 0  # kernel processes the last walk started from

    def read(self, manager, envs):
        if self.value is None or not self.roots:
            self.measure(manager, envs)
        elif time.monotonic() - self.measured > self.REFRESH and self.lock.acquire(False):
            self.measured = time.monotonic()  # one walk at a time, whoever scrapes
            threading.Thread(target=self.measure, args=(manager, envs, True),
                             name="wsgikernel-memory", daemon=True).start()
        return self.value

    def measure(self, manager, envs, locked=False):
        try:
            roots = kernel_roots(manager, envs)
            self.value, self.roots = tree_memory(roots), len(roots)
        except Exception:  # never a failed scrape: the last figure stands
            logging.getLogger("wsgikernel").exception("could not measure kernel memory")
            self.value = self.value or 0
        finally:
            self.measured = time.monotonic()
            if locked:
                self.lock.release()


def kernel_roots(manager, envs):
    """The pids whose process trees are kernel-side on this host: every running env's
    supervisor, the pool's, the forkservers."""
    records = [read_record(manager.env_dir(env["id"])) for env in envs
               if env["state"] not in ("stopped", "dead")]
    records += [read_record(os.path.join(manager.pool.dir, name))
                for name in manager.pool.names()]
    roots = [pid for record in records if record for pid in for_record(record).local_pids()]
    return roots + forkserver.pids(manager.config.state_dir)


def gauge(samples, name, label, values):
    if label is None:
        samples[(name, ())] = values
        return
    for value, count in values.items():
        samples[(name, ((label, value),))] = count


def process_samples():
    """The serving process's own: CPU, memory, descriptors, start time (from /proc)."""
    found = {}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    found[("process_cpu_seconds_total", ())] = usage.ru_utime + usage.ru_stime
    try:
        with open("/proc/self/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        found[("process_virtual_memory_bytes", ())] = int(fields[20])
        found[("process_resident_memory_bytes", ())] = int(fields[21]) * resource.getpagesize()
        found[("process_start_time_seconds", ())] = boot_time() + int(fields[19]) / ticks
        found[("process_open_fds", ())] = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY:
        found[("process_max_fds", ())] = soft
    return found


_boot_time = None


def boot_time():
    global _boot_time
    if _boot_time is None:
        try:
            with open("/proc/stat", "rb") as handle:
                for line in handle:
                    if line.startswith(b"btime"):
                        _boot_time = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            _boot_time = time.time() - time.monotonic()
    return _boot_time
