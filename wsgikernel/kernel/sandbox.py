"""The user-code process inside bubblewrap, as its supervisor forks and drives it.

Only the user-code process is sandboxed; its supervisor stays outside, where
it owns env.json, the history and the socket web workers use, none of which
the sandbox can see.  Instead of forking ``executor.run`` (child.py), the
supervisor forks and execs ``bwrap`` (the command line of bwrap.py) with the
control socket on fd 3, which runs a fresh interpreter (``executor.main``).

Risks: bwrap runs its own init as pid 1 of the namespace, which forks the
interpreter.  Our child is the outer bwrap; the interpreter and everything it
starts share one process group led by that init (``--new-session``), whose
pid bwrap reports on ``--info-fd``: interrupts go to that group (the init
ignores them, as a namespace's pid 1 ignores signals it has no handler for).
bwrap exits with the interpreter's status, a death by signal N as 128 + N,
which ``SandboxedChild`` reads back as that signal (an ``exit(137)`` reads as
SIGKILL).  Every descriptor of the supervisor's but fds 0-4 is closed before
the exec.
"""

import fcntl
import json
import os
import signal

from .bwrap import CONTROL_FD, HOME, INFO_FD, command, environment, interpreter
from .child import Child, children_of, descendants


class SandboxedChild(Child):
    """A user-code process that is ``bwrap``: waited for as ``pid``, signalled as
    ``group`` (the sandbox's init, from the info fd), its 128 + N exits read as signal N."""

    def __init__(self, pid, sock, pipes, pidfd=None, info_fd=None):
        self._status = None
        super().__init__(pid, sock, pipes, pidfd)
        self.info_fd = info_fd
        self.info = b""           # what bwrap wrote on the info fd so far
        self._group = None
        self.interpreter = None   # host pid of the user-code interpreter (the init's child)

    def path_inside(self, work_dir):
        return HOME

    @property
    def status(self):
        return self._status

    @status.setter
    def status(self, value):
        if (value is not None and value[1] is None and value[0] is not None
                and 128 < value[0] < 128 + signal.NSIG):
            value = (None, value[0] - 128)
        self._status = value

    def signal(self, signum):
        """The sandbox's group, and the interpreter itself: inside, it is not the group
        leader, so a cell may ``setsid()`` out of the group."""
        super().signal(signum)
        if self.interpreter is None and self._group is not None:
            kids = children_of(self._group)
            self.interpreter = kids[0] if kids else None
        if self.interpreter is not None:
            try:
                os.kill(self.interpreter, signum)
            except OSError:
                pass

    def signal_tree(self, signum, spare=(), roots=None):
        """As Child's, but a stop's SIGTERM spares the two bwrap processes: the outer one
        would die of it at once and take the sandbox with it, before ``kill_grace``.
        (Never fostered: a sandbox is not forked, so ``roots`` is only ours.)"""
        if signum == signal.SIGKILL:
            return super().signal_tree(signum, spare)
        self.signal(signum)
        spared = {self.pid, self.group}
        found = descendants(os.getpid(), spare)
        for pid in found:
            if pid not in spared:
                try:
                    os.kill(pid, signum)
                except OSError:
                    pass
        return found

    @property
    def group(self):
        """The sandbox's process group; until bwrap has said which, the outer bwrap's."""
        if self._group is None and self.info_fd is not None:
            self._group = self.read_info()
        return self._group or self.pid

    def read_info(self):
        """The init's pid from bwrap's info fd (complete before the interpreter runs, so
        once the child said ``ready``); None while it is not all there.  bwrap writes it in
        several pieces and closes it: read (non-blocking) to the end of file."""
        try:
            while True:
                data = os.read(self.info_fd, 4096)
                if not data:
                    break
                self.info += data
        except BlockingIOError:
            return None  # not all written yet
        except OSError:
            pass
        os.close(self.info_fd)
        self.info_fd = None
        try:
            pid = json.loads(self.info.decode("utf-8", "replace")).get("child-pid")
        except (ValueError, AttributeError):
            return None
        return pid if isinstance(pid, int) and pid > 1 else None

    def close_pidfd(self):
        if self._group is None and self.info_fd is not None:  # while it can still be read
            self._group = self.read_info()
        super().close_pidfd()
        if self.info_fd is not None:
            os.close(self.info_fd)
            self.info_fd = None

    @classmethod
    def spawn(cls, work_dir, rlimits, preload, close_inherited, spec):
        """Fork, and exec bwrap in the child (``exec_bwrap``), with the info pipe's write end
        as its fd 4."""
        info_r, info_w = os.pipe()

        def run(sock, work_dir, rlimits, preload):
            os.close(info_r)
            exec_bwrap(spec, sock.fileno(), info_w, work_dir, rlimits, preload)

        try:
            child = super().spawn(work_dir, rlimits, preload, close_inherited, run)
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(info_w)
        os.set_blocking(info_r, False)
        child.info_fd = info_r
        return child


def place_fds(targets):
    """Make ``{target: fd}`` the inheritable fds 3, 4...: each moved out of the way first
    (a source may sit on another's target)."""
    above = max(targets) + 1
    moved = {target: fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, above)
             for target, fd in targets.items()}
    for target, fd in moved.items():
        os.dup2(fd, target)  # inheritable
        os.close(fd)


def close_fds_from(lowest):
    """Close every open fd >= ``lowest`` (from /proc/self/fd: the limit may be 1M)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = range(lowest, 1024)
    for fd in fds:
        if fd >= lowest:
            try:
                os.close(fd)
            except OSError:
                pass


def exec_bwrap(spec, sock_fd, info_fd, work_dir, rlimits, preload):
    """In the forked child (fds 0-2 already set): exec bwrap; returns only if exec failed."""
    place_fds({CONTROL_FD: sock_fd, INFO_FD: info_fd})
    close_fds_from(INFO_FD + 1)
    argv = command(spec, work_dir) + interpreter(
        {"work_dir": HOME, "rlimits": rlimits, "preload": list(preload)})
    try:
        os.chdir("/")  # only the supervisor works in the env dir (strays are found by it)
        os.execve(argv[0], argv, environment(os.environ))
    except OSError as exc:
        os.write(2, ("cannot run %s: %s\n" % (argv[0], exc)).encode("utf-8", "replace"))
