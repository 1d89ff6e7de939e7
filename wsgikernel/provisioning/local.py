"""The local provisioner: a kernel is a process tree on this host, found by its pids.

The supervisor is a session leader (``start_new_session``) whose pid env.json
records as ``supervisor_pid``, its user-code process leads a process group of
its own (``pid``).  Liveness is ``supervisor_alive`` (the pid runs and is one
of ours: after a reboot a pid may be reused); signals go to whole groups.  The
kernel listens on a Unix socket in the private runtime directory, or -- with
``kernel_transport = tcp`` -- on 127.0.0.1 with a per-kernel key (wire/auth.py),
the transport kernels on other hosts use.

A kernel is forked by the state dir's forkserver (provisioning/forkserver.py:
milliseconds, pages shared) unless ``kernel_forkserver`` is off, the env has a
``memory_limit`` (glibc's ``MALLOC_ARENA_MAX`` must be in its environment from
the start) or the forkserver cannot be had; then it is a new interpreter.
"""

import os
import secrets
import signal

from ..statedir import runtime_dir
from ..wire import address as addresses
from ..wire.auth import create_key, remove_key
from .base import KernelProvisioner, LaunchError
from .forkserver import Forkserver, ForkserverUnavailable
from .launcher import launch_kernel, wait_ready
from .processes import kill_group, pid_ended, supervisor_alive, supervisors_in


class LocalProvisioner(KernelProvisioner):
    name = "local"

    def prepare(self, env_dir):
        transport = getattr(self.config, "kernel_transport", None) or "unix"
        if transport == "tcp":
            fields = {"address": "tcp:127.0.0.1:0", "key_file": create_key(env_dir)}
        else:
            path = os.path.join(runtime_dir(), secrets.token_hex(6) + ".sock")
            fields = {"address": "unix:" + path, "key_file": None}
        fields.update(self.info(), supervisor_pid=None, pid=None)
        self.record.update(fields)
        return fields

    def launch(self, env_dir, timeout):
        memory_limited = (self.record.get("limits") or {}).get("memory_limit") is not None
        if not memory_limited and getattr(self.config, "kernel_forkserver", False):
            try:
                report = self._forkserver().spawn(env_dir)
            except ForkserverUnavailable as exc:
                if exc.sent:  # it may be forking the kernel: never start a second one
                    raise LaunchError("the forkserver took the request but did not answer: "
                                      "%s" % exc) from None
            else:
                return wait_ready(report, timeout)
        proc = launch_kernel(env_dir, memory_limited, self.huge_pages())
        wait_ready(proc.stdout, timeout, proc)

    def forkserver(self):
        """The address of the state dir's forkserver, for a fork of this env to hand its
        new process to (kernel/foster.py); None if ``kernel_forkserver`` is off or it
        cannot be had (the fork execs its new supervisor then)."""
        if not getattr(self.config, "kernel_forkserver", False):
            return None
        try:
            return self._forkserver().ensure()
        except ForkserverUnavailable:
            return None

    def standby(self, env_dir):
        """A supervisor forked in advance for a fork into ``env_dir`` (forkserver.py
        ``Standby``), or None if it cannot be had (the fork's copy then asks the
        forkserver, once it has the process)."""
        try:
            return self._forkserver().standby(env_dir)
        except ForkserverUnavailable:
            return None

    def _forkserver(self):
        return Forkserver(self.config.state_dir, self.huge_pages())

    def poll(self):
        return None if supervisor_alive(self.record.get("supervisor_pid")) else -1

    def local_pids(self):
        pid = self.record.get("supervisor_pid")
        return (pid,) if supervisor_alive(pid) else ()

    def send_signal(self, signum):
        if supervisor_alive(self.record.get("supervisor_pid")):  # never a reused pid's group
            kill_group(self.record.get("supervisor_pid"), signum)

    def kill(self):
        """SIGKILL the supervisor's group (if it is still one of ours: a pid is reused), and
        the user-code group it may have left."""
        for pid in (self.record.get("supervisor_pid"), self.record.get("pid")):
            if supervisor_alive(pid):  # still one of ours: never a reused pid's group
                kill_group(pid, signal.SIGKILL)

    def cleanup(self):
        addresses.remove(self.record.get("address") or self.record.get("socket"))  # or v1
        remove_key(self.record.get("key_file"))

    @classmethod
    def strays(cls, env_dir, config=None):
        """Provisioners of our supervisors working in ``env_dir`` that no readable
        env.json names (a record that cannot be read, moved aside)."""
        return [cls({"supervisor_pid": pid}, config) for pid in supervisors_in(env_dir)]

    def ended(self):
        """True once the supervisor's process is gone, not merely exiting."""
        return pid_ended(self.record.get("supervisor_pid"))
