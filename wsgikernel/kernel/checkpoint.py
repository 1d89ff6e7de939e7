"""Checkpoints, in the user-code process: a forked copy of it parked at a cell boundary.

``take()`` runs on the main thread between cells (the reader thread is parked, see
inbox.py), so the copy holds the namespace exactly as the last cell left it.  One
fork, the floor of the cost: the copy is put in a process group of its own at once
(interrupts and kills of the live group never reach it) and stays our child -- we reap it between
cells once it ends -- until we die; then it is the supervisor's, a child subreaper,
which spares it when it sweeps a stopped tree.  The supervisor gets the
checkpoint's end of a socketpair (SCM_RIGHTS, with the ``checkpointed`` message).

A parked checkpoint (``park``) blocks in ``recv`` on that socket: no CPU, and its
pages shared copy-on-write with the live process until one of them writes.  End of
file (the supervisor dropped it, or exited however it ended) ends it.  It keeps a
spare, a copy of itself forked in advance (in its process group), blocked on a
socket, once the supervisor asks for it (after its answer).  ``resume`` brings the
supervisor's new control socket and stdout/stderr pipes, at once -- the old live
process is stopped, and killed only after the restore's answer: its death takes
tens of ms for a large one.  No fork then: the spare takes the checkpoint's place
(a spare of its own is asked for after the answer), and the checkpoint itself
becomes the live process -- rewires the executor's I/O around its namespace and
says ``ready``.  Its parent is the old live process until that one has exited;
then the supervisor's (a subreaper), which sees its death through its pidfd
meanwhile.

A fork into a new env (``fork_env``) is the same copy made into the parent of the
new env's user-code process: in a process group of its own it forks that process
(which moves to the new work dir), hands it to a warm supervisor the forkserver
forks, and becomes its reaper (foster.py); with no forkserver to be had it execs a
fresh supervisor interpreter that adopts the process (``--adopt``) instead.  Either
way the new env is supervised like any other and outlives its source.

Refused, with a reason the user can act on: threads a cell started that still run
(fork copies only the calling thread; ``force`` takes it anyway), and CUDA
initialised in the process (a forked child cannot use its parent's CUDA context).

Risks: locks other threads held at the fork stay held in the copy; the executor's
own (channel, inbox) are made anew on resume, and CPython re-initialises its
import lock, logging's and threading's own; a user's lock is the user's.
"""

import json
import os
import signal
import socket
import sys
import threading

from ..store import LOG_FILE
from . import foster

RESUME_FDS = 3  # the new control socket, stdout's and stderr's pipes
SPARE_ANSWER = 1.0  # s a spare may take to say it has a checkpoint's place (it blocks on it)


def refusal(force, thread_tag):
    """Why the process cannot be forked safely now, or None."""
    if not force:
        running = [t.name for t in threading.enumerate()
                   if t.is_alive() and getattr(t, thread_tag, None) is not None]
        if running:
            return ("threads started by a cell are still running (%s): a copy would have "
                    "none of them; stop them, or pass force=true" % ", ".join(running[:5]))
    if cuda_initialised():
        return "CUDA is initialised in this process: a forked copy cannot use its context"
    return None


def cuda_initialised():
    """True once the CUDA driver library is mapped (torch, cupy, jax... all load it)."""
    if "torch" in sys.modules:
        try:
            if sys.modules["torch"].cuda.is_initialized():
                return True
        except Exception:  # a torch without CUDA, or half imported
            pass
    try:
        with open("/proc/self/maps", "rb") as maps:
            return any(b"libcuda.so" in line for line in maps)
    except OSError:
        return False


def take(executor):
    """Fork a parked copy of this process; (pid, the supervisor's end of its socket).
    Only the main thread calls it, between cells.  One fork: the copy is our child
    (``executor.copies``, reaped between cells once it ends) until we die, then the
    supervisor's, a subreaper."""
    pid, sock = fork_linked()
    if pid == 0:
        try:
            os.setpgid(0, 0)  # as leave_group(), whichever of us runs first
            executor.copies = set()
            quiet(executor)
            park(executor, sock)
        finally:
            os._exit(1)
    leave_group(pid)
    watch(executor, pid)
    return pid, sock


def fork_linked():
    """fork() with a socketpair between the two: (pid, this side's end) -- 0 and the
    child's end in the child; OSError if fork failed (nothing is left open)."""
    ours, theirs = socket.socketpair()
    try:
        pid = os.fork()
    except OSError:
        ours.close()
        theirs.close()
        raise
    (ours if pid == 0 else theirs).close()
    return pid, theirs if pid == 0 else ours


