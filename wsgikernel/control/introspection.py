"""Questions about a kernel's namespace and output, answered beside a running cell.

``introspect`` forwards complete / inspect / is_complete / variables to the
user-code process (the supervisor relays it while a cell runs); ``late_output``
is the output that came after its execution's record was final, which the
supervisor keeps in memory only.
"""

from ..processes import supervisor_alive
from ..protocol import KernelGone

INTROSPECT_TIMEOUT = 10.0  # the kernel bounds its own work well below this


class Introspection:
    def __init__(self, registry, link):
        self.registry = registry
        self.link = link

    def introspect(self, env_id, message):
        """complete / inspect / is_complete / variables, answered beside a running cell."""
        record = self.link.live_record(env_id)
        try:
            reply = self.link.check_reply(env_id, self.link.call(record, message,
                                                                 INTROSPECT_TIMEOUT))
        except KernelGone:
            raise self.link.gone(env_id, record) from None
        reply.pop("ok", None)
        return reply

    def late_output(self, env_id):
        """Output that came after its execution's record was final; [] with no kernel."""
        record = self.registry.read(env_id)
        if not record.get("socket") or not supervisor_alive(record.get("supervisor_pid")):
            return []
        try:
            reply = self.link.call(record, {"op": "late_output"})
        except KernelGone:
            raise self.link.gone(env_id, record) from None
        if reply.get("error") == "unknown_op":  # a kernel started by an older version
            return []
        return self.link.check_reply(env_id, reply).get("late_output", [])
