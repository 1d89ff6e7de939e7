"""The threads of ``httpserver``: acceptors that serve what they accept, and a pool.

``Acceptors`` (leader/followers): pre-started threads block in ``accept()``;
the one that gets a connection serves it itself, after starting one more
acceptor if no other was waiting, so the listening socket is always watched
however many long requests hold threads.  ``WorkerPool``: pre-started threads
taking jobs from a queue, growing when all are busy; ``httpserver`` gives it
the parked keep-alive connections that speak again.  Both cap their threads
at ``max_threads`` and retire those the load added above ``min_threads``.
"""

import collections
import threading


class WorkerPool:
    """Pre-started threads taking jobs from a queue; grows when all are busy (see module doc)."""

    def __init__(self, work, min_threads, max_threads, idle_timeout=30.0):
        self.work = work
        self.min_threads = min_threads
        self.max_threads = max_threads
        self.idle_timeout = idle_timeout
        self.jobs = collections.deque()
        self.cond = threading.Condition()
        self.threads = 0
        self.idle = 0
        self.closed = False
        with self.cond:
            for _ in range(min_threads):
                self._start()

    def _start(self):
        self.threads += 1
        threading.Thread(target=self._run, name="http-worker", daemon=True).start()

    def submit(self, job):
        with self.cond:
            self.jobs.append(job)
            if self.idle < len(self.jobs) and self.threads < self.max_threads:
                self._start()
            else:
                self.cond.notify()

    def _run(self):
        while True:
            with self.cond:
                while not self.jobs:
                    if self.closed:
                        self.threads -= 1
                        return
                    self.idle += 1
                    woken = self.cond.wait(self.idle_timeout)
                    self.idle -= 1
                    if not woken and not self.jobs and self.threads > self.min_threads:
                        self.threads -= 1
                        return
                job = self.jobs.popleft()
            try:
                self.work(job)
            except Exception:  # the work reports its own errors; never lose the thread
                pass

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify_all()


class Stopped(Exception):
    """The server is shutting down: an acceptor thread ends."""


class Acceptors:
    """Threads blocking in accept() that serve what they accept themselves (leader/followers).

    No hand-off on the hot path: the thread that accepts a connection answers
    it.  So that a thread held by a long-poll or a stream never leaves the
    listening socket unwatched, a thread that accepts while no other is
    waiting in accept() starts one more first (up to ``max_threads``); a thread
    beyond ``min_threads`` retires when it finishes while ``min_threads``
    others are waiting.  accept() blocks (no timeout): Linux wakes one thread
    per connection, where threads polling the socket would all wake for each.
    """

    def __init__(self, accept, min_threads, max_threads):
        self.accept = accept          # () -> (job, handler) or None; raises Stopped
        self.max_threads = max_threads
        self.min_threads = min_threads
        self.lock = threading.Lock()
        self.total = 0
        self.waiting = 0
        self.closed = False
        with self.lock:
            for _ in range(min_threads):
                self._start()

    def _start(self):
        self.total += 1
        threading.Thread(target=self._run, name="http-acceptor", daemon=True).start()

    def _run(self):
        while True:
            with self.lock:
                self.waiting += 1
            try:
                accepted = self.accept()
            except Stopped:
                accepted = Stopped
            except Exception:  # a connection that failed while accepted: the thread goes on
                accepted = None
            with self.lock:
                self.waiting -= 1
                if accepted is Stopped or self.closed:
                    self.total -= 1
                    return
                if accepted is None:
                    continue
                if self.waiting == 0 and self.total < self.max_threads:
                    self._start()  # someone must be in accept() while we work
            job, handler = accepted
            try:
                handler(job)
            except Exception:  # the handler reports its own errors; never lose the thread
                pass
            with self.lock:
                # Enough others wait in accept(): a thread the load added retires.
                if self.total > self.min_threads and self.waiting >= self.min_threads:
                    self.total -= 1
                    return

    def close(self):
        with self.lock:
            self.closed = True
