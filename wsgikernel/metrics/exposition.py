"""The metric families, declared once, and the Prometheus text exposition format 0.0.4.

Samples everywhere are ``{(name, labels): value}`` with ``labels`` a tuple of
(label, value) pairs.  Histograms are kept as non-cumulative ``_bucket`` counts (one
add per observation) and ``_sum``; ``render`` makes the buckets cumulative, adds
``+Inf`` and ``_count`` from them, so a histogram is consistent by construction.
Every label value is bounded by what produces it (route templates, methods the route
table knows, statuses, the reasons the code names), never a path or an env id.
"""

import bisect
import math
from collections import namedtuple

from ..kernel.counters import DURATION_BUCKETS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0, 60.0)

Family = namedtuple("Family", "name kind help buckets")


def family(name, kind, help, buckets=None):
    return Family(name, kind, help, buckets)


FAMILIES = (
    family("wsgikernel_build_info", "gauge", "Version of wsgikernel and of the Python "
           "serving it (always 1)"),
    family("wsgikernel_http_requests_total", "counter", "HTTP requests answered, by route "
           "template, method and status"),
    family("wsgikernel_http_request_duration_seconds", "histogram", "Time from a request's "
           "arrival to the end of its answer (a stream: its last byte), by route template",
           HTTP_BUCKETS),
    family("wsgikernel_executions_total", "counter", "Executions ended, by status and "
           "reason (reason empty when there is none)"),
    family("wsgikernel_execution_duration_seconds", "histogram", "Time executions ran in "
           "the kernel (those that never started are not observed)", DURATION_BUCKETS),
    family("wsgikernel_output_truncated_total", "counter", "Executions whose output went "
           "over output_cap and was truncated"),
    family("wsgikernel_kernel_deaths_total", "counter", "Kernels that died, by the reason "
           "their env shows (kernel_died, timeout, start_failed, kernel_lost)"),
    family("wsgikernel_envs", "gauge", "Environments, by state"),
    family("wsgikernel_pool_kernels", "gauge", "Pre-started kernels of the pool, by state"),
    family("wsgikernel_queue_depth", "gauge", "Executions queued behind a running one, "
           "summed over the environments"),
    family("wsgikernel_kernel_memory_bytes", "gauge", "Proportional set size (PSS) of every "
           "kernel-side process of this host: supervisors, user code and what it started, "
           "checkpoints, the pool and the forkserver"),
    family("process_cpu_seconds_total", "counter", "CPU time of the serving process "
           "(user and system)"),
    family("process_resident_memory_bytes", "gauge", "Resident memory of the serving "
           "process"),
    family("process_virtual_memory_bytes", "gauge", "Virtual memory of the serving process"),
    family("process_open_fds", "gauge", "Open file descriptors of the serving process"),
    family("process_max_fds", "gauge", "The serving process's limit on open descriptors"),
    family("process_start_time_seconds", "gauge", "When the serving process started "
           "(seconds since the epoch)"),
)
BY_NAME = {f.name: f for f in FAMILIES}
SUFFIXES = ("_bucket", "_sum", "_count")


def observe(add, name, labels, value):
    """One observation of histogram ``name`` through ``add(key, amount)`` (once per
    request: the bucket is found by bisection, its ``le`` text made once)."""
    buckets, les = BUCKET_LABELS[name]
    le = les[bisect.bisect_left(buckets, value)]  # the first bound >= value, else +Inf
    add((name + "_bucket", labels + (("le", le),)), 1.0)
    add((name + "_sum", labels), value)


def family_of(sample_name):
    if sample_name in BY_NAME:
        return sample_name
    for suffix in SUFFIXES:
        if sample_name.endswith(suffix) and sample_name[:-len(suffix)] in BY_NAME:
            return sample_name[:-len(suffix)]
    return None


def render(samples):
    """The text exposition of ``samples``: every family declared, in the order above
    (a family with no sample yet shows its HELP and TYPE only), each sorted by labels."""
    grouped = {}
    for (name, labels), value in samples.items():
        owner = family_of(name)
        if owner is not None:
            grouped.setdefault(owner, []).append((name, labels, value))
    out = []
    for fam in FAMILIES:
        out.append("# HELP %s %s\n# TYPE %s %s\n" % (fam.name, escape_help(fam.help),
                                                    fam.name, fam.kind))
        found = grouped.get(fam.name, [])
        if fam.kind == "histogram":
            out.extend(histogram_lines(fam, found))
        else:
            out.extend(line(name, labels, value) for name, labels, value in sorted(found))
    return "".join(out).encode("utf-8")


def histogram_lines(fam, found):
    series = {}  # labels without le -> {"buckets": {le: count}, "sum": s}
    for name, labels, value in found:
        if name.endswith("_bucket"):
            base = tuple(pair for pair in labels if pair[0] != "le")
            le = dict(labels).get("le")
            entry = series.setdefault(base, {"buckets": {}, "sum": 0.0})
            entry["buckets"][le] = entry["buckets"].get(le, 0.0) + value
        elif name.endswith("_sum"):
            series.setdefault(labels, {"buckets": {}, "sum": 0.0})["sum"] += value
    lines = []
    bounds = [number(b) for b in fam.buckets] + ["+Inf"]
    for labels in sorted(series):
        entry, running = series[labels], 0.0
        for le in bounds:
            running += entry["buckets"].get(le, 0.0)
            lines.append(line(fam.name + "_bucket", labels + (("le", le),), running))
        lines.append(line(fam.name + "_sum", labels, entry["sum"]))
        lines.append(line(fam.name + "_count", labels, running))
    return lines


def line(name, labels, value):
    if labels:
        text = ",".join('%s="%s"' % (key, escape_value(val)) for key, val in labels)
        return "%s{%s} %s\n" % (name, text, number(value))
    return "%s %s\n" % (name, number(value))


def number(value):
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def escape_value(text):
    return str(text).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def escape_help(text):
    return text.replace("\\", "\\\\").replace("\n", "\\n")


# Histogram name -> (its bounds, the ``le`` text of each and "+Inf" last).
BUCKET_LABELS = {f.name: (f.buckets, tuple(number(b) for b in f.buckets) + ("+Inf",))
                 for f in FAMILIES if f.buckets}
