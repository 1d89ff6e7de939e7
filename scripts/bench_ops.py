"""The operations section of scripts/bench.py (issue 21): what /metrics costs.

Three servers of its own, alike but for ``--metrics``: the execute round trip
(keep-alive, the three taking turns) with metrics counted vs with ``--metrics false``
(nothing counted, no count file), and a second ``--metrics false`` server against
the first, so the run shows its own noise beside the 3% it measures (two servers
alike differ by 1-2% in a run); and then, on the first filled to 200 envs (each
having run one cell, so each status.json carries counts), the scrape of
``GET /metrics`` against the listing ``GET /envs`` at the same 200 envs, which reads
the same files.  Every loop is bounded by a count and a deadline.
"""

import json
import os

from bench_http import (TRIVIAL, BenchError, Client, Deadline, call,
                        execute_path, figure, interleaved, p50, timed)
from bench_kernels import fill_envs, settle

OPS_COUNTS = {  # name: (full, quick)
    "ops_envs": (200, 20),      # envs on the server scraped
    "ops_scrapes": (30, 3),     # timed scrapes (and listings) there
    "ops_execute": (1000, 30),  # executes on each server, taking turns
    "ops_warmup": (30, 5),
}
OPS_DEADLINE = 600.0


def ops_section(log, fleet, state_root, pool_size, counts, notes, info):
    deadline = Deadline(OPS_DEADLINE, "the operations section")
    envs = counts["ops_envs"]
    on = fleet.wsgikernel("wsgikernel (metrics)", os.path.join(state_root, "ops-on"),
                          "--max-envs", str(envs + 10))
    off = fleet.wsgikernel("wsgikernel --metrics false", os.path.join(state_root, "ops-off"),
                           "--metrics", "false")
    again = fleet.wsgikernel("wsgikernel --metrics false (2)",
                             os.path.join(state_root, "ops-off-2"), "--metrics", "false")
    for server in (on, off, again):
        server.wait_url()
        call(server.port, "PUT", "/envs/m", expect=(201,))
        settle(server, pool_size)
    log("ops: execute with and without metrics")
    lat = interleaved({name: Client(server.port, "POST", execute_path("m"), {"code": TRIVIAL})
                       for name, server in (("on", on), ("off", off), ("again", again))},
                      counts["ops_execute"], counts["ops_warmup"])
    log("ops: scrape at %d envs" % envs)
    for env_id in fill_envs(on.port, envs, "o"):
        deadline.check()
        call(on.port, "POST", execute_path(env_id), {"code": TRIVIAL})
    settle(on, pool_size)
    _, body = call(on.port, "GET", "/metrics")
    if b'wsgikernel_envs{state="idle"} %d.0' % envs not in body:
        raise BenchError("the scrape at %d envs did not count them: %r" % (envs, body[:2000]))
    scrapes, listings = [], []
    for _ in range(counts["ops_scrapes"]):
        deadline.check()
        scrapes.append(timed(on.port, "GET", "/metrics"))
        listings.append(timed(on.port, "GET", "/envs"))
    _, listed = call(on.port, "GET", "/envs")
    if len(json.loads(listed)["envs"]) != envs:
        raise BenchError("GET /envs did not list %d envs" % envs)
    for server in (on, off, again):
        server.stop()
    ratio = p50(lat["on"]) / p50(lat["off"])
    info["ops"] = {"execute_ms": lat, "scrape_ms": scrapes, "list_ms": listings,
                   "metrics_bytes": len(body)}
    notes.append("ops: /metrics at %d envs is %d bytes" % (envs, len(body)))
    return {
        "metrics_execute_p50_ms": figure(
            p50(lat["on"]), p50(lat["off"]), target="<= 1.03x", met=ratio <= 1.03,
            label="execute p50, keep-alive, metrics counted (baseline: --metrics false)"),
        "metrics_execute_noise_p50_ms": figure(
            p50(lat["again"]), p50(lat["off"]),
            label="execute p50, a second --metrics false server (the run's noise)"),
        "metrics_scrape_p50_ms": figure(
            p50(scrapes), p50(listings), target="<= 50 ms", met=p50(scrapes) <= 50,
            label="GET /metrics p50 at %d envs (baseline: GET /envs there)" % envs),
    }
