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
- ``info()``: what identifies it for a re-attach, kept in env.json.

It is built from env.json (``record``), so any worker process, and a
restarted server, can make one for a kernel some other process launched.
Nothing here blocks longer than the timeout it is given.
"""

import signal
import time

WAIT_INTERVAL = 0.005  # seconds between polls of a process that is not our child


class LaunchError(RuntimeError):
    """The kernel did not come up; ``str()`` says why."""


class KernelProvisioner:
    name = None

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

    # -- what follows from the above ---------------------------------------------------

    def running(self):
        return self.poll() is None

    def terminate(self):
        self.send_signal(signal.SIGTERM)

    def wait(self, timeout):
        """True if the kernel ended within ``timeout`` seconds (polled: it is usually not
        a child of the asking process)."""
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(WAIT_INTERVAL)
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
