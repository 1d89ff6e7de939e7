"""Each web-worker process's counts for /metrics, in a file of the state dir any worker
reads: what prometheus_client's multiprocess mode does, with the standard library.

``<state_dir>/metrics/<pid>-<random>.counts`` holds one process's counters and
histogram parts, each a float64 at a fixed offset of an mmap'd file, so counting is
a memory write under a lock (no system call, no encoding) and a scrape in any worker
sums every file.  The file's ``flock`` is its process's sign of life, as status.json's
is a supervisor's: a scrape folds the files nobody holds any more (a recycled
gunicorn worker, a restarted server) into ``archive.json`` and removes them, so the
files stay as many as the live processes and no count is lost.

Format: a header (b"WKM1", uint32 bytes used, 8 bytes in all), then entries: uint32
length, the key (UTF-8 JSON ``[name, [[label, value], ...]]``), padding to 8 bytes,
float64.  A reader counts an entry only once the header covers it; the header and
each float64 are 8-aligned and written by one 8-byte copy, which another process
never sees half done on the platforms this runs on.

Risks: a state dir that cannot be written (read-only, full: the file's blocks are
allocated before it is mapped) makes the process count in memory only: its own
scrapes see its counts, other workers' do not (/readyz says the state dir is not
writable).  On a state dir shared by several hosts each host's
workers are summed alike; flock across NFS is what Slurm deployments already rely on.
"""

import contextlib
import fcntl
import json
import mmap
import os
import secrets
import struct
import threading

MAGIC = b"WKM1"
HEADER = struct.Struct("<4sI")
LENGTH = struct.Struct("<I")
VALUE = struct.Struct("<d")
INITIAL_SIZE = 64 * 1024
SUFFIX = ".counts"
ARCHIVE = "archive.json"


