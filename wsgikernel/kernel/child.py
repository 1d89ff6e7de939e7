"""The user-code process as its supervisor sees it: fork, signal, stop, reap, read.

``Child.spawn()`` forks (the supervisor is single-threaded, so forking is
safe), puts the child in its own process group (so SIGINT and the final
SIGKILL reach whatever it started, and never the supervisor), gives it
``/dev/null`` as stdin and pipes as fds 1 and 2, and hands it to
``executor.run``.

Death is seen from the process itself, never only from end of file on the
control socket (a helper the child forked may hold that open): a pidfd
(``os.pidfd_open``, Linux >= 5.3) the supervisor's selector watches, and
SIGCHLD through the supervisor's wakeup fd either way.  The supervisor is a
child subreaper (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux), so whatever the
child leaves behind -- ``setsid()`` daemons included -- is re-parented to the
supervisor instead of init: ``descendants()`` finds them by walking the
``/proc/*/stat`` parent links from the supervisor's pid, ``signal_tree()``
signals them with the child's process group, and ``reap_children()`` waits
for every child that ended so no zombie stays.  Without ``/proc`` or prctl
(not Linux) only the process group is signalled.

The supervisor keeps the selector and the timers (a stop does not block its
loop: SIGTERM, then SIGKILL after ``kill_grace`` from a timer); ``stop()``
here is the blocking form, for when that loop no longer runs.  This class
only owns the descriptors and turns pipe bytes into text (UTF-8, invalid
bytes replaced).
"""

import codecs
import os
import select
import signal
import socket
import time

from ..wire.framing import FrameReader, encode
# Imported before any fork, so each user-code process shares these pages with
# its supervisor instead of importing (and owning) them itself.
from . import executor

KILL_WAIT = 5.0  # seconds SIGKILLed descendants may take to go before we give up on them


# /proc/PID/task/TID/children (Linux >= 3.5 with CONFIG_PROC_CHILDREN): a walk down from
# the supervisor reads a few small files; without it every process's stat is read.
CHILDREN_FILES = os.path.exists("/proc/self/task/%d/children" % os.getpid())


def descendants(root, spare=()):
    """Pids of every process whose chain of parents leads to ``root`` ([] without /proc),
    but for the ``spare`` pids and theirs (checkpoints)."""
    if not CHILDREN_FILES:
        return scan_descendants(root, spare)
    found, seen, todo = [], {root} | set(spare), [root]
    while todo:
        for pid in children_of(todo.pop()):
            if pid not in seen:  # a pid reused mid-walk must not loop it
                seen.add(pid)
                found.append(pid)
                todo.append(pid)
    return found


def children_of(pid):
    """The children of every thread of ``pid`` ([] if it is gone)."""
    try:
        threads = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return []
    kids = []
    for tid in threads:
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid), "rb") as handle:
                kids += [int(word) for word in handle.read().split()]
        except (OSError, ValueError):
            continue  # the thread ended meanwhile
    return kids


