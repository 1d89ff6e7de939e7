"""provisioning/ on its own: the Popen-like interface and the local provisioner, on real
processes that are not kernels (a sleeping python), every wait bounded."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from wsgikernel.config import load_config
from wsgikernel.provisioning import LocalProvisioner, for_record
from wsgikernel.provisioning.base import KernelProvisioner
from wsgikernel.provisioning.launcher import kernel_environment
from wsgikernel.wire import address as addresses


class Scripted(KernelProvisioner):
    """A provisioner whose kernel ends when told to, after ``ends_after`` signals."""
    name = "scripted"

    def __init__(self, ends_after):
        super().__init__({})
        self.signals, self.ends_after = [], ends_after

    def poll(self):
        return 0 if len(self.signals) >= self.ends_after else None

    def send_signal(self, signum):
        self.signals.append(signum)

    def kill(self):
        self.signals.append(signal.SIGKILL)


def test_stop_terminates_then_kills_only_what_did_not_end():
    polite = Scripted(ends_after=1)
    assert polite.stop(grace=0.05) and polite.signals == [signal.SIGTERM]
    stubborn = Scripted(ends_after=2)
    assert stubborn.stop(grace=0.05) and stubborn.signals == [signal.SIGTERM, signal.SIGKILL]
    gone = Scripted(ends_after=0)
    assert gone.stop(grace=0.05) and gone.signals == []


def test_wait_is_bounded_by_its_timeout():
    start = time.monotonic()
    assert Scripted(ends_after=1).wait(0.05) is False
    assert time.monotonic() - start < 5


def test_a_record_names_its_provisioner_and_the_local_one_is_the_default():
    assert isinstance(for_record({}), LocalProvisioner)
    assert isinstance(for_record({"provisioner": "local"}), LocalProvisioner)


@pytest.mark.parametrize("transport", ["unix", "tcp"])
def test_prepare_gives_an_address_and_a_key_only_for_tcp(state_dir, transport):
    config = load_config({"state_dir": state_dir, "kernel_transport": transport}, environ={})
    record = {}
    fields = LocalProvisioner(record, config).prepare(state_dir)
    assert record["provisioner"] == "local" and fields["supervisor_pid"] is None
    kind, _ = addresses.parse(fields["address"])
    assert kind == transport
    if transport == "tcp":
        assert stat.S_IMODE(os.stat(fields["key_file"]).st_mode) == 0o600
        LocalProvisioner(record, config).cleanup()
        assert not os.path.exists(fields["key_file"])
    else:
        assert fields["key_file"] is None


@pytest.mark.skipif("wsgikernel" in sys.executable,
                    reason="this interpreter's path looks like a kernel's command line")
def test_a_process_that_is_not_a_kernel_is_never_signalled():
    """A pid in env.json that now belongs to something else (reused after a reboot)."""
    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"],
        start_new_session=True, stdout=subprocess.PIPE)
    try:
        # Popen returns while exec may still be setting up the new image, when its
        # command line reads empty (as a kernel's does while it exits): wait for it to run
        assert stranger.stdout.readline() == b"up\n"
        provisioner = LocalProvisioner({"supervisor_pid": stranger.pid, "pid": stranger.pid})
        assert not provisioner.running()  # not one of ours: its command line says so
        provisioner.send_signal(signal.SIGTERM)
        provisioner.kill()
        assert stranger.poll() is None
        assert provisioner.ended()  # someone else's: nothing of the kernel runs
    finally:
        stranger.kill()
        stranger.wait(10)
        stranger.stdout.close()


@pytest.mark.parametrize("given, expected", [
    (None, "glibc.malloc.hugetlb=1"),
    ("", "glibc.malloc.hugetlb=1"),
    ("glibc.malloc.arena_max=2", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ("glibc.malloc.hugetlb=0", "glibc.malloc.hugetlb=0"),  # the operator's choice stands
])
def test_kernels_ask_glibc_for_huge_pages_unless_told_otherwise(given, expected):
    environ = {"PATH": "/bin"}
    if given is not None:
        environ["GLIBC_TUNABLES"] = given
    assert kernel_environment(environ=environ)["GLIBC_TUNABLES"] == expected
    assert kernel_environment(environ=environ, huge_pages=False).get("GLIBC_TUNABLES") == given
