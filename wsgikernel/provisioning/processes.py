"""Local processes by pid: alive, one of our kernels, signal a whole group, find by cwd.

The local provisioner's view of a kernel (provisioning/local.py): a pid is
only meaningful on this host, so nothing but the local provisioner calls
these.  A pid can be reused after a reboot, hence ``supervisor_alive`` also
checks the command line.
"""

import os

from ..kernel.checkpoints import pss


def pid_alive(pid):
    """True if ``pid`` runs and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return True  # no /proc: trust kill(0)


def supervisor_alive(pid):
    """True if ``pid`` runs and is one of our kernels (after a reboot a pid may be reused)."""
    if not pid_alive(pid):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return b"wsgikernel" in handle.read()
    except OSError:
        return True  # no /proc: trust the pid


def pid_ended(pid):
    """True once ``pid`` is gone for good, or is someone else's: unlike
    ``not supervisor_alive``, a kernel in the middle of exiting (its command line
    already empty) has not ended yet."""
    if not pid_alive(pid):
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            text = handle.read()
    except OSError:
        return False
    return bool(text) and b"wsgikernel" not in text


def kill_group(pid, signum):
    if pid:
        try:
            os.killpg(pid, signum)
        except OSError:
            pass


def supervisors_in(env_dir):
    """pids of our supervisors whose working directory is ``env_dir`` (the launcher's cwd;
    a claimed pool kernel's follows its directory's rename).  Linux /proc; [] elsewhere."""
    target = os.path.realpath(env_dir)
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    found = []
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if os.readlink("/proc/%s/cwd" % name) != target:
                continue
        except OSError:
            continue
        if supervisor_alive(int(name)):
            found.append(int(name))
    return found


def tree_memory(roots):
    """Summed proportional set size (bytes) of the processes ``roots`` and all their
    descendants: one pass over /proc for the parent links, then each one's
    smaps_rollup.  Processes that end meanwhile count nothing; no /proc: 0."""
    children = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return 0
    for name in names:
        if name.isdigit():
            parent = parent_of(int(name))
            if parent is not None:
                children.setdefault(parent, []).append(int(name))
    seen, todo, total = set(), [pid for pid in roots if isinstance(pid, int)], 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += pss(pid) or 0
        todo.extend(children.get(pid, ()))
    return total


def parent_of(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None

