"""The server's bound on checkpoints: every kernel's, counted in one place.

Each env bounds its own checkpoints (``max_checkpoints``, kernel/checkpoints.py);
``max_server_checkpoints`` bounds all of them together, the oldest going first
whichever env holds it.  Checkpoints live in the kernels' supervisors, one process
per env, with no server process in between (the web tier may be 3 gunicorn
workers, or restarting), so the count is kept where they all can see it: one
small file per checkpoint in ``<state_dir>/checkpoints/``, its name the time it
was taken (so a listing sorted by name is oldest first), the supervisor's pid and
host, its content the env and checkpoint names.  A kernel on another host (a
Slurm node sharing the state dir) is counted, but only a supervisor on its own
host checks or claims its entries: a pid means nothing elsewhere.

A supervisor that takes a checkpoint past the bound evicts the oldest: its own
it drops; another env's it claims by unlinking the entry (only one evictor wins
an unlink) and wakes its owner with SIGUSR1, which then drops each checkpoint
whose entry is gone (``missing``).  Entries of a supervisor that died without
cleaning up (SIGKILL) are found by their pid and removed before anything is
evicted: a crash never costs another env a checkpoint.

Risks: a pid reused by an unrelated process between the check and the signal is
only possible for a pid that ran one of our kernels a moment earlier; SIGUSR1 is
sent only to a process whose command line names wsgikernel.
"""

import itertools
import json
import os
import re
import signal
import socket
import time

WAKE_SIGNAL = signal.SIGUSR1
HOST = socket.gethostname()
ENTRY = re.compile(r"[0-9]{19}_[0-9]+_[0-9]+_.")  # what enter() names (time, pid, seq, host)


class Ledger:
    def __init__(self, directory, limit):
        self.directory = directory  # None: no server bound (a kernel run by hand)
        self.limit = limit
        self.seq = itertools.count(1)

    def enter(self, env_id, name):
        """Record a checkpoint just taken; its entry's path (None without a ledger)."""
        if not self.directory:
            return None
        entry = os.path.join(self.directory, "%019d_%d_%d_%s" % (
            time.time_ns(), os.getpid(), next(self.seq), HOST))
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            with open(entry, "x") as handle:
                json.dump({"env": env_id, "name": name}, handle)
        except OSError:
            return None  # a full disk: the env's own bound still holds
        return entry

    def leave(self, entry):
        if entry:
            try:
                os.unlink(entry)
            except OSError:
                pass  # evicted (claimed by another supervisor), or never written

    def over(self, own_entries):
        """Entries past the server's bound, oldest first, after the stale ones are
        removed; another supervisor's are claimed (unlinked) and its owner woken."""
        if not self.directory or not self.limit:
            return []
        names = self.names()
        if len(names) <= self.limit:
            return []
        mine, me = set(own_entries), os.getpid()
        live = []
        for name in names:
            path = os.path.join(self.directory, name)
            pid, host = owner_of(name)
            if path in mine or host != HOST or (pid != me and is_kernel(pid)):
                live.append((path, pid, host))
            else:  # a supervisor that is gone (or a stray file): not a checkpoint
                self.leave(path)
        evicted = []
        for path, pid, host in live[:max(0, len(live) - self.limit)]:
            if path in mine:
                evicted.append(path)
            elif host == HOST and claim(path):
                try:
                    os.kill(pid, WAKE_SIGNAL)
                except OSError:
                    pass
        return evicted

    def names(self):
        try:
            return sorted(name for name in os.listdir(self.directory) if ENTRY.match(name))
        except OSError:
            return []


def missing(entries):
    """Of ``entries`` (paths), those whose file is gone: evicted by another supervisor."""
    return [entry for entry in entries if entry and not os.path.exists(entry)]


def owner_of(name):
    """(pid, host) of the supervisor an entry's name says holds it."""
    parts = name.split("_", 3)
    try:
        return int(parts[1]), parts[3]
    except (IndexError, ValueError):
        return 0, HOST


def claim(path):
    """Remove another supervisor's entry; True if we did (one evictor wins)."""
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def is_kernel(pid):
    """``pid`` runs one of our kernels (its command line names wsgikernel)."""
    if pid <= 0:
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return b"wsgikernel" in handle.read()
    except OSError:
        return False
