"""The checkpoints of one env, as its supervisor keeps them, and how one is resumed.

A checkpoint is a parked copy of the user-code process (kernel/checkpoint.py), a
child of the supervisor (re-parented to it, a subreaper) that the sweeps of a
stopped tree spare (``pids``), with its spare in its process group.  Each is held by
one socket: closing it ends the copy (it exits at end of file, its spare with it),
and so does the supervisor's own end, however it ends -- no checkpoint outlives its
env.

``resume`` hands a checkpoint the supervisor's new control socket and fd 1/2
pipes; the checkpoint becomes the env's user-code process (``child.Child``) and its
spare parks on in its place (its pid, in the answer, is the checkpoint's from then
on).  The memory a checkpoint pins is the PSS of both.

Bounds: ``limit`` checkpoints per env (``max_checkpoints``), oldest dropped first;
of them, the automatic ones taken before each cell (``auto``) are the last
``auto_limit`` (``auto_checkpoints``); and the server's, all envs' together
(``max_server_checkpoints``, kept in the ledger: kernel/ledger.py).
"""

import collections
import json
import os
import signal
import socket

from ..store import utcnow
from .child import Child, children_of
from .ledger import Ledger, missing

RESUME_TIMEOUT = 10.0  # seconds a checkpoint may take to become the live process
AUTO_PREFIX = "auto-"  # auto-N: the state before cell N (after cell N - 1)


class Checkpoint:
    def __init__(self, name, pid, sock, execution_count, session, auto):
        self.name = name
        self.pid = pid
        self.sock = sock
        self.execution_count = execution_count  # the last cell it has run
        self.session = session
        self.auto = auto
        self.created = utcnow()
        self.entry = None  # its file in the server's ledger

    def describe(self, memory=False):
        found = {"name": self.name, "execution_count": self.execution_count,
                 "session": self.session, "created": self.created, "auto": self.auto}
        if memory:
            found["memory"] = self.memory()
        return found

    def ask_spare(self):
        """Have it fork its spare now (kernel/checkpoint.py): once the answer that made
        it is out, so the fork's CPU is not taken from that answer."""
        try:
            self.sock.send(b"spare")
        except OSError:  # it ended: dropped when it is reaped
            pass

    def memory(self):
        """Summed PSS of the checkpoint's process and its spare (bytes; None if unknown;
        a spare that died and is not reaped yet counts nothing)."""
        own = pss(self.pid)
        if own is None:
            return None
        return own + sum(pss(pid) or 0 for pid in children_of(self.pid))


class Checkpoints:
    def __init__(self, limit, auto_limit):
        self.limit = limit
        self.auto_limit = auto_limit
        self.by_name = collections.OrderedDict()  # oldest first
        self.ledger = Ledger(None, 0)
        self.env_id = None
        self.forks = set()  # supervisors of envs forked from ours: spared too, never ours

    def __len__(self):
        return len(self.by_name)

    def get(self, name):
        return self.by_name.get(name)

    def pids(self):
        """What a sweep of the stopped tree spares: checkpoints and forked envs."""
        return {checkpoint.pid for checkpoint in self.by_name.values()} | self.forks

    def listing(self, memory=True):
        return [checkpoint.describe(memory) for checkpoint in self.by_name.values()]

    def memory(self):
        """Summed PSS of the checkpoints' processes (bytes; None if unknown)."""
        sizes = [checkpoint.memory() for checkpoint in self.by_name.values()]
        return None if None in sizes else sum(sizes)

    def add(self, checkpoint):
        """Keep ``checkpoint`` (in place of one of its name); the oldest automatic and then
        the oldest of all go past the bounds."""
        self.drop(checkpoint.name)
        self.by_name[checkpoint.name] = checkpoint
        autos = [c.name for c in self.by_name.values() if c.auto]
        for name in autos[:max(0, len(autos) - self.auto_limit)]:
            self.drop(name)
        while len(self.by_name) > max(self.limit, 1):
            self.drop(next(iter(self.by_name)))
        if checkpoint.name in self.by_name:
            checkpoint.entry = self.ledger.enter(self.env_id, checkpoint.name)
        evicted = set(self.ledger.over([c.entry for c in self.by_name.values()]))
        for name in [c.name for c in self.by_name.values() if c.entry in evicted]:
            self.drop(name)

    def evicted(self):
        """Drop the checkpoints another supervisor evicted (their entries are gone: it
        woke us with ledger.WAKE_SIGNAL); their names."""
        gone = set(missing([c.entry for c in self.by_name.values()]))
        names = [c.name for c in self.by_name.values() if c.entry in gone]
        for name in names:
            self.drop(name)
        return names

    def latest_auto(self):
        autos = [c for c in self.by_name.values() if c.auto]
        return autos[-1] if autos else None

    def drop(self, name):
        """End a checkpoint (its copy exits at end of file; SIGKILL to its group, its
        spare's too, makes sure)."""
        checkpoint = self.by_name.pop(name, None)
        if checkpoint is not None:
            self.ledger.leave(checkpoint.entry)
            checkpoint.sock.close()
            try:  # it leads its group (kernel/checkpoint.py): the spare is in it
                os.killpg(checkpoint.pid, signal.SIGKILL)
            except OSError:
                pass
        return checkpoint

    def drop_all(self):
        for name in list(self.by_name):
            self.drop(name)

    def close_in_child(self):
        """In a child the supervisor forks: our ends of the checkpoints' sockets are not
        its to keep (a checkpoint must see end of file when we are gone)."""
        for checkpoint in self.by_name.values():
            checkpoint.sock.close()

    def reaped(self, pid):
        """A child that was not the user-code process ended: forget it if a checkpoint."""
        self.forks.discard(pid)
        for checkpoint in list(self.by_name.values()):
            if checkpoint.pid == pid:  # reaped: never signal its pid again
                self.forget(checkpoint)

    def forget(self, checkpoint):
        """No longer keep ``checkpoint``, without signalling its pid (gone, or live now)."""
        if self.by_name.get(checkpoint.name) is checkpoint:
            self.by_name.pop(checkpoint.name)
            self.ledger.leave(checkpoint.entry)
        checkpoint.sock.close()

    def resume(self, checkpoint):
        """A new live user-code process forked from ``checkpoint``, as a Child; OSError if
        the checkpoint cannot (it died)."""
        parent_sock, child_sock = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            checkpoint.sock.settimeout(RESUME_TIMEOUT)
            socket.send_fds(checkpoint.sock, [b"resume"], [child_sock.fileno(), out_w, err_w])
            answer = json.loads(checkpoint.sock.recv(256).decode() or "{}")
            pid, parked = answer.get("pid") or 0, answer.get("parked") or 0
        except (OSError, ValueError, AttributeError) as exc:
            for fd in (out_r, err_r):
                os.close(fd)
            parent_sock.close()
            raise OSError("checkpoint %r could not resume: %s" % (checkpoint.name, exc))
        finally:
            child_sock.close()
            os.close(out_w)
            os.close(err_w)
        if not pid:
            parent_sock.close()
            os.close(out_r)
            os.close(err_r)
            raise OSError("checkpoint %r could not fork a new process" % checkpoint.name)
        if parked:
            checkpoint.pid = parked  # its spare parks on; the checkpoint itself is live now
        else:  # it could fork nothing to park on: used up, its process is the live one
            self.forget(checkpoint)
        return Child.adopted(pid, parent_sock, out_r, err_r)


def pss(pid):
    """Proportional set size of process ``pid`` in bytes (/proc/PID/smaps_rollup)."""
    try:
        with open("/proc/%d/smaps_rollup" % pid, "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
