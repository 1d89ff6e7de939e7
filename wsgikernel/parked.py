"""Executions parked for a kernel that has not started yet: a Slurm job still queued.

A cell cannot be handed to a kernel that does not exist yet, and an HTTP request
must not hang for the hours a job may be queued, so the web worker parks it in the
env directory (on the file system the nodes share): ``parked/<n>.json`` holds the
request with the execution count reserved for it, and history holds its queued
record, which is what ``GET .../executions/<n>`` and listings show meanwhile.  The
kernel takes every parked cell, oldest first, when it becomes ready, before it says
so in env.json; from then on cells go to the kernel as usual.

One lock (``flock`` of ``parked.lock``) orders the two sides: a worker parks only
while env.json says ``starting`` with the lock held, and the kernel takes the parked
cells and writes ``idle`` with the lock held, so a cell is either taken by the kernel
or sent to it live -- never lost, never run twice.  A worker that finds the start
abandoned (the job ended while queued) takes them too, to end them.

Each parked file names the kernel it was sent to (``kernel_id``): a kernel takes its
own and ends the others' (sent to a start that never happened); a worker ending the
cells of a start that failed ends only that start's.

Risks: ``flock`` on NFS is emulated by Linux with POSIX locks (lockd / NFSv4 locks
must work there, as they must for most cluster software); counts are reserved from
history and the parked files, so a write that fails fails the park (503), never a
count given twice.
"""

import contextlib
import fcntl
import os

from . import jsonpolicy
from .store import read_record, utcnow, write_json_atomic

PARKED_DIR = "parked"
LOCK_FILE = "parked.lock"


@contextlib.contextmanager
def locked(env_dir):
    """Hold the env's parking lock (blocking: each holder does a few small file writes)."""
    fd = os.open(os.path.join(env_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def queued_record(env_id, session, n, request):
    """The record of a cell that waits, in the shape a kernel gives it (kernel/records.py)."""
    return {"env": env_id, "session": session, "execution_count": n,
            "code": request.get("code", ""), "status": "queued", "reason": None,
            "stdout": "", "stderr": "", "result": None, "outputs": [], "error": None,
            "user_expressions": {}, "truncated": False, "queued_at": utcnow(),
            "started": None, "finished": None, "duration": None}


def park(env_dir, history, request, request_id, kernel_id):
    """Reserve the next execution count for ``request`` and park it for kernel
    ``kernel_id``; its queued record.

    None if env.json no longer says that kernel is ``starting`` (with the lock held): it
    started (or the env ended) meanwhile, and the caller sends the cell the usual way.
    The file goes first, then history's line: a worker lost in between leaves a cell
    the kernel still runs, never a queued line nothing will end."""
    with locked(env_dir):
        record = read_record(env_dir)
        if (record is None or record.get("state") != "starting"
                or record.get("kernel_id") != kernel_id):
            return None
        folder = os.path.join(env_dir, PARKED_DIR)
        os.makedirs(folder, mode=0o700, exist_ok=True)
        n = max([record.get("execution_count") or 0, history.last_count()]
                + [count for count, _ in _files(folder)]) + 1
        queued = queued_record(record.get("id"), int(record.get("session") or 1), n, request)
        path = os.path.join(folder, "%d.json" % n)
        write_json_atomic(path, {"request": dict(request, request=request_id),
                                 "record": queued, "kernel_id": kernel_id})
        try:
            history.accepted(queued, request_id)  # what readers find meanwhile
        except OSError:
            os.unlink(path)
            raise
    return queued


def take(env_dir, kernel_id=None):
    """[(request, queued record, kernel id)] of the cells parked (for ``kernel_id``; None:
    for any), oldest first, removed from the directory; call it with the lock held."""
    taken = []
    for _, path in sorted(_files(os.path.join(env_dir, PARKED_DIR))):
        try:
            with open(path, "rb") as handle:
                parked = jsonpolicy.loads(handle.read())
        except (OSError, ValueError):
            continue  # unreadable (a disk error): left for whoever can read it
        if not isinstance(parked, dict) or not isinstance(parked.get("record"), dict):
            continue
        if kernel_id is not None and parked.get("kernel_id") != kernel_id:
            continue
        try:
            os.unlink(path)
        except OSError:
            continue
        taken.append((parked.get("request") or {}, parked["record"], parked.get("kernel_id")))
    return taken


def unpark(env_dir, n, removed):
    """Remove parked cell ``n`` (a cancel) and call ``removed()`` with the lock held (it
    writes the cancelled record); False if it is not parked (taken, or never parked)."""
    with locked(env_dir):
        if not unpark_locked(env_dir, n):
            return False
        removed()
    return True


def unpark_locked(env_dir, n):
    """Remove parked cell ``n`` with the lock held; False if it is not parked."""
    try:
        os.unlink(os.path.join(env_dir, PARKED_DIR, "%d.json" % n))
    except OSError:
        return False
    return True


def count(env_dir):
    """How many cells are parked (the env object's ``queued`` while its job waits)."""
    return len(_files(os.path.join(env_dir, PARKED_DIR)))


def _files(folder):
    """[(n, path)] of the parked files in ``folder`` (none if it does not exist)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = []
    for name in names:
        stem, _, ext = name.partition(".")
        if ext == "json" and stem.isdigit():
            found.append((int(stem), os.path.join(folder, name)))
    return found
