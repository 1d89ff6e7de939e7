"""The env's files as its supervisor keeps them: env.json, history.jsonl, kernel.log,
status.json.

The supervisor is their one writer.  ``record`` is env.json in memory; ``save``
writes it (atomically, by rename).  Execution records go to the history with
one ``O_APPEND`` write each, before anyone is told of them (a client may read
the history next).  The directory itself is held by a descriptor, not by its
path: a pooled kernel's directory is renamed when it is claimed, and only a
directory that was really removed has no links (``directory_removed``).
``status`` (store.StatusFile) is the live status for listings, published by
``Supervisor.publish_status`` before each answer.
"""

import os
import signal
import traceback

from ..wire.envelope import PROTOCOL_VERSION
from ..store import LOG_FILE, History, StatusFile, read_record, utcnow, write_record


class EnvFiles:
    def __init__(self, env_dir):
        self.env_dir = env_dir
        self.record = read_record(env_dir)
        if self.record is None:
            raise RuntimeError("no env.json in %s" % env_dir)
        self.history = History(env_dir, self.record.get("settings", {}).get("history_limit"))
        self.log = open(os.path.join(env_dir, LOG_FILE), "a", buffering=1)
        self.dir_fd = os.open(env_dir, os.O_RDONLY | os.O_DIRECTORY)
        self.status = StatusFile(env_dir)  # its descriptor follows a rename of the dir

    def moved(self, env_dir, history_limit):
        """A pooled kernel's directory became an env's (``bind``)."""
        self.env_dir = env_dir
        self.history.close()
        self.history = History(env_dir, history_limit)

    def directory_removed(self):
        try:
            return os.fstat(self.dir_fd).st_nlink == 0
        except OSError:
            return True

    def save(self, execution_count):
        """env.json as it is in memory now, with the count and this supervisor's pid."""
        self.record["execution_count"] = execution_count
        self.record["supervisor_pid"] = os.getpid()
        self.record["protocol"] = PROTOCOL_VERSION
        try:
            write_record(self.env_dir, self.record)
        except OSError:
            if not self.directory_removed():
                raise

    def record_end(self, state, reason, status, **fields):
        """How the child ended, in ``record`` (not saved): ``status`` is its (code,
        signal), None if unknown."""
        code, signum = status or (None, None)
        self.record.update(state=state, reason=reason, pid=None,
                           exit={"code": code, "signal": signal_name(signum)}, **fields)

    def accepted(self, execution):
        """Put a new execution's queued record in history; False if it is not there
        (``store_history: false``, or the write failed): then only env.json can make
        its count durable."""
        if execution.request.get("store_history", True):
            try:
                self.history.accepted(execution.snapshot(), execution.request.get("request"))
                return True
            except OSError:
                self.log_exception("could not write history")
        return False

    def persist(self, execution, record, data=None):
        """Durable before anyone is told: a client may read history next.  ``data``: the
        record's JSON, when it was encoded already."""
        if execution.n is not None and execution.request.get("store_history", True):
            try:
                self.history.append(record, data)
            except OSError:
                self.log_exception("could not write history")

    def log_exception(self, message):
        self.log.write("%s %s\n%s" % (utcnow(), message, traceback.format_exc()))

    def close_in_child(self):
        """In the forked child: the log, the history and the directory are not its own
        (user code must never be able to write into history.jsonl)."""
        self.log.close()
        self.history.close()
        self.status.close()
        os.close(self.dir_fd)


def signal_name(signum):
    if signum is None:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)
