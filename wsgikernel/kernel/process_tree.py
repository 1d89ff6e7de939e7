"""The user-code process and its whole tree, as the supervisor's loop drives them.

``ProcessTree`` puts a spawned ``child.Child`` in the loop's selector -- its
control socket, its fd 1/2 pipes, its pidfd -- reads what it sends, sees it
die, and stops it with everything it started, without ever blocking the loop.
What the child sends and how its end is handled are the supervisor's
(``owner``): ``child_message(message)``, ``child_text(name, text)`` (pipe
output), ``child_gone()`` (a stop saw the exit), ``child_died(code, signal)``
(a death nobody asked for), ``tree_stopped(goal)`` (nothing is left).

Death is seen from the process itself (its pidfd in the selector, SIGCHLD
through the supervisor's wakeup fd), never only from end of file on the
control socket: a helper the child forked may hold that open, so end of file
detaches the socket and, if the child has not exited within
``EOF_KILL_AFTER``, SIGKILLs it.  When the death is seen, whatever the child
had already written on the socket and pipes is read first.

A stop (``begin_stop``): SIGTERM to the tree now, SIGKILL after
``kill_grace`` (a timer, ``check_stop``); once the child is reaped its group
is SIGKILLed and the tree swept every ``REAP_POLL`` seconds -- reap what
ended, SIGKILL every descendant still there -- until none is left (at most
``child.KILL_WAIT``, then logged).  The same sweep follows a death nobody
asked for (goal ``cleanup``).  ``stop_blocking`` is the blocking form, for
when the loop no longer runs.

A forked env's first child is fostered (foster.py): its parent is a reaper, whose
reports of what it reaped count as our own ``waitpid``'s (``reaped``) and whose
descendants are our tree too (``roots``) until it ends.

A restore swaps children instead (``replace``): the resumed checkpoint is
driven at once; the old child's tree is stopped (SIGSTOP, so none of it forks)
and the pids stopped then are what is killed and reaped once the new child is
``ready`` (``Replaced``) -- never a walk of every descendant, which would take in
what the new child already left to us.
"""

import os
import selectors
import signal
import socket
import time

from ..store import utcnow
from .child import KILL_WAIT, Child, decode_status, reap_children, signal_tree
from .sandbox import SandboxedChild

EOF_KILL_AFTER = 1.0   # seconds a child whose control socket closed may take to exit
MAX_PASSED_FDS = 4     # descriptors one read of the control socket may bring (a checkpoint's)
REAP_POLL = 0.02       # seconds between sweeps of a dead child's tree
REPLACED_HOLD = 1.0    # seconds a replaced child stays stopped if its successor is not ready


