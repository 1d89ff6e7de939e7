"""Late output: what arrived after its execution's record was final, kept bounded.

Output of threads goes into its execution's record while the record is open
(from the start of the execution until the child reports it ``done``); after
that it comes here, and so do fd-level writes while no cell runs (a pipe does
not say which thread wrote).  Entries are ``{execution_count, name, text,
time}``; consecutive pieces of one line are merged (print() writes the text
and the newline apart); the newest ``limit`` UTF-8 bytes are kept, oldest
dropped (GET /envs/{id}/late_output).  It never goes into another execution's
record.  Kept across restarts, lost when the supervisor stops.
"""

import collections

from ..store import utcnow

LATE_OUTPUT_LIMIT = 64 * 1024  # UTF-8 bytes of late output kept (the newest)
COUNTS_KEPT = 4096     # execution keys whose execution_count late output can still name


class LateOutput:
    def __init__(self, limit=LATE_OUTPUT_LIMIT, counts_kept=COUNTS_KEPT):
        self.limit = limit
        self.entries = collections.deque()
        self.size = 0             # UTF-8 bytes of text in entries
        self.counts_kept = counts_kept
        self.counts = collections.OrderedDict()  # execution key -> execution_count

    def remember(self, key, n):
        """Execution ``key`` has count ``n``: its late output will name it."""
        self.counts[key] = n
        while len(self.counts) > self.counts_kept:
            self.counts.popitem(last=False)

    def add(self, message):
        """Keep a ``stream`` or ``output`` message of the child whose execution's record is
        final (or that has none); ``truncated`` is dropped (late output has its own bound)."""
        kind, body = message.get("type"), message.get("body") or {}
        if kind == "stream":
            name, text = body.get("name"), body.get("text") or ""
        elif kind == "output":  # display() from a thread: its text/plain
            output = body
            name = output.get("output_type") or "display_data"
            text = str((output.get("data") or {}).get("text/plain", ""))
            text += "" if text.endswith("\n") else "\n"
        else:
            return
        if not text:
            return
        key = message.get("parent")
        n = self.counts.get(key) if key is not None else None
        last = self.entries[-1] if self.entries else None
        if (last is not None and last["execution_count"] == n and last["name"] == name
                and not last["text"].endswith("\n")):
            last["text"] += text  # print() writes the text and the newline apart: one entry
        else:
            self.entries.append({"execution_count": n, "name": name, "text": text,
                                 "time": utcnow()})
        self.size += len(text.encode("utf-8", "replace"))
        self._bound()

    def _bound(self):
        while self.size > self.limit and self.entries:
            oldest = self.entries[0]
            data = oldest["text"].encode("utf-8", "replace")
            excess = self.size - self.limit
            if len(data) <= excess:
                self.entries.popleft()
                self.size -= len(data)
            else:  # keep the newest part of the oldest entry
                kept = data[excess:].decode("utf-8", "ignore")
                oldest["text"] = kept
                self.size -= len(data) - len(kept.encode("utf-8"))

    def snapshot(self):
        """The entries, copied (the answer to ``late_output``)."""
        return [dict(entry) for entry in self.entries]

    def unattributed_text(self):
        """The text of the entries no execution owns (what a child printed while starting)."""
        return "".join(entry["text"] for entry in self.entries
                       if entry.get("execution_count") is None)
