"""Provisioners: where and how a kernel runs, behind one interface (``base.py``).

The rest of the control layer asks a provisioner to launch a kernel, whether
it still runs, to signal, kill and clean it up -- never a pid, ``killpg`` or
``/proc`` itself.  ``for_record`` re-attaches to the kernel that env.json
names (its ``provisioner`` and the fields that provisioner recorded), so a
server restarted after a crash finds the kernels it left behind.  The local
provisioner is the first; the sandbox (``sandbox.py``) is a local one whose
user-code process runs inside bubblewrap; ``slurm.py`` runs a kernel as a
Slurm batch job, reached over authenticated TCP.
"""

from .base import KernelProvisioner, LaunchError
from .local import LocalProvisioner
from .sandbox import SandboxProvisioner
from .slurm import SlurmProvisioner

PROVISIONERS = {LocalProvisioner.name: LocalProvisioner,
                SandboxProvisioner.name: SandboxProvisioner,
                SlurmProvisioner.name: SlurmProvisioner}
DEFAULT = LocalProvisioner.name


def for_record(record, config=None):
    """The provisioner of the kernel ``record`` (env.json) names; the local one for a
    record that names none (written before provisioners were recorded)."""
    kind = PROVISIONERS.get(record.get("provisioner") or DEFAULT, LocalProvisioner)
    return kind(record, config)


__all__ = ["KernelProvisioner", "LaunchError", "LocalProvisioner", "PROVISIONERS",
           "SandboxProvisioner", "SlurmProvisioner", "for_record"]
