"""Questions about a kernel's namespace and output, answered beside a running cell.

``introspect`` forwards complete / inspect / is_complete / variables to the
user-code process (the supervisor relays it while a cell runs); ``late_output``
is the output that came after its execution's record was final, which the
supervisor keeps in memory only.
"""

from ..provisioning import for_record
from ..wire.connection import KernelGone
from .errors import KernelIncompatible

INTROSPECT_TIMEOUT = 10.0  # the kernel bounds its own work well below this


class Introspection:
    def __init__(self, registry, link):
        self.registry = registry
        self.link = link

    def introspect(self, env_id, kind, body):
        """complete / inspect / is_complete / variables, answered beside a running cell."""
        record = self.link.live_record(env_id)
        try:
            return self.link.call(record, kind, body, INTROSPECT_TIMEOUT)
        except KernelGone:
            raise self.link.gone(env_id, record) from None

    def late_output(self, env_id):
        """Output that came after its execution's record was final; [] with no kernel."""
        record = self.registry.read(env_id)
        if not record.get("address") or not for_record(record).running():
            return []
        try:
            return self.link.call(record, "late_output").get("late_output", [])
        except KernelGone:
            raise self.link.gone(env_id, record) from None
        except KernelIncompatible:
            return []  # a kernel of another version: what it kept is out of reach
