"""What kernels counted (kernel/counters.py) as samples, and keeping those counts when
their file goes.

A supervisor writes its counts in the env dir's kernel.counts, which stays after it
ends, so a scrape sums every env's file, live or not.  The file goes when a new
kernel starts in the env (its supervisor makes a new one) or the env is deleted:
just before, with the old supervisor gone, ``retire`` adds its counts to this
worker's count file and removes it, so they stay counted, once.

The file's layout is fixed (``KEYS``, one series per slot), so whatever a cell
writes there can add no label set; a value that is not a finite count is skipped.
"""

import math
import os

from ..kernel.counters import COUNTS_FILE, DURATION_BUCKETS, HEADER, MAGIC, SIZE, SLOTS, VALUE
from ..store import open_plain, read_status_bytes
from . import files
from .exposition import number

__all__ = ["COUNTS_FILE", "env_samples", "retire", "samples_of"]

EXECUTIONS = "wsgikernel_executions_total"
DURATION = "wsgikernel_execution_duration_seconds"
TRUNCATED = "wsgikernel_output_truncated_total"
DEATHS = "wsgikernel_kernel_deaths_total"
BOUNDS = [number(bound) for bound in DURATION_BUCKETS] + ["+Inf"]


def key_of(slot):
    kind = slot[0]
    if kind == "executions":
        return EXECUTIONS, (("status", slot[1]), ("reason", slot[2]))
    if kind == "bucket":
        return DURATION + "_bucket", (("le", BOUNDS[slot[1]]),)
    if kind == "sum":
        return DURATION + "_sum", ()
    if kind == "truncated":
        return TRUNCATED, ()
    return DEATHS, (("reason", slot[1]),)


KEYS = tuple(key_of(slot) for slot in SLOTS)
# Always shown, zero or not (a histogram's buckets, the truncated total); the rest
# (a status, reason or death that never happened) only once counted.
ALWAYS = tuple(slot[0] in ("bucket", "sum", "truncated") for slot in SLOTS)


def samples_of(data):
    """{key: value} of a counts file's bytes ({} for a file of another layout)."""
    if len(data) != SIZE or HEADER.unpack_from(data, 0) != (MAGIC, len(SLOTS)):
        return {}
    found = {}
    for key, always, (value,) in zip(KEYS, ALWAYS, VALUE.iter_unpack(data[HEADER.size:])):
        if (value > 0 or (always and value == 0)) and not math.isinf(value):
            found[key] = value
    return found


def read_counts(env_dir):
    fd = open_plain(os.path.join(env_dir, COUNTS_FILE))
    if fd is None:
        return None
    try:
        return os.read(fd, SIZE + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


def env_samples(env_dir, cache=None):
    """What the kernel of ``env_dir`` counted, from its counts file, live or not.
    ``cache``, a dict the caller keeps, maps an env dir to (the file's bytes, their
    samples), so an unchanged file costs one read."""
    data = read_counts(env_dir)
    if data is None:
        return {}
    known_samples = cache.get(env_dir) if cache is not None else None
    if known_samples is not None and known_samples[0] == data:
        return known_samples[1]
    samples = samples_of(data)
    if cache is not None:
        cache[env_dir] = (data, samples)
    return samples


def retire(env_dir, counts):
    """Move the counts of ``env_dir``'s ended kernel into ``counts`` (a CountFile) and
    remove its file, as one step for scrapes (files.locked): call it with no
    supervisor left in the env, while the env is still listed."""
    with files.locked(counts.directory):
        if read_status_bytes(env_dir) is not None:
            return  # a supervisor holds its status.json: a concurrent restart started one
        for key, value in env_samples(env_dir).items():
            counts.add(key, value)
        try:
            os.unlink(os.path.join(env_dir, COUNTS_FILE))
        except OSError:
            pass
