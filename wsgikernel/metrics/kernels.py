"""What kernels counted (kernel/counters.py) as samples, and keeping those counts when
their status.json goes.

A supervisor publishes its counts in status.json, which stays after it ends, so a
scrape sums every env's file, live or not.  The file goes when a new kernel starts in
the env (its supervisor makes a new one) or the env is deleted: just before, with the
old supervisor gone, ``retire`` adds its counts to this worker's count file and
removes it, so they stay counted, once.
"""

import os
import re

from ..kernel.counters import DEATHS as DEATH_REASONS, DURATION_BUCKETS, REASONS, STATUSES, known
from ..store import STATUS_FILE, read_status, read_status_bytes
from . import files
from .exposition import number

EXECUTIONS = "wsgikernel_executions_total"
DURATION = "wsgikernel_execution_duration_seconds"
TRUNCATED = "wsgikernel_output_truncated_total"
DEATHS = "wsgikernel_kernel_deaths_total"
KEY = re.compile(r"[a-z_]{1,40}( [a-z_]{0,40})?")
MAX_KEYS = 32
BOUNDS = [number(bound) for bound in DURATION_BUCKETS] + ["+Inf"]


def samples_of(published):
    """{key: value} of a status.json's ``metrics`` (anything malformed is skipped: a
    file another version wrote, or one a cell scribbled on)."""
    found = {}
    if not isinstance(published, dict):
        return found
    for key, count in items(published.get("executions")):
        status, _, reason = key.partition(" ")
        found[(EXECUTIONS, (("status", known(status, STATUSES)),
                            ("reason", known(reason, REASONS))))] = count
    duration = published.get("duration")
    if isinstance(duration, dict) and isinstance(duration.get("buckets"), list):
        for le, count in zip(BOUNDS, duration["buckets"]):
            if is_count(count):
                found[(DURATION + "_bucket", (("le", le),))] = count
        if is_count(duration.get("sum")):
            found[(DURATION + "_sum", ())] = duration["sum"]
    if is_count(published.get("truncated")):
        found[(TRUNCATED, ())] = published["truncated"]
    for reason, count in items(published.get("deaths")):
        found[(DEATHS, (("reason", known(reason, DEATH_REASONS)),))] = count
    return found


def items(mapping):
    """(key, count) of a published mapping: keys as the kernel writes them (reasons,
    "status reason"), at most MAX_KEYS of them; their values are checked against the
    known ones too (anything else is "other"), so a forged file cannot make the label
    sets grow, even over many restarts."""
    if not isinstance(mapping, dict):
        return []
    return [(key, value) for key, value in list(mapping.items())[:MAX_KEYS]
            if isinstance(key, str) and KEY.fullmatch(key) and is_count(value)]


def is_count(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def env_samples(env_dir, cache=None):
    """What the kernel of ``env_dir`` counted, from its status.json, live or not.
    ``cache``, a dict the caller keeps, maps an env dir to (the file's bytes, their
    samples), so an unchanged file costs one read."""
    data = read_status_bytes(env_dir, alive=False)
    if data is None:
        return {}
    known_samples = cache.get(env_dir) if cache is not None else None
    if known_samples is not None and known_samples[0] == data:
        return known_samples[1]
    status = read_status(env_dir, alive=False)
    if status is None:  # caught half written, every try: what it said last time
        return known_samples[1] if known_samples is not None else {}
    samples = samples_of(status.get("metrics"))
    if cache is not None:
        cache[env_dir] = (data, samples)
    return samples


def retire(env_dir, counts):
    """Move the counts of ``env_dir``'s ended kernel into ``counts`` (a CountFile) and
    remove its status.json, as one step for scrapes (files.locked): call it with no
    supervisor left in the env, while the env is still listed."""
    with files.locked(counts.directory):
        if read_status_bytes(env_dir, alive=True) is not None:
            return  # a supervisor holds it: a concurrent restart started one
        for key, value in env_samples(env_dir).items():
            counts.add(key, value)
        try:
            os.unlink(os.path.join(env_dir, STATUS_FILE))
        except OSError:
            pass
