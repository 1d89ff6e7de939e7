"""The kernel pool (pool.py): pre-started kernels claimed by creates, refilled behind them.

Real kernels; waits are polls with a hang guard.
"""

import json
import os

from helpers import wait_for


def pooled_ready(state_dir):
    ready = 0
    folder = os.path.join(state_dir, "pool")
    for name in os.listdir(folder) if os.path.isdir(folder) else ():
        try:
            with open(os.path.join(folder, name, "env.json")) as handle:
                ready += json.load(handle).get("state") == "idle"
        except (OSError, ValueError):
            continue
    return ready


def refilling(pool):
    if pool._filling.acquire(blocking=False):
        pool._filling.release()
        return False
    return True


def test_a_burst_of_creates_is_made_up_for_when_the_refill_ends(make_test_app, state_dir):
    app = make_test_app(pool_size=2)
    pool = app.manager.pool
    pool.fill()
    assert pooled_ready(state_dir) == 2
    for n in range(5):  # the first claim starts a refill; the others find it running
        app.manager.create("burst%d" % n)
    wait_for(lambda: not refilling(pool) and pooled_ready(state_dir) == 2,
             message="the pool is full again")
    assert sorted(app.manager.ids()) == ["burst%d" % n for n in range(5)]


def test_a_create_that_lands_during_a_refill_is_made_up_for(make_test_app, state_dir,
                                                            monkeypatch):
    app = make_test_app(pool_size=2)
    pool = app.manager.pool
    started = []
    start_one = pool.start_one

    def start_and_claim():
        start_one()
        started.append(1)
        if len(started) == 1:  # a create in another worker takes the kernel just started
            pool.claim("during", app.manager.registry.reserve("during"),
                       {"created": "2026-12-01T00:00:00Z"})

    monkeypatch.setattr(pool, "start_one", start_and_claim)
    pool.fill()
    assert pooled_ready(state_dir) == 2, "the refill stopped short"
    assert app.manager.describe("during")["state"] == "idle"
