"""Where state lives: the durable state directory and the short runtime directory.

The state directory holds one subdirectory per environment (``envs/<id>/``)
and the shared token file; it must survive logout and reboot, so it defaults to
the XDG *state* home, not the runtime dir.  Sockets go in a separate per-user
runtime directory with short names: Unix socket paths are limited to about
107 bytes, and a pytest temp path plus a 64-character env id is longer.

Both directories are created 0700 and refused when another user owns them or
when group/others may write to them: anyone who can write there can put a
socket or a token in our way.
"""

import contextlib
import os
import stat
import tempfile


def default_state_dir(environ=None):
    environ = os.environ if environ is None else environ
    if environ.get("WSGIKERNEL_STATE_DIR"):
        return os.path.abspath(environ["WSGIKERNEL_STATE_DIR"])
    base = environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "wsgikernel")


class UnsafeDirectory(RuntimeError):
    pass


def ensure_private_dir(path):
    """Create ``path`` (and parents) 0700 if absent; refuse it if it is not safely ours."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirectory("%s is not a directory" % path)
    if info.st_uid != os.getuid():
        raise UnsafeDirectory("%s belongs to uid %d, not to this user (uid %d)"
                              % (path, info.st_uid, os.getuid()))
    if info.st_mode & 0o022:
        raise UnsafeDirectory("%s is writable by group or others (mode %o); chmod 700 it"
                              % (path, stat.S_IMODE(info.st_mode)))
    return path


def runtime_dir(environ=None):
    """A short private directory for kernel sockets."""
    environ = os.environ if environ is None else environ
    base = environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        path = os.path.join(base, "wsgikernel")
    else:
        path = os.path.join(tempfile.gettempdir(), "wsgikernel-%d" % os.getuid())
    return ensure_private_dir(path)


def write_private_file(path, text):
    """Create ``path`` 0600 holding ``text`` unless it exists; return what the file holds.

    The content is written to a temporary file first and linked into place, so a
    concurrent reader (another worker) never sees the file empty or half written.
    """
    folder = os.path.dirname(path)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".tmp-")  # mkstemp creates 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        try:
            os.link(temp, path)
        except FileExistsError:
            return read_private_file(path)
        return text
    finally:
        os.unlink(temp)


def read_private_file(path):
    info = os.stat(path)
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise UnsafeDirectory("%s must belong to this user with mode 600 (it has %o)"
                              % (path, stat.S_IMODE(info.st_mode)))
    with open(path) as handle:
        return handle.read()


@contextlib.contextmanager
def file_lock(path):
    """Hold an exclusive ``flock`` on ``path`` (created if absent): one process at a time."""
    import fcntl
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