class ProcessTree:
    def __init__(self, selector, kill_grace, log, owner):
        self.selector = selector
        self.kill_grace = kill_grace
        self.log = log
        self.owner = owner
        self.child = None         # the user-code process (child.Child)
        self.stop_goal = None     # a stop in progress: "cleanup", "restart" or "final"
        self.stop_status = None   # (code, signal) of the child a stop ended
        self.stopped_group = None  # process group of the child whose tree is being swept
        self.reap_until = None    # give up on a tree that will not die after this
        self.checkpoints = None   # kernel/checkpoints.py: spared by sweeps, told of deaths
        self.replaced = None      # Replaced: a replaced child's tree, till it is all reaped
        self.foster = None        # foster.Foster: a forked env's reaper, while it runs

    @property
    def pid(self):
        return self.child.pid if self.child is not None else None

    def spawn(self, work_dir, rlimits, preload, close_in_child, sandbox=None):
        """Fork the user-code process (inside bwrap if ``sandbox`` says so, see sandbox.py);
        it reports ``ready`` over the control socket."""
        if sandbox:
            self.adopt(SandboxedChild.spawn(work_dir, rlimits, preload, close_in_child,
                                            sandbox))
        else:
            self.adopt(Child.spawn(work_dir, rlimits, preload, close_in_child))

    def adopt(self, child):
        """Drive ``child`` (spawned, or resumed from a checkpoint)."""
        self.child = child
        child.fostered = self.foster is not None  # only waitpid tells: ours, or the reaper's
        self.selector.register(self.child.sock, selectors.EVENT_READ, self.on_readable)
        if self.child.pidfd is not None:
            self.selector.register(self.child.pidfd, selectors.EVENT_READ, self.on_pidfd)
        for fd in self.child.pipes:
            self.selector.register(fd, selectors.EVENT_READ, self.on_pipe_readable)

    def foster_by(self, foster):
        """Take the reports of a forked env's reaper (foster.py) as our own waitpid's."""
        self.foster = foster
        self.selector.register(foster.fd, selectors.EVENT_READ, self.on_foster)

    def on_foster(self, fd, mask):
        more = self.foster.read()
        self.reap()
        if not more:  # it had no child left: from now on every process is ours
            self.selector.unregister(fd)
            self.foster.close()
            self.foster = None

    def roots(self):
        """Whose descendants our tree is: ours, and the reaper's while it runs."""
        return (os.getpid(),) if self.foster is None else (os.getpid(), self.foster.pid)

    def reaped(self):
        """[(pid, (code, signal))] of every process of ours that ended since: those we
        waited for, and those the reaper did."""
        found = reap_children()
        if self.foster is not None:
            found += [(pid, decode_status(status)) for pid, status in self.foster.take()]
        return found

    def send(self, message):
        self.child.send(message)

    def signal(self, signum):
        if self.child is not None:
            self.child.signal(signum)

    def deadlines(self, now):
        """When check_stop must run: the end of a stop's grace, the next sweep."""
        found = []
        if self.child is not None and self.child.kill_at is not None:
            found.append(self.child.kill_at)
        if self.stop_goal is not None and self.child is None:
            found.append(now + REAP_POLL)  # sweeping the dead child's tree
        if self.replaced is not None:
            found.append(max(self.replaced.start, now + REAP_POLL))
        return found

    # -- what the child sends ------------------------------------------------------

    def on_readable(self, sock, mask):
        if self.child is None or sock is not self.child.sock:
            return  # a stale event of this select() batch: that child is gone
        if not self.read_control(reads=1):
            self.control_closed()

    def read_control(self, reads):
        """Handle what the control socket holds, ``reads`` recv() at most; False at its end."""
        child = self.child
        for _ in range(reads):
            if self.child is not child or child.sock is None:
                return True
            try:  # 256 KiB would be an mmap per call
                data, fds, _, _ = socket.recv_fds(child.sock, 1 << 16, MAX_PASSED_FDS)
                child.passed_fds.extend(fds)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                data = b""
            if not data:
                return False
            for message in child.reader.feed(data):
                self.owner.child_message(message)
        return True

    def on_pipe_readable(self, fd, mask):
        if self.child is not None and fd in self.child.pipes:  # else: closed in this batch
            self.read_pipe(fd)

    def read_pipe(self, fd):
        name, text, at_end = self.child.read_pipe(fd)
        if text:
            self.owner.child_text(name, text)
        if at_end:
            self.close_pipe(fd)

    def flush_decoders(self):
        """(name, text) of an incomplete UTF-8 sequence left in the pipes (as U+FFFD)."""
        return self.child.flush_decoders()

    def close_pipes(self):
        for fd in list(self.child.pipes):
            self.read_pipe(fd)  # what is left belongs to the execution in flight
            self.close_pipe(fd)

    def close_pipe(self, fd):
        if fd in self.child.pipes:
            del self.child.pipes[fd]
            self.selector.unregister(fd)
            os.close(fd)

    def detach(self):
        """Stop listening to the child's control socket (its exit, or before we stop it)."""
        if self.child.sock is not None:
            self.selector.unregister(self.child.sock)
            self.child.sock.close()
            self.child.sock = None
        for fd in self.child.passed_fds:  # sent, but never taken (its message was lost)
            os.close(fd)
        self.child.passed_fds = []

    def close_pidfd(self):
        if self.child.pidfd is not None:
            self.selector.unregister(self.child.pidfd)
            self.child.close_pidfd()

    # -- its end ---------------------------------------------------------------------

    def control_closed(self):
        """End of file on the control socket: the child is exiting, or lost its channel.

        Never the only sign of death (a helper the child forked may hold the socket):
        the death itself comes through the pidfd or SIGCHLD.  A child that cannot be
        driven any more is SIGKILLed unless it exits by itself first."""
        self.detach()
        if self.child.poll() is not None:
            self.child_exited()
            return
        deadline = time.monotonic() + EOF_KILL_AFTER
        if self.child.kill_at is None or self.child.kill_at > deadline:
            self.child.kill_at = deadline

    def on_pidfd(self, fd, mask):
        self.reap()

    def reap(self):
        """waitpid every child that ended -- the user-code process (its status is kept)
        and whatever was re-parented to us, so no zombie stays -- and handle the
        user-code process's death."""
        child = self.child
        for pid, status in self.reaped():
            if self.replaced is not None:
                self.replaced.pids.discard(pid)
            if child is not None and pid == child.pid:
                child.status = status
            elif self.checkpoints is not None:
                self.checkpoints.reaped(pid)
        if child is not None and self.child is child and child.status is not None:
            self.child_exited()

    def child_exited(self):
        """The child is gone (reaped): what it sent first, then its end, then its tree."""
        child = self.child
        self.read_control(reads=64)  # what it sent before it died, as if we had read to EOF
        self.detach()
        self.close_pipes()
        self.close_pidfd()
        code, signum = child.status
        self.child = None
        # Whatever it left behind: its group now, then check_stop() (this loop iteration)
        # SIGKILLs and reaps every descendant (setsid() daemons re-parented to us) until
        # nothing is left.
        self.stopped_group = child.group
        self.reap_until = time.monotonic() + KILL_WAIT
        child.signal(signal.SIGKILL)
        if self.stop_goal in ("restart", "final"):  # the end of a stop we asked for
            self.stop_status = (code, signum)
            self.owner.child_gone()
            self.check_stop(time.monotonic())
            return
        self.stop_goal = "cleanup"
        self.owner.child_died(code, signum)

    # -- stopping it -------------------------------------------------------------------

    def spared(self):
        return self.checkpoints.pids() if self.checkpoints is not None else set()

    def begin_stop(self, goal, grace=None):
        """Stop the child and its whole tree without blocking the loop: SIGTERM now, SIGKILL
        after ``kill_grace`` (check_stop), its death seen through the pidfd or SIGCHLD,
        then the tree swept; ``goal`` ("restart", "final") is reached when nothing is left."""
        if self.stop_goal not in ("restart", "final"):
            self.stop_status = None
        self.stop_goal = goal
        now = time.monotonic()
        child = self.child
        if child is None:  # nothing runs: only what is left of a dead child's tree
            self.reap_until = now + KILL_WAIT
            self.check_stop(now)
        elif not child.terminating:
            child.terminating = True
            child.signal_tree(signal.SIGTERM, self.spared(), self.roots())
            deadline = now + (self.kill_grace if grace is None else grace)
            child.kill_at = deadline if child.kill_at is None else min(child.kill_at, deadline)

    def replace(self, child):
        """Drive ``child`` (resumed from a checkpoint) now; the child it replaces is
        stopped with its whole tree (SIGSTOP: no process of it forks any more), and
        killed once ``child`` is ``ready`` -- a large process takes tens of ms of CPU to
        die, which a restore's answer does not wait for.  The old child's messages and
        output are dropped (its namespace is being discarded; it ran no cell)."""
        old = self.child
        if old is not None:
            # The new child and what it starts are never in it: the end of the old tree
            # signals the pids stopped now, not every descendant then (what the new
            # child leaves to us, a subreaper, is ours too).
            stopped = signal_tree(old.group, signal.SIGSTOP, self.spared() | {child.pid},
                                  self.roots())
            self.detach()
            for fd in list(old.pipes):
                self.close_pipe(fd)
            self.close_pidfd()
            earlier = self.replaced.pids if self.replaced is not None else set()
            self.replaced = Replaced(earlier | set(stopped) | {old.pid}, old.group,
                                     time.monotonic())
        self.adopt(child)

    def ready(self):
        """The child said ``ready`` (and was answered): the replaced one's end begins."""
        if self.replaced is not None:
            self.replaced.start = time.monotonic()
            self.sweep_replaced(self.replaced.start)

    def sweep_replaced(self, now):
        """SIGKILL what is left of a replaced child's tree and reap it, every REAP_POLL
        s until all of it is reaped (or KILL_WAIT has passed)."""
        replaced = self.replaced
        if self.child is None:  # the new child died too: its stop's sweep takes in all
            self.replaced = None
            return
        if now < replaced.start:
            return
        if replaced.group is not None:  # once, while its leader is still unreaped
            try:
                os.killpg(replaced.group, signal.SIGKILL)
            except OSError:
                pass
            replaced.group = None
        for pid in replaced.pids:  # not reaped yet, so not reused: still one of them
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self.reap()  # discards from replaced.pids what it reaps
        if self.child is None or not replaced.pids or now >= replaced.until:
            if replaced.pids and self.child is not None:
                self.log.write("%s %d processes would not die: %s\n" % (
                    utcnow(), len(replaced.pids), sorted(replaced.pids)))
            self.replaced = None

    def check_stop(self, now):
        """The stop's timers: SIGKILL at the end of the grace, then sweep the dead child's
        tree (SIGKILL, reap) until no descendant is left or KILL_WAIT has passed."""
        if self.replaced is not None:
            self.sweep_replaced(now)
        child = self.child
        if child is not None:
            if child.kill_at is not None and now >= child.kill_at:
                child.kill_at = None
                child.signal_tree(signal.SIGKILL, self.spared(), self.roots())  # see reap
            return
        if self.stop_goal is None:
            return
        for pid, _ in self.reaped():
            if self.checkpoints is not None:
                self.checkpoints.reaped(pid)
        left = signal_tree(self.stopped_group, signal.SIGKILL, self.spared(), self.roots())
        if left and now < self.reap_until:
            return  # swept again after REAP_POLL
        if left:
            self.log.write("%s %d descendants would not die: %s\n" % (utcnow(), len(left), left))
        goal, self.stop_goal = self.stop_goal, None
        self.stopped_group = None
        self.owner.tree_stopped(goal)

    def stop_blocking(self):
        """Blocking stop, only where the loop no longer runs (the supervisor failed);
        the child's (code, signal), None if none ran."""
        if self.child is None:
            return None
        forks = self.checkpoints.forks if self.checkpoints is not None else ()
        # checkpoints die with us
        exit_status = self.child.stop(self.kill_grace, forks, self.roots())
        self.detach()
        self.close_pipes()
        self.close_pidfd()
        self.child = None
        return exit_status


class Replaced:
    """The tree of a child a restore replaced: stopped, killed once its successor is ready."""

    def __init__(self, pids, group, now):
        self.pids = pids      # signalled until reaped (a pid is not reused before that)
        self.group = group    # its process group, killed once
        self.start = now + REPLACED_HOLD  # if its successor never says ready
        self.until = self.start + KILL_WAIT
