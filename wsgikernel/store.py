"""The environment directory on disk: its record (env.json) and its history.

Layout of ``<state_dir>/envs/<id>/``::

    env.json       the record: id, pids, socket, protocol, session, state, limits...
    history.jsonl  one execution record per line, oldest first
    kernel.log     the kernel's own diagnostics (its fds 1 and 2 belong to user cells)
    work/          the environment's default working directory

env.json is replaced atomically (write a temporary file, then rename), so a
reader in another worker process sees the old record or the new one, never half
of one (and each write is a new inode, which the manager's cache relies on).
One that cannot be used anyway (truncated by a crash, a directory, unreadable)
is reported as such by ``load_record`` (``UnusableRecord``), never taken for a
record not written yet.  History is append-only JSON lines rather than sqlite3: one
``O_APPEND`` write per record is atomic enough for a single writer (the
kernel's supervisor), a torn last line after a crash is skipped by readers, it
needs no locking across processes, and it costs nothing to import in a kernel.
An execution has up to two lines: its queued record when the supervisor
accepts it (which makes its execution count durable without rewriting
env.json), then its final record; readers take the last line of each
execution.  When the file holds more than three times ``history_limit``
lines, it is rewritten with the newest ``history_limit`` records (same rename
trick).
"""

import fcntl
import os
import tempfile
import time
from stat import S_ISREG

from . import jsonpolicy

ENV_FILE = "env.json"
HISTORY_FILE = "history.jsonl"
LOG_FILE = "kernel.log"
STATUS_FILE = "status.json"  # the live status a supervisor publishes (see StatusFile)
STATUS_MAX = 8192            # bytes of it a reader reads at most
WORK_DIR = "work"
LEDGER_DIR = "checkpoints"  # under the state dir: every kernel's (kernel/ledger.py)
LOG_TAIL_LINES = 20    # lines of kernel.log a start_failed env shows
LOG_TAIL_BYTES = 4096  # ... in at most this many bytes


def utcnow():
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-21T10:00:00.123Z (three per execute:
    time.strftime is half the cost of a datetime)."""
    now = time.time()
    return "%s.%03dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)),
                         int(now * 1000) % 1000)


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


class UnusableRecord(Exception):
    """A JSON file that is there but cannot be used.

    ``reason`` is ``unreadable_record`` (not a regular file, permission denied, an
    I/O error) or ``corrupt_record`` (not one JSON object: truncated, empty, a list);
    ``detail`` says which.
    """

    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def load_json_object(path, stat=None):
    """The JSON object in ``path``; None if there is no such file; UnusableRecord if the
    file cannot be read or does not hold one JSON object.  ``stat``: its os.stat, if
    the caller has it."""
    name = os.path.basename(path)
    try:
        if stat is None:
            stat = os.stat(path)
        if not S_ISREG(stat.st_mode):  # a directory, or a FIFO that would block open()
            raise UnusableRecord("unreadable_record", "%s is not a regular file" % name)
        with open(path, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise UnusableRecord("unreadable_record", "%s cannot be read: %s"
                             % (name, exc.strerror or exc)) from None
    try:
        value = jsonpolicy.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UnusableRecord("corrupt_record", "%s is not valid JSON (%d bytes): %s"
                             % (name, len(data), exc)) from None
    if not isinstance(value, dict):
        raise UnusableRecord("corrupt_record", "%s holds %s, not a JSON object"
                             % (name, type(value).__name__ if value is not None else "null"))
    return value


def read_json(path):
    """The JSON object in ``path``; None if the file is missing, unreadable or holds
    anything but one JSON object."""
    try:
        return load_json_object(path)
    except UnusableRecord:
        return None


def read_record(env_dir):
    """env.json of ``env_dir`` (None if missing or unusable: see load_record)."""
    return read_json(os.path.join(env_dir, ENV_FILE))


def load_record(env_dir, stat=None):
    """env.json of ``env_dir``; None if missing; UnusableRecord if it cannot be used."""
    return load_json_object(os.path.join(env_dir, ENV_FILE), stat)


class StatusFile:
    """The supervisor's live status (state, execution count, queue...), for listings.

    Rewritten in place (one ``pwrite`` at offset 0, padded with spaces to the
    longest text written so far; no rename, no fsync: this is a view, not a
    record) whenever the status changed, before the next answer leaves the
    supervisor -- so whoever is answered and then lists the envs sees at least
    that status.  A reader may catch a write half done: it then fails to parse
    and the reader asks the kernel instead (``read_status`` gives None).

    The file is also the supervisor's sign of life: each supervisor makes a
    new one (a new inode, renamed into place) and holds an exclusive ``flock``
    on it for as long as it runs; the lock goes with the process, however it
    ends (SIGKILL included), and no pid can be reused into holding it.  The
    user-code process closes its copy of the descriptor at fork.
    """

    def __init__(self, env_dir):
        path = os.path.join(env_dir, STATUS_FILE)
        fd, temp = tempfile.mkstemp(dir=env_dir, prefix=".status-")  # 0600
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new inode: nobody holds it
            os.replace(temp, path)
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        self.fd, self.size, self.last = fd, 0, None

    def publish(self, status):
        """Write ``status`` (a dict) if it changed."""
        if status == self.last:
            return
        data = jsonpolicy.encode(status)
        if len(data) > STATUS_MAX:
            return  # never: a status is a few hundred bytes
        try:
            os.pwrite(self.fd, data.ljust(self.size), 0)
        except OSError:
            return  # a full disk: listings ask the kernel instead
        self.size = max(self.size, len(data))
        self.last = status

    def close(self):
        os.close(self.fd)


def write_all(fd, pieces):
    """writev() until every byte of ``pieces`` is written (no copy of a large record)."""
    views = [memoryview(piece) for piece in pieces]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


def read_status(env_dir, parsed=None):
    """What the env's running supervisor last published; None if nothing usable is there:
    no file, a torn write, or a file whose supervisor is gone (nobody holds its lock).

    ``parsed``, a dict the caller keeps, maps the bytes read last time to what they
    parsed to, so an unchanged status is not parsed again."""
    data = read_status_bytes(env_dir)
    if data is None:
        return None
    known = parsed.get(env_dir) if parsed is not None else None
    if known is not None and known[0] == data:
        return dict(known[1])
    try:
        status = jsonpolicy.loads(data)
    except ValueError:
        return None
    if not isinstance(status, dict):
        return None
    if parsed is not None:
        parsed[env_dir] = (data, status)
    return dict(status)


def open_plain(path):
    """A descriptor of the regular file ``path`` (the caller closes it); None if it is
    missing, or anything else: a cell may have put a FIFO or a link there in an env
    dir, so this never blocks and never follows a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        if S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def read_status_bytes(env_dir):
    """status.json's bytes while a supervisor holds it (None if none does, or no file)."""
    fd = open_plain(os.path.join(env_dir, STATUS_FILE))
    if fd is None:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return None  # we got the lock: no supervisor holds it
        except BlockingIOError:
            pass
        return os.read(fd, STATUS_MAX)
    except OSError:
        return None
    finally:
        os.close(fd)


