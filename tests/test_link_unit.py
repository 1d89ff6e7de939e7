"""control/link.py's pure pieces."""

from wsgikernel.control import link


def test_wait_until_polls_from_first_doubling_up_to_interval(monkeypatch):
    pauses = []
    monkeypatch.setattr(link.time, "sleep", pauses.append)
    answers = iter([False] * 6 + [True])
    assert link.wait_until(lambda: next(answers), 60, interval=0.002, first=0.00025)
    assert pauses == [0.00025, 0.0005, 0.001, 0.002, 0.002, 0.002]


def test_wait_until_without_first_polls_every_interval_and_gives_up(monkeypatch):
    pauses = []
    clock = iter(range(0, 1000, 5))  # 5 s a call: past the deadline (15) on the fifth
    monkeypatch.setattr(link.time, "sleep", pauses.append)
    monkeypatch.setattr(link.time, "monotonic", lambda: next(clock))
    assert not link.wait_until(lambda: False, 15, interval=0.5)
    assert pauses == [0.5, 0.5, 0.5]
