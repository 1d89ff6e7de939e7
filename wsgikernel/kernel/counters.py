"""What a kernel counts for /metrics: its executions by status and reason, their
durations, those whose output was truncated, and the deaths of its user-code process.

The supervisor keeps them (``Supervisor.counters``) and publishes them in status.json
as ``metrics`` (``published()``), so a scrape reads them with the status, without
asking the kernel.  They last as long as the supervisor, a restart of the user-code
process included; the web tier folds them into its own counts before a new kernel's
status.json replaces the file or the env is deleted (metrics/kernels.py), so what
was counted is never counted twice nor lost.
"""

import bisect

# Seconds: a cell from a print to a training epoch.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0, 1800.0, 7200.0)


# What the labels may be (anything else counts as "other"): the statuses and reasons
# of records.py and execution_queue.py, and the reasons a kernel's death is recorded with.
STATUSES = ("ok", "error", "aborted")
REASONS = ("", "interrupted", "timeout", "cancelled", "kernel_died", "previous_error")
DEATHS = ("kernel_died", "timeout", "start_failed", "kernel_lost")


def known(value, allowed):
    return value if value in allowed else "other"


class KernelCounters:
    def __init__(self):
        self.executions = {}   # "status reason" -> count (reason "" when there is none)
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # not cumulative; last: +Inf
        self.bucket_text = ["0"] * len(self.buckets)  # their JSON, kept as they move
        self.duration_sum = 0.0
        self.truncated = 0
        self.deaths = {}       # reason -> count
        self._published = self._encoded = None

    def execution_ended(self, record):
        if record.get("fork_into"):
            return  # a fork waiting for the cell boundary, not an execution
        key = "%s %s" % (known(record.get("status"), STATUSES),
                         known(record.get("reason") or "", REASONS))
        self.executions[key] = self.executions.get(key, 0) + 1
        duration = record.get("duration")
        if isinstance(duration, (int, float)):  # None: it never ran (cancelled, aborted)
            index = bucket_of(duration)
            self.buckets[index] += 1
            self.bucket_text[index] = str(self.buckets[index])
            self.duration_sum += duration
        if record.get("truncated"):
            self.truncated += 1
        self._published = self._encoded = None

    def died(self, reason):
        reason = known(reason, DEATHS)
        self.deaths[reason] = self.deaths.get(reason, 0) + 1
        self._published = self._encoded = None

    def published(self):
        """The JSON-able form status.json carries (the same object until a count moves)."""
        if self._published is None:
            self._published = {"executions": dict(self.executions),
                               "duration": {"buckets": list(self.buckets),
                                            "sum": round(self.duration_sum, 6)},
                               "truncated": self.truncated, "deaths": dict(self.deaths)}
        return self._published

    def encoded(self):
        """``published()`` as compact JSON bytes, made once per change: status.json is
        written before each answer, so this is on the way of every cell's.  Formatted
        here, not by json: every key is one of the fixed names above (``known``)."""
        if self._encoded is None:
            self._encoded = (
                '{"executions":{%s},"duration":{"buckets":[%s],"sum":%r},"truncated":%d,'
                '"deaths":{%s}}' % (
                    ",".join('"%s":%d' % item for item in self.executions.items()),
                    ",".join(self.bucket_text), round(self.duration_sum, 6),
                    self.truncated, ",".join('"%s":%d' % item for item in self.deaths.items()))
            ).encode("ascii")
        return self._encoded


def bucket_of(seconds):
    """The index of the first bound ``seconds`` is within (len: +Inf)."""
    return bisect.bisect_left(DURATION_BUCKETS, seconds)