def encode_key(key):
    name, labels = key
    return json.dumps([name, [list(pair) for pair in labels]], separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogatepass")


def decode_key(data):
    name, labels = json.loads(data.decode("utf-8", "surrogatepass"))
    if not isinstance(name, str):
        raise TypeError("not a metric name")
    return name, tuple((str(k), str(v)) for k, v in labels)


class CountFile:
    """This process's counts: ``add((name, labels), amount)``; ``labels`` is a tuple of
    (label, value) pairs in a fixed order."""

    def __init__(self, directory):
        self.directory = directory
        self.path = None  # None: counted in memory only (see the module's risks)
        self._lock = threading.Lock()
        self._pid = None
        if hasattr(os, "register_at_fork"):  # a child counts in a file of its own
            os.register_at_fork(after_in_child=self._forked)

    def _forked(self):
        self._lock = threading.Lock()  # it may have been held by another thread
        self._pid = self.path = None

    def add(self, key, amount=1.0):
        self.add_all(((key, amount),))

    def add_all(self, pairs):
        """``add(key, amount)`` for each (key, amount) of ``pairs``, under one lock (a
        request's counts are several: one call each cost a request ~5 us more)."""
        with self._lock:
            if self._pid != os.getpid():  # lazily, per process: safe in a preforking master
                self._open()
            for key, amount in pairs:
                offset = self._offsets.get(key)
                if offset is None:
                    offset = self._append(key)
                self._values[offset >> 3] += amount  # one 8-byte store

    def samples(self):
        """{key: value} of this process, from memory."""
        with self._lock:
            if self._pid != os.getpid():
                return {}
            return {key: self._values[offset >> 3]
                    for key, offset in self._offsets.items()}

    def _put(self, offset, data):
        # One 8-byte copy: struct.pack_into zeroes the bytes before it writes them, and
        # a reader catching that would see a counter at 0 (a reset, to Prometheus).
        self._map[offset:offset + len(data)] = data

    def _open(self):
        self._pid, self._offsets, self.path, self._fd = os.getpid(), {}, None, None
        try:
            self._map, self.path, self._fd = self._create()
        except OSError:  # read-only, full, not a directory: counted in memory
            self._map = mmap.mmap(-1, INITIAL_SIZE)
            self._put(0, HEADER.pack(MAGIC, HEADER.size))
        self._values = memoryview(self._map).cast("d")  # offsets are 8-aligned

    def _create(self):
        """A new count file, locked, sized and with its header before it takes its name
        (a scrape must never take it for a file whose process is gone)."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        name = "%d-%s" % (self._pid, secrets.token_hex(4))
        temp = os.path.join(self.directory, "." + name)
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # new: nobody holds it
            allocate(fd, INITIAL_SIZE)
            mapped = mmap.mmap(fd, INITIAL_SIZE)
            mapped[:HEADER.size] = HEADER.pack(MAGIC, HEADER.size)
            path = os.path.join(self.directory, name + SUFFIX)
            os.rename(temp, path)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(temp)
            except OSError:
                pass
            raise
        return mapped, path, fd

    def _append(self, key):
        data = encode_key(key)
        used = HEADER.unpack_from(self._map, 0)[1]
        value_at = aligned(used + LENGTH.size + len(data))
        end = value_at + VALUE.size
        if end > len(self._map):
            self._grow(end)
        self._put(used, LENGTH.pack(len(data)) + data)
        self._put(value_at, VALUE.pack(0.0))
        self._put(0, HEADER.pack(MAGIC, end))  # last: the entry is whole now
        self._offsets[key] = value_at
        return value_at

    def _grow(self, needed):
        size = len(self._map)
        while size < needed:
            size *= 2
        grown = None
        if self._fd is not None:
            try:
                allocate(self._fd, size)
                grown = mmap.mmap(self._fd, size)
            except OSError:  # the disk is full: go on in memory (the file keeps its counts)
                os.close(self._fd)
                self._fd = self.path = None
        if grown is None:
            grown = mmap.mmap(-1, size)
        grown[:len(self._map)] = self._map[:]
        self._values.release()
        self._map.close()
        self._map, self._values = grown, memoryview(grown).cast("d")


def allocate(fd, size):
    """Give the file ``size`` bytes of disk now: a write into the mapping of a sparse
    file on a full disk is a SIGBUS, not an error."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fd, 0, size)
    else:
        os.ftruncate(fd, size)


def aligned(offset):
    return (offset + 7) & ~7


def parse(data):
    """{key: value} of a count file's bytes (whatever a torn or foreign file holds: {})."""
    found = {}
    if len(data) < HEADER.size:
        return found
    magic, used = HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        return found
    used, pos = min(used, len(data)), HEADER.size
    while pos + LENGTH.size <= used:
        (length,) = LENGTH.unpack_from(data, pos)
        value_at = aligned(pos + LENGTH.size + length)
        if value_at + VALUE.size > used:
            break
        try:
            key = decode_key(data[pos + LENGTH.size:pos + LENGTH.size + length])
            found[key] = found.get(key, 0.0) + VALUE.unpack_from(data, value_at)[0]
        except (ValueError, TypeError, AttributeError):
            break  # not ours (a cell may write here): what came before it stands
        pos = value_at + VALUE.size
    return found


def add_into(total, samples):
    for key, value in samples.items():
        total[key] = total.get(key, 0.0) + value
    return total


@contextlib.contextmanager
def locked(directory):
    """Hold the metrics directory's lock: a scrape reads, and a retire moves counts, as
    one step (a state dir that cannot be written: no lock, and no file to move)."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        lock = open(os.path.join(directory, ".lock"), "a")
    except OSError:
        yield
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def collect(own):
    """Every process's counts summed: the archive, the live files, and ``own``'s (a
    CountFile) from memory; files of processes that are gone are archived first.
    Call it holding ``locked``."""
    directory = own.directory
    total = add_into({}, own.samples())
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return total
    archive = read_archive(directory)
    gone = []
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(SUFFIX) or path == own.path or name in archive["merged"]:
            continue
        samples, alive = read_count_file(path)
        if samples is None:
            continue
        if alive:
            add_into(total, samples)
        else:
            gone.append((name, samples))
    if gone:
        archive_gone(directory, archive, gone)
    return add_into(total, archive["samples"])


def read_count_file(path):
    """(its samples, whether a live process holds it); (None, False) if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return None, False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            alive = False
        except BlockingIOError:
            alive = True
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
    except OSError:
        return None, False
    finally:
        os.close(fd)
    return parse(data), alive


def read_archive(directory):
    """The counts of processes that are gone, and the files already folded in (a fold
    that stopped between writing the archive and removing them must not count twice)."""
    try:
        with open(os.path.join(directory, ARCHIVE), encoding="utf-8") as handle:
            stored = json.load(handle)
        samples = {(str(name), tuple((str(k), str(v)) for k, v in labels)): float(value)
                   for name, labels, value in stored["samples"]}
        return {"samples": samples, "merged": set(stored["merged"])}
    except (OSError, ValueError, KeyError, TypeError):
        return {"samples": {}, "merged": set()}


def archive_gone(directory, archive, gone):
    for _, samples in gone:
        add_into(archive["samples"], samples)
    names = [name for name in archive["merged"] if os.path.exists(os.path.join(directory, name))]
    names += [name for name, _ in gone]
    stored = {"samples": [[name, [list(p) for p in labels], value]
                          for (name, labels), value in sorted(archive["samples"].items())],
              "merged": names}
    temp = os.path.join(directory, ".%s.%s" % (ARCHIVE, secrets.token_hex(4)))
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(stored, handle)
        os.replace(temp, os.path.join(directory, ARCHIVE))
    except OSError:
        try:
            os.unlink(temp)
        except OSError:
            pass
        return  # counted from the files again next time
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
