"""The provisioner interface, after ``subprocess.Popen`` and jupyter_client's provisioners.

A provisioner holds one kernel (its supervisor and everything under it):

- ``prepare(env_dir)``: the fields env.json must hold before the launch
  (``provisioner``, ``address``, ``key_file``...); the kernel reads them;
- ``launch(env_dir, timeout)``: start it and wait until it serves, else
  LaunchError (nothing of it is left running);
- ``poll()``: None while it runs, else its exit status (-1 when not known:
  it was not our child); ``wait(timeout)``: True once it ended;
- ``send_signal(signum)``, ``terminate()``, ``kill()`` (its whole tree);
- ``cleanup()``: what it leaves behind (a socket file, a key) once it ended;
- ``info()``: what identifies it for a re-attach, kept in env.json;
- ``details(env)``: what the env object shows of it (a batch job's state);
  ``waiting()`` and ``abandoned()``: why a kernel not started yet waits, or never
  will (a queued job, one that ended first).

It is built from env.json (``record``), so any worker process, and a
restarted server, can make one for a kernel some other process launched.
Nothing here blocks longer than the timeout it is given.
"""

import signal
import time

WAIT_FIRST = 0.0005    # seconds before the first poll of a process that is not our child,
WAIT_LONGEST = 0.01    # doubling up to this


class LaunchError(RuntimeError):
    """The kernel did not come up; ``str()`` says why."""


class KernelProvisioner:
    name = None
    wait_first, wait_longest = WAIT_FIRST, WAIT_LONGEST  # wait()'s polling

    def __init__(self, record, config=None):
        self.record = record
        self.config = config

    def prepare(self, env_dir):
        raise NotImplementedError

    def launch(self, env_dir, timeout):
        raise NotImplementedError

    def poll(self):
        raise NotImplementedError

    def send_signal(self, signum):
        raise NotImplementedError

    def kill(self):
        raise NotImplementedError

    def cleanup(self):
        pass

    def info(self):
        return {"provisioner": self.name}

    def huge_pages(self):
        """Whether the kernel's interpreter asks for huge pages (``kernel_huge_pages``)."""
        return getattr(self.config, "kernel_huge_pages", True)

    def details(self, env):
        """Fields the env object ``env`` gets from where the kernel runs ({}: none)."""
        return {}

    def local_pids(self):
        """The pids of this kernel's processes on this host whose trees are the kernel
        (its supervisor): what /metrics sums the memory of; () where it runs elsewhere."""
        return ()

    @classmethod
    def details_of(cls, pairs):
        """details() of many (record, env) pairs at once, in order (a listing)."""
        return [cls(record).details(env) for record, env in pairs]

    def waiting(self):
        """Why a kernel that has not started yet waits on something outside us (a queued
        batch job), as a sentence; None if it does not."""
        return None

    def abandoned(self):
        """Why a kernel that has not started yet never will (its job ended), as a
        sentence; None if it may still start."""
        return None

    # -- what follows from the above ---------------------------------------------------

    def running(self):
        return self.poll() is None

    def ended(self):
        """True once nothing of the kernel runs (what ``wait`` waits for)."""
        return self.poll() is not None

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        """True if the kernel ended within ``timeout`` seconds (polled, from every 0.5 ms
        up to every 10: it is usually not a child of the asking process, and is most
        often asked right after it was told to exit)."""
        deadline = time.monotonic() + timeout
        interval = self.wait_first
        while not self.ended():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(interval, left))
            interval = min(interval * 2, self.wait_longest)
        return True

    def stop(self, grace):
        """SIGTERM, then SIGKILL after ``grace`` seconds; True if it ended."""
        if self.poll() is not None:
            return True
        self.terminate()
        if self.wait(grace):
            return True
        self.kill()
        return self.wait(grace)
