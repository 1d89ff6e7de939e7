"""What a kernel counts for /metrics: its executions by status and reason, their
durations, those whose output was truncated, and the deaths of its user-code process.

The supervisor keeps them (``EventLog.counters``) in a file of the env dir,
``kernel.counts``, that a scrape reads without asking the kernel: a header (b"WKK1",
uint32 number of slots) and one float64 per slot of ``SLOTS``, a layout fixed by the
labels' known values, so a file says nothing but those counts (metrics/kernels.py
maps the slots to series).  The file is mapped: a count moves by one 8-byte store
into it, which any reader of the file sees at once (the page cache is shared), before
the answer that follows leaves the supervisor -- so whoever is answered and then
scrapes finds it counted -- and never half done.  No system call is on that way:
a ``pwrite`` per cell cost 10-15 us there, most of it the file's mtime update.

Each supervisor makes a new file (a new inode, renamed into place), whose counts
last as long as it does, restarts of the user-code process included; the web tier
folds an ended kernel's file into its own counts before a new kernel's replaces it or
the env is deleted (metrics/kernels.py), so what was counted is never counted twice
nor lost.  A file that cannot be made (a read-only or full disk) leaves the counts
in memory: scrapes do not see them.  On a state dir another host shares (NFS, for
Slurm envs) that host sees a count once the page is written back, within seconds,
as with the web workers' count files (metrics/files.py).
"""

import bisect
import mmap
import os
import struct
import tempfile

COUNTS_FILE = "kernel.counts"
MAGIC = b"WKK1"
HEADER = struct.Struct("<4sI")
VALUE = struct.Struct("<d")

# Seconds: a cell from a print to a training epoch.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 1800.0, 7200.0)


# What the labels may be (anything else counts as "other"): the statuses and reasons
# of records.py and execution_queue.py, and the reasons a kernel's death is recorded with.
STATUSES = ("ok", "error", "aborted")
REASONS = ("", "interrupted", "timeout", "cancelled", "kernel_died", "previous_error")
DEATHS = ("kernel_died", "timeout", "start_failed", "kernel_lost")

SLOTS = (tuple(("executions", status, reason) for status in STATUSES + ("other",)
               for reason in REASONS + ("other",))
         + tuple(("bucket", index) for index in range(len(DURATION_BUCKETS) + 1))  # +Inf
         + (("sum",), ("truncated",))
         + tuple(("deaths", reason) for reason in DEATHS + ("other",)))
INDEX = {slot: index for index, slot in enumerate(SLOTS)}
FIRST_BUCKET, SUM, TRUNCATED = INDEX[("bucket", 0)], INDEX[("sum",)], INDEX[("truncated",)]
SIZE = HEADER.size + VALUE.size * len(SLOTS)


def known(value, allowed):
    return value if value in allowed else "other"


class KernelCounters:
    """The counts; ``directory``: where their file goes (None: in memory only)."""

    def __init__(self, directory=None):
        mapped = None
        if directory is not None:
            try:
                mapped = create(directory)
            except OSError:
                pass
        if mapped is None:
            mapped = mmap.mmap(-1, SIZE)
            mapped[:HEADER.size] = HEADER.pack(MAGIC, len(SLOTS))
        self.map = mapped
        self.values = memoryview(mapped)[HEADER.size:].cast("d")  # a slot: one 8-byte copy

    @property
    def data(self):
        """The file's bytes as they are now."""
        return self.map[:]

    def execution_ended(self, record):
        if record.get("fork_into"):
            return  # a fork waiting for the cell boundary, not an execution
        values = self.values
        duration = record.get("duration")
        if isinstance(duration, (int, float)):  # None: it never ran (cancelled, aborted)
            values[FIRST_BUCKET + bucket_of(duration)] += 1
            values[SUM] += duration
        if record.get("truncated"):
            values[TRUNCATED] += 1
        values[INDEX[("executions", known(record.get("status"), STATUSES),
                      known(record.get("reason") or "", REASONS))]] += 1

    def died(self, reason):
        self.values[INDEX[("deaths", known(reason, DEATHS))]] += 1

    def close(self):
        """In a forked child: the file is the supervisor's alone."""
        self.values.release()
        self.map.close()


def create(directory):
    """A new counts file, mapped, its header written before it takes its name."""
    fd, temp = tempfile.mkstemp(dir=directory, prefix=".counts-")  # 0600
    try:
        os.write(fd, HEADER.pack(MAGIC, len(SLOTS)) + bytes(SIZE - HEADER.size))
        mapped = mmap.mmap(fd, SIZE)  # its own descriptor: ours closes below
        os.replace(temp, os.path.join(directory, COUNTS_FILE))
    except BaseException:
        os.unlink(temp)
        raise
    finally:
        os.close(fd)
    return mapped


def bucket_of(seconds):
    """The index of the first bound ``seconds`` is within (len: +Inf)."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)
