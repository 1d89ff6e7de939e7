"""The environment directory on disk: its record (env.json) and its history.

Layout of ``<state_dir>/envs/<id>/``::

    env.json       the record: id, pids, socket, protocol, session, state, limits...
    history.jsonl  one execution record per line, oldest first
    kernel.log     the kernel's own diagnostics (its fds 1 and 2 belong to user cells)
    work/          the environment's default working directory

env.json is replaced atomically (write a temporary file, then rename), so a
reader in another worker process sees the old record or the new one, never half
of one.  History is append-only JSON lines rather than sqlite3: one
``O_APPEND`` write per record is atomic enough for a single writer (the
kernel's supervisor), a torn last line after a crash is skipped by readers, it
needs no locking across processes, and it costs nothing to import in a kernel.
When the file holds more than ``history_limit`` records by half again, it is
rewritten with the newest ``history_limit`` (same rename trick).
"""

import os
import tempfile
from datetime import datetime, timezone

from . import jsonpolicy

ENV_FILE = "env.json"
HISTORY_FILE = "history.jsonl"
LOG_FILE = "kernel.log"
WORK_DIR = "work"


def utcnow():
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-21T10:00:00.123Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def write_json_atomic(path, value):
    folder = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(jsonpolicy.encode(value))
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise


def read_json(path):
    """The JSON object in ``path``; None if the file is missing or unreadable."""
    try:
        with open(path, "rb") as handle:
            return jsonpolicy.loads(handle.read())
    except (OSError, ValueError):
        return None


def read_record(env_dir):
    return read_json(os.path.join(env_dir, ENV_FILE))


def write_record(env_dir, record):
    write_json_atomic(os.path.join(env_dir, ENV_FILE), record)


def update_record(env_dir, **changes):
    """Read-modify-write env.json; only the env's supervisor (or a manager cleaning
    up after a dead one) calls this, so there is one writer at a time."""
    record = read_record(env_dir) or {}
    record.update(changes)
    write_record(env_dir, record)
    return record


class History:
    """Append-only execution records of one environment, bounded by ``limit``."""

    def __init__(self, env_dir, limit):
        self.path = os.path.join(env_dir, HISTORY_FILE)
        self.limit = limit
        self.count = None  # records in the file, counted lazily by the writer

    def append(self, record):
        line = jsonpolicy.encode(record) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        if self.count is None:
            self.count = sum(1 for _ in self.read())
        else:
            self.count += 1
        if self.limit is not None and self.count > self.limit * 1.5 + 10:
            self.compact()

    def compact(self):
        records = self.read()[-self.limit:] if self.limit else []
        folder = os.path.dirname(self.path)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            for record in records:
                handle.write(jsonpolicy.encode(record) + b"\n")
        os.replace(temp, self.path)
        self.count = len(records)

    def read(self):
        """Every readable record, oldest first (a torn or corrupt line is skipped)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            try:
                records.append(jsonpolicy.loads(line))
            except ValueError:
                continue
        if self.limit is not None and len(records) > self.limit:
            records = records[-self.limit:]
        return records

    def find(self, execution_count):
        for record in reversed(self.read()):
            if record.get("execution_count") == execution_count:
                return record
        return None

    def last_count(self):
        records = self.read()
        return max((r.get("execution_count") or 0 for r in records), default=0)
