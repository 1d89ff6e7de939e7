"""What a kernel reports of itself: its counts for /metrics (counters.py: in a file of
the env dir, unless the kernel's settings say ``metrics: false``) and, for an
operator's log pipeline (log_format json), its log lines.

With the server's ``log_format = json`` (the ``log_format`` of the kernel's
settings) the supervisor writes one JSON object per line to kernel.log for each
execution that ends (with the ``request_id`` of the HTTP request that submitted
it, as control/link.py sends it), and for its lifecycle: the user-code process
started, died (with the reason the env shows), the kernel stopped or was culled
by the idle timeout.  With the plain format kernel.log stays as it was: the
tracebacks and notes the supervisor writes for people.
"""

import json

from ..store import utcnow
from .counters import KernelCounters


class EventLog:
    def __init__(self, files):
        self.files = files  # persistence.EnvFiles: kernel.log (line-buffered), env.json
        settings = files.record.get("settings") or {}
        self.counters = KernelCounters(files.env_dir) if settings.get("metrics", True) else None
        self.on = settings.get("log_format") == "json"
        self.dead = False  # the user-code process died and was counted (till a restart)

    def close_in_child(self):
        if self.counters is not None:
            self.counters.close()

    def execution(self, execution, record):
        """``execution`` ended with ``record``; its waiters are answered next."""
        if self.counters is not None:
            self.counters.execution_ended(record)
        if self.on:
            self.write("execution", execution_count=record.get("execution_count"),
                       status=record.get("status"), reason=record.get("reason"),
                       duration=record.get("duration"), truncated=record.get("truncated"),
                       request_id=execution.request.get("request_id"))

    def died(self, reason, detail=None):
        """The user-code process died (or never started: ``start_failed``)."""
        if self.counters is not None:
            self.counters.died(reason)
        self.dead = True
        self.lifecycle("kernel_died", reason=reason, detail=detail)

    def started(self, **fields):
        self.dead = False
        self.lifecycle("kernel_started", **fields)

    def stopped(self, state, reason):
        """The final stop is done: ``state`` is what env.json says now (None: deleted).
        A batch job's end is a death, unless its user-code process died of the job's
        SIGTERM first (counted then)."""
        if state == "dead":
            if not self.dead:
                self.died(reason)
        else:
            self.lifecycle("kernel_culled" if reason == "idle" else "kernel_stopped",
                           reason=reason)

    def lifecycle(self, name, **fields):
        if self.on:
            self.write(name, **fields)

    def write(self, name, **fields):
        line = {"time": utcnow(), "event": name, "env": self.files.record.get("id")}
        line.update(fields)
        try:
            self.files.log.write(json.dumps(line, ensure_ascii=True, default=str) + "\n")
        except (OSError, ValueError):
            pass  # a full disk, or the log closed in a forked child: never a failure