def scan_descendants(root, spare=()):
    """descendants() from every process's parent link (/proc/*/stat)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    children = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            fd = os.open("/proc/%s/stat" % name, os.O_RDONLY)
            try:
                data = os.read(fd, 1024)
            finally:
                os.close(fd)
            ppid = int(data.rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            if pid not in spare:
                found.append(pid)
                todo.append(pid)
    return found


def signal_tree(pgid, signum, spare=(), roots=None):
    """Signal process group ``pgid`` and every descendant of this process (and of the
    other ``roots``: a forked env's reaper, foster.py) but the ``spare`` ones
    (checkpoints, in process groups of their own); the pids found.

    The supervisor's only children are its user-code process, its checkpoints and
    what was re-parented to it, so the rest is exactly that child's tree (while one
    child runs; a restore's replaced tree is a snapshot of pids, process_tree.py)."""
    if pgid:
        try:
            os.killpg(pgid, signum)
        except OSError:
            pass
    found = []
    for root in roots or (os.getpid(),):
        found += descendants(root, spare)
    for pid in found:
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    return found


def decode_status(status):
    """(code, signal) of a waitpid status."""
    if os.WIFSIGNALED(status):
        return (None, os.WTERMSIG(status))
    return (os.WEXITSTATUS(status), None)


def reap_children():
    """[(pid, (code, signal))] of every child of this process that ended (never blocks)."""
    reaped = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped.append((pid, decode_status(status)))


def open_pidfd(pid):
    """A descriptor that becomes readable when ``pid`` exits; None where there is none."""
    opener = getattr(os, "pidfd_open", None)
    if opener is None:
        return None
    try:
        return opener(pid)
    except OSError:  # Linux < 5.3, or a seccomp filter: SIGCHLD does the job
        return None


class Child:
    def __init__(self, pid, sock, pipes, pidfd=None):
        self.pid = pid
        self.sock = sock            # the control socket (non-blocking), None once detached
        self.reader = FrameReader()
        self.pipes = pipes          # fd -> (stream name, incremental decoder)
        self.pidfd = pidfd          # readable once the child exited; None: SIGCHLD only
        self.status = None          # (code, signal) once reaped
        self.terminating = False    # SIGTERM sent by a stop
        self.kill_at = None         # monotonic time to SIGKILL the tree (a stop's grace)
        self.passed_fds = []        # descriptors it sent (SCM_RIGHTS), oldest first
        self.fostered = False       # not ours to reap: a reaper reports its end (foster.py)

    @property
    def group(self):
        """The process group that interrupts and kills go to: the child's own."""
        return self.pid

    def path_inside(self, work_dir):
        """``work_dir`` as the child sees it (a sandbox mounts it elsewhere)."""
        return work_dir

    @classmethod
    def spawn(cls, work_dir, rlimits, preload, close_inherited, run=executor.run):
        """Fork the user-code process; ``close_inherited()`` runs in the child first, then
        ``run(sock, work_dir, rlimits, preload)`` (the sandbox's execs bwrap)."""
        parent_sock, child_sock = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        os.makedirs(work_dir, exist_ok=True)
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                os.setpgid(0, 0)
                close_inherited()
                parent_sock.close()
                os.close(out_r)
                os.close(err_r)
                devnull = os.open(os.devnull, os.O_RDONLY)
                os.dup2(devnull, 0)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (devnull, out_w, err_w):
                    os.close(fd)
                run(child_sock, work_dir, rlimits, preload)
            finally:
                os._exit(1)
        try:
            os.setpgid(pid, pid)  # here too, so killpg(pid) works before the child ran
        except OSError:
            pass
        child_sock.close()
        os.close(out_w)
        os.close(err_w)
        return cls.adopted(pid, parent_sock, out_r, err_r)

    @classmethod
    def adopted(cls, pid, parent_sock, out_r, err_r):
        """The Child of a running process ``pid`` (ours to reap) and our ends of its
        control socket and fd 1/2 pipes: one just forked, or resumed from a checkpoint."""
        pidfd = open_pidfd(pid)
        parent_sock.setblocking(False)
        pipes = {}
        for fd, name in ((out_r, "stdout"), (err_r, "stderr")):
            os.set_blocking(fd, False)
            pipes[fd] = (name, codecs.getincrementaldecoder("utf-8")("replace"))
        return cls(pid, parent_sock, pipes, pidfd)

    def send(self, message):
        """Send one message; messages to the child are small and its reader never stalls."""
        if self.sock is None:
            return
        data = encode(message)
        try:
            sent = self.sock.send(data)  # non-blocking: almost always all of it at once
        except BlockingIOError:
            sent = 0
        except OSError:
            return
        if sent < len(data):  # the socket buffer is full (a large cell): finish blocking
            self.sock.setblocking(True)
            try:
                self.sock.sendall(data[sent:])
            except OSError:
                pass
            finally:
                self.sock.setblocking(False)

    def signal(self, signum):
        """Signal the child's whole process group; a group already gone is fine."""
        try:
            os.killpg(self.group, signum)
        except OSError:
            pass

    def signal_tree(self, signum, spare=(), roots=None):
        """Signal its group and every descendant (``setsid()`` ones too, see signal_tree)."""
        return signal_tree(self.group, signum, spare, roots)

    def poll(self):
        """(code, signal) once the child exited (reaped now if it was not); None while it runs."""
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped already, status unknown -- or not ours yet
                if self.fostered or (self.pidfd is not None and not self.gone()):
                    return None  # running (resumed under a replaced child still exiting),
                    # or its reaper's word on its end is still to come
                self.status = (None, None)
            else:
                if pid:
                    self.status = decode_status(status)
        return self.status

    def gone(self):
        """Whether its pidfd says it exited: all a fostered child's supervisor can see of
        its end without its reaper's report."""
        return self.pidfd is not None and bool(select.select([self.pidfd], [], [], 0)[0])

    def stop(self, grace, spare=(), roots=None):
        """Blocking stop, for when the supervisor's loop no longer runs: SIGTERM the tree,
        SIGKILL after ``grace``, reap it all (but the ``spare`` pids: forked envs');
        returns (code, signal)."""
        self.signal_tree(signal.SIGTERM, spare, roots)
        deadline = time.monotonic() + grace
        while self.poll() is None and not self.gone() and time.monotonic() < deadline:
            time.sleep(0.01)
        self.signal_tree(signal.SIGKILL, spare, roots)  # stragglers, even if it is gone
        if self.status is None:
            try:
                self.status = decode_status(os.waitpid(self.pid, 0)[1])
            except ChildProcessError:
                self.status = (None, None)
        deadline = time.monotonic() + KILL_WAIT
        while time.monotonic() < deadline:
            reap_children()
            if not self.signal_tree(signal.SIGKILL, spare, roots):
                break
            time.sleep(0.01)
        return self.status

    def close_pidfd(self):
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def flush_decoders(self):
        """(name, text) of bytes held back as an incomplete UTF-8 sequence; resets them."""
        flushed = []
        for name, decoder in self.pipes.values():
            text = decoder.decode(b"", final=True)
            decoder.reset()
            if text:
                flushed.append((name, text))
        return flushed

    def read_pipe(self, fd):
        """(stream name, text read now, at end of file?) for one of the fd pipes."""
        name, decoder = self.pipes[fd]
        chunks = []
        while True:
            try:
                data = os.read(fd, 1 << 16)
            except BlockingIOError:
                return name, decoder.decode(b"".join(chunks)), False
            except OSError:
                data = b""
            if not data:
                return name, decoder.decode(b"".join(chunks), final=True), True
            chunks.append(data)
