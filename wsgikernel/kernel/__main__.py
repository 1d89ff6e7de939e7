"""Entry point of one kernel: ``python -m wsgikernel.kernel ENV_DIR``.

Launched by ``wsgikernel.launcher`` with stdout a pipe to the launcher.  It
forks once more and the first process exits at once, so the supervisor is
nobody's child (a web worker never holds it as a zombie, and the worker's exit
or recycling does not touch it), then starts a new session.  The supervisor
writes ``ready`` to that pipe when its user-code process can execute, or
``error: ...`` if it could not start.
"""

import os
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    env_dir = os.path.abspath(argv[0])
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    try:
        from .supervisor import supervise
        code = supervise(env_dir, ready_fd=1)
    except BaseException as exc:
        try:
            os.write(1, ("error: %s: %s\n" % (type(exc).__name__, exc)).encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


if __name__ == "__main__":
    main()