def leave_group(pid):
    """Put our child ``pid`` in a process group of its own, from here, before anyone hears
    of it: the live group's interrupts and kills must never reach a copy.  The child does
    it too (as Child.spawn's do): under load either may run first, and a child that has
    exec'd can no longer be moved by its parent."""
    try:
        os.setpgid(pid, pid)
    except OSError:  # it exited already
        pass


def park(executor, sock):
    """The checkpoint's life: wait for ``resume`` (or end of file), never returns.

    A parked checkpoint keeps a spare, a copy of itself forked in advance, once the
    supervisor asks for one (``spare``: after the answer that made this checkpoint, so
    the fork's CPU is not taken from it), so that a resume costs no fork.  On
    ``resume`` (with the new control socket and pipes) the spare takes the
    checkpoint's place, holding the socket, and this process becomes the live one: its
    parent, the live process being killed, leaves it to the supervisor (a subreaper)
    as it exits.  Without a spare, the copy that parks on is forked then."""
    spare = turn = None
    while True:
        fds = next_request(sock)
        if spare is not None and ended(spare):  # killed (the OOM killer, say): reaped now
            turn.close()
            spare = turn = None
        if fds is None:  # asked for a spare
            if spare is None:  # in the spare, this returns (None, None) once it has our place
                spare, turn = fork_spare(executor)
            continue
        parked = hand_over(executor, spare, turn)
        spare = turn = None
        if parked is None:  # no spare (none asked for, it died, or no fork): a copy now
            try:
                parked = os.fork()
            except OSError:  # none to be had: the restore goes on, this checkpoint is used up
                parked = 0
            else:
                if parked == 0:  # parks on in our place
                    os.setpgid(0, 0)
                    for fd in fds:
                        os.close(fd)
                    executor.copies = set()
                    continue
                leave_group(parked)
                watch(executor, parked)
        sock.sendall(json.dumps({"pid": os.getpid(), "parked": parked}).encode())
        sock.close()
        become_live(executor, fds)


def next_request(sock):
    """The descriptors a ``resume`` brings, or None for a ``spare``; at end of file
    (dropped, or the supervisor is gone) the checkpoint exits.  A stream socket may
    join the two in one read: the descriptors tell them apart."""
    while True:
        data, fds, _, _ = socket.recv_fds(sock, 1024, RESUME_FDS)
        if not data:
            os._exit(0)
        if len(fds) == RESUME_FDS:
            return fds
        for fd in fds:
            os.close(fd)
        if not fds:
            return None


def fork_spare(executor):
    """Fork this checkpoint's spare: (its pid, the socket that hands it our place), or
    (None, None) if fork failed.  The spare (in our process group: dropping the
    checkpoint kills both) blocks on the socket: no CPU, its pages shared with ours.
    In the spare this returns (None, None) once it has been handed the place (a spare
    of its own when asked); end of file instead means the checkpoint ended, and so
    does the spare."""
    try:
        pid, turn = fork_linked()
    except OSError:
        return None, None
    if pid:
        return pid, turn
    given = turn.recv(1)
    if not given:
        os._exit(0)
    try:
        turn.send(b"k", socket.MSG_NOSIGNAL)  # taken: the checkpoint goes live on that
    except OSError:
        os._exit(0)  # it gave up on us (hand_over): it parks on itself
    turn.close()
    executor.copies = set()  # the checkpoint now
    return None, None


def ended(pid):
    """Our child ``pid`` has ended (and is reaped now)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


def hand_over(executor, spare, turn):
    """Give the spare our place (its own process group first: the live group's signals
    must never reach it); its pid once it said it has it, else None (it is gone, or
    was never forked).  A spare that does not say so within SPARE_ANSWER s is killed:
    a SIGKILLed one keeps its socket open while its memory is torn down, and a stopped
    one never reads; either would leave the checkpoint to nobody.  No SIGPIPE if it
    died meanwhile: user code may have made that signal deadly."""
    if spare is None:
        return None
    try:
        os.setpgid(spare, spare)
        turn.settimeout(SPARE_ANSWER)
        turn.send(b"t", socket.MSG_NOSIGNAL)
        if not turn.recv(1):
            raise OSError("the spare is gone")
    except OSError:  # socket.timeout too
        try:
            os.kill(spare, signal.SIGKILL)
        except OSError:
            pass
        try:
            os.waitpid(spare, 0)  # reaped, not left a zombie of the live process
        except ChildProcessError:
            pass
        return None
    finally:
        turn.close()
    watch(executor, spare)  # our child: reaped once it ends
    return spare


def quiet(executor):
    """Let go of the live process's I/O: its socket, its pipes (fds 1, 2 and the copies)."""
    try:
        executor.sock.close()
    except OSError:
        pass
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    executor.fds.close()
    executor.inbox.close()


