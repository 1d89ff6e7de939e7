"""Entry point of one kernel: ``python -m wsgikernel.kernel ENV_DIR``.

Launched by ``wsgikernel.launcher`` with stdout a pipe to the launcher.  It
forks once more and the first process exits at once, so the supervisor is
nobody's child (a web worker never holds it as a zombie, and the worker's exit
or recycling does not touch it), then starts a new session.  The first process
writes ``pid N`` (the supervisor's) to that pipe, so a launcher can stop a
start that hangs; the supervisor writes ``ready`` when its user-code process
can execute, or ``error: ...`` if it could not start (with the traceback on
stderr, which the launcher points at kernel.log).

``--foreground ENV_DIR``: no fork and no pipe, for a batch scheduler's job.
``--adopt ENV_DIR PID CONTROL_FD OUT_FD ERR_FD``: the supervisor of a forked env,
exec'd where its user-code process was forked (kernel/checkpoint.py).
"""

import os
import sys

# What the interpreter had loaded before any of the kernel's imports: a ``python``
# started in a directory holding an ``os.py`` still has the real ``os``, so the
# user-code process lets the work dir shadow every module but these (executor.run).
INTERPRETER_MODULES = frozenset(sys.modules)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[0] == "--foreground":
        return foreground(os.path.abspath(argv[1]))
    if argv[0] == "--adopt":
        return adopt(os.path.abspath(argv[1]), tuple(int(arg) for arg in argv[2:6]))
    env_dir = os.path.abspath(argv[0])
    pid = os.fork()
    if pid > 0:
        try:
            os.write(1, b"pid %d\n" % pid)
        finally:
            os._exit(0)
    os.setsid()
    try:
        try:
            from .supervisor import Supervisor
        except BaseException:
            import traceback
            traceback.print_exc()  # stderr is the env's kernel.log; supervise() logs its own
            sys.stderr.flush()
            raise
        code = supervise(Supervisor, env_dir, ready_fd=1)
    except BaseException as exc:
        try:
            os.write(1, ("error: %s: %s\n" % (type(exc).__name__, exc)).encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


def foreground(env_dir):
    """The kernel of a batch job (provisioning/slurm.py): the supervisor is the job's own
    process (the scheduler tracks and signals it), and it reports ready in env.json only."""
    if not os.path.isdir(env_dir):
        sys.stderr.write("the env directory %s is not visible on this host: the state dir "
                         "must be on a file system the compute nodes share\n" % env_dir)
        os._exit(3)
    try:
        from .supervisor import Supervisor
        Supervisor.batch_job = os.environ.get("SLURM_JOB_ID")
        code = supervise(Supervisor, env_dir, ready_fd=None)
    except BaseException:
        code = 1
    sys.stderr.flush()
    os._exit(code)


def adopt(env_dir, child):
    """The supervisor of an env forked from another (kernel/checkpoint.py fork_env): it was
    exec'd in the process that forked ``child`` (pid, control socket, stdout and stderr
    pipes), the new env's user-code process, and reports ready in env.json only."""
    try:
        from .supervisor import Supervisor
        Supervisor.adopting = child
        code = supervise(Supervisor, env_dir, ready_fd=None)
    except BaseException:
        code = 1
    sys.stderr.flush()
    os._exit(code)


def supervise(Supervisor, env_dir, ready_fd):
    """Serve one env until it stops.  A failure is logged in kernel.log, recorded in
    env.json -- ``dead``, reason ``start_failed`` (with ``detail``) if the kernel was not
    ready yet, ``supervisor_failed`` after -- and raised."""
    try:
        supervisor = Supervisor(env_dir, ready_fd)
    except Exception:
        import traceback
        from ..store import utcnow
        os.write(2, ("%s the supervisor could not start\n%s" % (
            utcnow(), traceback.format_exc())).encode("utf-8", "replace"))  # kernel.log
        raise
    if not supervisor.ops.checkpointing.handed_over():
        return 0  # a standby no fork came to: it leaves env.json alone (foster.py)
    try:
        supervisor.run()
    except Exception as exc:
        supervisor.files.log_exception("supervisor failed")
        supervisor.tree.stop_blocking()
        if os.path.isdir(env_dir):
            if supervisor.ready_fd is not None:
                supervisor.record.update(state="dead", reason="start_failed", pid=None,
                                         detail="the supervisor failed: %s: %s"
                                         % (type(exc).__name__, exc))
            else:
                supervisor.record.update(state="dead", reason="supervisor_failed", pid=None)
            try:
                supervisor.save()
            except OSError:
                pass
        raise
    return 0


if __name__ == "__main__":
    main()