def log_tail(env_dir, lines=LOG_TAIL_LINES, limit=LOG_TAIL_BYTES):
    """The last ``lines`` lines of the env's kernel.log (at most ``limit`` bytes); "" if none."""
    try:
        with open(os.path.join(env_dir, LOG_FILE), "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except OSError:
        return ""
    if len(data) == limit and b"\n" in data:  # the first line is cut: drop it
        data = data.split(b"\n", 1)[1]
    text = data.decode("utf-8", "replace")
    kept = text.splitlines(True)[-lines:]
    return "".join(kept)


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
    """Execution records of one environment, append-only, bounded by ``limit``.

    Each execution may have two lines: ``accepted()`` writes its record as
    queued when the supervisor takes it (that line is what makes an
    execution count durable, so env.json is not rewritten per execute, and
    what a manager turns into an ``aborted`` record if the supervisor is
    lost before the end), ``append()`` writes the final record.  Readers take
    the last line of each execution_count.
    """

    def __init__(self, env_dir, limit):
        self.path = os.path.join(env_dir, HISTORY_FILE)
        self.limit = limit
        self.count = None  # lines in the file, counted lazily by the writer
        self.fd = None     # the writer keeps the file open: it appends twice per execute

    def append(self, record, data=None):
        """Write a record (final, or an ``accepted`` one; ``data``: its JSON if encoded
        already); compact when the file is long."""
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                              0o600)
        data = jsonpolicy.encode(record) if data is None else data
        try:
            if len(data) < 65536:
                os.write(self.fd, data + b"\n")  # one write: O_APPEND keeps lines whole
            else:
                write_all(self.fd, [data, b"\n"])
        except OSError:
            self.close()
            raise
        if self.count is None:
            self.count = len(self._lines())
        else:
            self.count += 1
        # Up to two lines per record: compact past three times the limit.
        if self.limit is not None and self.count > self.limit * 3 + 10:
            self.compact()

    def accepted(self, record, request_id=None):
        """The queued record of an execution just taken, tagged with the request's id."""
        self.append(dict(record, request=request_id) if request_id else record)

    def compact(self):
        records = self.read()
        folder = os.path.dirname(self.path)
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            for record in records:
                handle.write(jsonpolicy.encode(record) + b"\n")
        os.replace(temp, self.path)
        self.count = len(records)
        self.close()  # that file is gone: the next append opens the new one

    def close(self):
        """Close the writer's descriptor (a forked child must not keep it)."""
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def __del__(self):  # a manager appends through short-lived History objects
        try:
            self.close()
        except OSError:
            pass

    def _lines(self):
        """Every readable line's object, in file order (a torn or corrupt line is skipped)."""
        try:
            with open(self.path, encoding="utf-8", errors="replace") as handle:
                lines = handle.readlines()
        except FileNotFoundError:
            return []
        parsed = []
        for line in lines:
            try:
                value = jsonpolicy.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                parsed.append(value)
        return parsed

    def _latest(self):
        """{execution_count: its last line}, in order of execution_count."""
        latest = {}
        for line in self._lines():
            latest[line.get("execution_count") or 0] = line
        return {n: latest[n] for n in sorted(latest)}

    def read(self):
        """The newest ``limit`` records, oldest first, each as its last line says."""
        records = [_public(line) for line in self._latest().values()]
        if self.limit is not None and len(records) > self.limit:
            records = records[-self.limit:]
        return records

    def find(self, execution_count):
        line = self._latest().get(execution_count)
        return None if line is None else _public(line)

    def find_request(self, request_id):
        """The record (as its last line says) of the execution a request submitted."""
        counts = [line.get("execution_count") for line in self._lines()
                  if line.get("request") == request_id]
        return self.find(counts[-1]) if counts else None

    def unfinished(self):
        """Records whose last line is not final: their supervisor never finished them."""
        return [line for line in self._latest().values()
                if line.get("status") in ("queued", "running")]

    def last_count(self):
        return max((line.get("execution_count") or 0 for line in self._lines()), default=0)


def _public(line):
    """A history line as the API shows it: the request id is bookkeeping."""
    if "request" in line:
        line = dict(line)
        del line["request"]
    return line