def fork_env(executor, env_dir, work_dir, command, forkserver=None, standby=None):
    """Fork the namespace into a new env: the pid of the copy that forks the new env's
    user-code process (our child, in ``executor.copies``; the supervisor spares it) and
    then becomes its reaper, handing the process to the supervisor waiting at
    ``standby`` (started with the fork, see foster.py), else to one the forkserver at
    ``forkserver`` forks -- or, with neither, execs ``command`` + ``--adopt`` (a fresh
    interpreter).  None keeps the namespace's pages.  Only the main thread calls it,
    between cells."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)  # here too: once it has exec'd, we no longer can
            become_supervisor(executor, env_dir, work_dir, command, (standby, forkserver))
        finally:
            os._exit(1)
    leave_group(pid)  # its group is what the local provisioner signals
    watch(executor, pid)
    return pid


def watch(executor, pid):
    """``pid`` is a copy of ours: reap it as soon as it ends (a dropped checkpoint must
    not stay a zombie until the next cell).  While we have copies, SIGCHLD reaps them --
    only their pids, a user's children are the user's -- unless user code has a SIGCHLD
    handler of its own, which is never replaced (then they are reaped between cells)."""
    executor.copies.add(pid)
    if signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL:
        signal.signal(signal.SIGCHLD, executor.reaper)


def become_supervisor(executor, env_dir, work_dir, command, takers):
    """In the copy fork_env made (a process group of its own): the new user-code process,
    then its reaper with a warm supervisor (foster.py), or an exec'd supervisor."""
    try:
        quiet(executor)
        # Before the fork, not after the reaper's exec: the new process's orphans (a
        # checkpoint's copies, once a restore ended it) must come here from the start,
        # never to the source's supervisor, which ends them with the source.
        foster.become_subreaper()
        parent_sock, child_sock = socket.socketpair()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        live = os.fork()
        if live == 0:
            executor.copies = set()
            parent_sock.close()
            os.close(out_r)
            os.close(err_r)
            os.chdir(work_dir)
            executor.moved(work_dir)
            become_live(executor, (child_sock.detach(), out_w, err_w))
        leave_group(live)
        child_sock.close()
        os.close(out_w)
        os.close(err_w)
        unlimit()
        fds = [parent_sock.detach(), out_r, err_r]
        status_w = None
        for address in filter(None, takers):  # the first that can be reached takes it
            status_w = foster.hand_over(address, env_dir, live, fds)
            if status_w is not None:
                break
        if status_w is not None:  # a supervisor drives it now: we only reap
            for fd in fds:
                os.close(fd)
            foster.become_reaper(env_dir, status_w)
        log = os.open(os.path.join(env_dir, LOG_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                      0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        os.chdir(env_dir)
        for fd in fds:
            os.set_inheritable(fd, True)
        os.execv(command[0], list(command) + ["--adopt", env_dir, str(live)]
                 + [str(fd) for fd in fds])
    except BaseException:
        import traceback
        traceback.print_exc(file=sys.__stderr__)
    finally:
        os._exit(1)


def unlimit():
    """Soft limits back up to the hard ones: a supervisor is not user code (the hard ones,
    the user-code process's own, cannot be raised: forks of such envs are refused)."""
    import resource
    for name in ("RLIMIT_CPU", "RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE"):
        which = getattr(resource, name)
        soft, hard = resource.getrlimit(which)
        if soft != hard:
            try:
                resource.setrlimit(which, (hard, hard))
            except (ValueError, OSError):
                pass


def become_live(executor, fds):
    """In the new live process: its own process group, the supervisor's new channels,
    then the executor's loop around the namespace as the checkpoint had it."""
    try:
        if os.getpgid(0) != os.getpid():  # a checkpoint leads its group already
            os.setpgid(0, 0)
        control, out_w, err_w = fds
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        os.close(out_w)
        os.close(err_w)
        executor.rewire(socket.socket(fileno=control))
        executor.run_forever()
    except BaseException:
        import traceback
        traceback.print_exc(file=sys.__stderr__)
    finally:
        os._exit(1)
