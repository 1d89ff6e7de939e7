"""The pure pieces of /metrics and the request log: count files, the text exposition
(read back by prometheus_client's own parser), kernels' published counts, request ids,
the JSON log formatter."""

import json
import logging
import multiprocessing
import os
import random

import pytest
from prometheus_client.parser import text_string_to_metric_families

from wsgikernel import requestid
from wsgikernel.kernel.counters import KernelCounters
from wsgikernel.metrics import files, kernels
from wsgikernel.metrics.exposition import FAMILIES, observe, render
from wsgikernel.telemetry import JsonFormatter

REQUESTS = "wsgikernel_http_requests_total"


def families(samples):
    return {f.name: f for f in text_string_to_metric_families(render(samples).decode())}


def value_of(family, **labels):
    found = [s.value for s in family.samples if all(s.labels.get(k) == v
                                                    for k, v in labels.items())]
    assert len(found) == 1, (labels, family.samples)
    return found[0]


# -- count files ----------------------------------------------------------------------

def test_a_count_file_counts_in_a_file_other_processes_read(tmp_path):
    counts = files.CountFile(str(tmp_path / "metrics"))
    key = (REQUESTS, (("route", "/envs"), ("method", "GET"), ("status", "200")))
    for _ in range(3):
        counts.add(key)
    counts.add((REQUESTS, (("route", "/é"), ("method", "GET"), ("status", "404"))), 2)
    assert counts.samples()[key] == 3
    assert os.stat(counts.path).st_mode & 0o777 == 0o600
    samples, alive = files.read_count_file(counts.path)
    assert alive and samples[key] == 3  # we hold its lock: alive
    assert samples[(REQUESTS, (("route", "/é"), ("method", "GET"), ("status", "404")))] == 2


def test_a_count_file_grows_past_its_first_mapping(tmp_path):
    counts = files.CountFile(str(tmp_path / "metrics"))
    for n in range(3000):  # ~100 bytes each: several times INITIAL_SIZE
        counts.add(("wsgikernel_test", (("n", "%05d" % n),)), n)
    assert os.path.getsize(counts.path) > files.INITIAL_SIZE
    samples, _ = files.read_count_file(counts.path)
    assert len(samples) == 3000 and samples[("wsgikernel_test", (("n", "02999"),))] == 2999


def _count_in_child(directory, amount):
    counts = files.CountFile(directory)
    counts.add(("wsgikernel_test", ()), amount)


def test_files_of_processes_that_are_gone_are_archived_once(tmp_path):
    directory = str(tmp_path / "metrics")
    context = multiprocessing.get_context("fork")
    for amount in (1, 2):
        child = context.Process(target=_count_in_child, args=(directory, amount))
        child.start()
        child.join(30)
        assert child.exitcode == 0
    own = files.CountFile(directory)
    own.add(("wsgikernel_test", ()), 10)
    with files.locked(directory):
        assert files.collect(own)[("wsgikernel_test", ())] == 13
    left = sorted(os.listdir(directory))
    assert left == sorted([".lock", files.ARCHIVE, os.path.basename(own.path)]), left
    with files.locked(directory):  # again: the archive counts them, nothing twice
        assert files.collect(own)[("wsgikernel_test", ())] == 13


def test_an_archive_that_names_a_file_still_there_does_not_count_it_twice(tmp_path):
    """A fold that stopped after writing the archive, before removing the files."""
    directory = str(tmp_path / "metrics")
    context = multiprocessing.get_context("fork")
    child = context.Process(target=_count_in_child, args=(directory, 5))
    child.start()
    child.join(30)
    dead = [name for name in os.listdir(directory) if name.endswith(files.SUFFIX)]
    kept = os.path.join(directory, "kept")
    os.link(os.path.join(directory, dead[0]), kept)
    own = files.CountFile(directory)
    with files.locked(directory):
        assert files.collect(own)[("wsgikernel_test", ())] == 5
    os.rename(kept, os.path.join(directory, dead[0]))  # as if its unlink never happened
    with files.locked(directory):
        assert files.collect(own)[("wsgikernel_test", ())] == 5


def test_a_state_dir_that_cannot_be_written_counts_in_memory(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    counts = files.CountFile(str(blocker / "metrics"))
    counts.add(("wsgikernel_test", ()), 4)
    assert counts.path is None
    with files.locked(counts.directory):
        assert files.collect(counts) == {("wsgikernel_test", ()): 4}


@pytest.mark.parametrize("data", [b"", b"WKM", b"XXXX\x10\x00\x00\x00" + b"\0" * 8,
                                  b"WKM1\xff\xff\x00\x00\x05\x00\x00\x00{\"a\"",
                                  bytes(random.Random(7).getrandbits(8) for _ in range(64))],
                         ids=["empty", "short", "foreign", "torn", "noise"])
def test_a_torn_or_foreign_count_file_reads_as_nothing_or_what_is_whole(data):
    assert isinstance(files.parse(data), dict)


# -- the exposition -----------------------------------------------------------------

def test_every_declared_family_is_exposed_with_help_and_type():
    parsed = families({})
    for family in FAMILIES:
        name = family.name[:-len("_total")] if family.kind == "counter" else family.name
        assert parsed[name].type == family.kind and parsed[name].documentation


def test_histograms_are_cumulative_and_count_what_was_observed():
    samples = {}

    def add(key, amount=1.0):
        samples[key] = samples.get(key, 0.0) + amount

    name = "wsgikernel_http_request_duration_seconds"
    for seconds in (0.0005, 0.003, 0.003, 0.2, 1000.0):
        observe(add, name, (("route", "/envs"),), seconds)
    family = families(samples)[name]
    buckets = [(s.labels["le"], s.value) for s in family.samples if s.name.endswith("_bucket")]
    values = [v for _, v in buckets]
    assert values == sorted(values) and buckets[-1] == ("+Inf", 5.0)
    assert dict(buckets)["0.001"] == 1 and dict(buckets)["0.005"] == 3
    count = [s.value for s in family.samples if s.name == name + "_count"]
    total = [s.value for s in family.samples if s.name == name + "_sum"]
    assert count == [5.0] and total[0] == pytest.approx(1000.2065)


def test_label_values_are_escaped():
    weird = 'a"b\\c\nd'
    parsed = families({(REQUESTS, (("route", weird), ("method", "GET"), ("status", "200"))): 1})
    assert value_of(parsed["wsgikernel_http_requests"], route=weird) == 1


# -- what kernels count -------------------------------------------------------------

def test_kernel_counts_become_samples(tmp_path):
    counters = KernelCounters(str(tmp_path))
    for record in ({"status": "ok", "duration": 0.002}, {"status": "ok", "duration": 3.0},
                   {"status": "error", "duration": 0.01, "truncated": True},
                   {"status": "aborted", "reason": "cancelled", "duration": None}):
        counters.execution_ended(record)
    counters.died("kernel_died")
    samples = kernels.env_samples(str(tmp_path))  # from the file, as a scrape reads it
    assert samples == kernels.samples_of(counters.data)
    parsed = families(samples)
    executions = parsed["wsgikernel_executions"]
    assert value_of(executions, status="ok", reason="") == 2
    assert value_of(executions, status="aborted", reason="cancelled") == 1
    assert len(executions.samples) == 3  # what never happened is not a series
    assert value_of(parsed["wsgikernel_output_truncated"]) == 1
    assert value_of(parsed["wsgikernel_kernel_deaths"], reason="kernel_died") == 1
    duration = parsed["wsgikernel_execution_duration_seconds"]
    assert [s.value for s in duration.samples if s.name.endswith("_count")] == [3.0]
    assert [s.value for s in duration.samples if s.name.endswith("_sum")] == [pytest.approx(3.012)]


def test_each_supervisor_counts_from_zero_in_a_new_file(tmp_path):
    first = KernelCounters(str(tmp_path))
    first.execution_ended({"status": "ok", "duration": 0.1})
    kept = kernels.env_samples(str(tmp_path))
    second = KernelCounters(str(tmp_path))  # a new kernel in the env, once retired
    assert kernels.env_samples(str(tmp_path)) == kernels.samples_of(second.data) != kept
    assert sorted(os.listdir(str(tmp_path))) == [kernels.COUNTS_FILE]  # no temp left
    first.execution_ended({"status": "ok", "duration": 0.1})  # its old inode: not read
    assert kernels.env_samples(str(tmp_path)) == kernels.samples_of(second.data)


def test_counts_that_cannot_be_written_are_kept_in_memory(tmp_path):
    (tmp_path / "file").write_text("")
    for directory in (None, str(tmp_path / "file"), str(tmp_path / "missing")):
        counters = KernelCounters(directory)
        counters.execution_ended({"status": "ok", "duration": 0.1})
        samples = kernels.samples_of(counters.data)
        assert samples[(kernels.EXECUTIONS, (("status", "ok"), ("reason", "")))] == 1


def _kernel_file(values):
    return kernels.HEADER.pack(kernels.MAGIC, len(values)) + b"".join(
        kernels.VALUE.pack(value) for value in values)


@pytest.mark.parametrize("data", [
    b"", b"garbage", b'{"metrics": {"executions": {"ok ": 1}}}',
    b"WKK1" + b"\xff" * 4 + b"\0" * 64,                  # a slot count that is not ours
    _kernel_file([1.0] * 3),                            # another layout
    _kernel_file([1.0] * len(kernels.KEYS))[:-1],       # cut short
])
def test_a_forged_kernel_counts_file_adds_nothing(tmp_path, data):
    assert kernels.samples_of(data) == {}
    (tmp_path / kernels.COUNTS_FILE).write_bytes(data)
    assert kernels.env_samples(str(tmp_path)) == {}


def test_a_forged_kernel_counts_file_adds_only_known_series_and_sane_values():
    rng = random.Random(7)
    values = [rng.choice([float("nan"), float("inf"), -1.0, 0.0, 2.0, 1e300])
              for _ in kernels.KEYS]
    samples = kernels.samples_of(_kernel_file(values))
    assert set(samples) <= set(kernels.KEYS)
    assert all(0 <= value < float("inf") for value in samples.values())
    assert len(samples) == sum(1 for v in values if 0 < v < float("inf")) + sum(
        1 for key, v in zip(kernels.KEYS, values)
        if v == 0 and key[0].startswith(kernels.DURATION) | (key[0] == kernels.TRUNCATED))


def test_a_fifo_in_place_of_the_kernel_counts_file_never_blocks(tmp_path):
    os.mkfifo(str(tmp_path / kernels.COUNTS_FILE))
    assert kernels.env_samples(str(tmp_path)) == {}


def _kernel_reader(directory, reads, out):
    last, drops = {}, 0
    for _ in range(reads):
        for key, value in kernels.env_samples(directory).items():
            if value < last.get(key, 0.0):
                drops += 1
            last[key] = value
    out.put(drops)


def test_a_reader_never_sees_a_kernel_count_go_down_while_it_is_written(tmp_path):
    counters = KernelCounters(str(tmp_path))
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    reader = context.Process(target=_kernel_reader, args=(str(tmp_path), 5000, out))
    reader.start()
    try:
        for _ in range(200000):
            if not reader.is_alive():
                break
            counters.execution_ended({"status": "ok", "duration": 0.001})
        assert out.get(timeout=30) == 0
    finally:
        reader.join(30)


# -- request ids and log lines --------------------------------------------------------

@pytest.mark.parametrize("given", ["abc", "0f8fad5b-d9cb-469f-a165-70867728950e",
                                   "Root=1-67891233-abcdef012345678912345678;Parent=53995c",
                                   "x" * 200])
def test_request_ids_proxies_send_are_accepted(given):
    assert requestid.valid(given)


@pytest.mark.parametrize("given", ["", "a b", 'a"b', "x" * 201, "caf\u00e9", "a\nb", "a\\b"])
def test_other_request_ids_are_refused(given):
    assert not requestid.valid(given)


def test_generated_request_ids_are_valid_and_distinct():
    ids = {requestid.generate() for _ in range(100)}
    assert len(ids) == 100 and all(requestid.valid(i) for i in ids)


def test_json_log_lines_carry_their_fields_and_tracebacks():
    record = logging.LogRecord("wsgikernel.access", logging.INFO, __file__, 1, "request", (),
                               None)
    record.fields = {"request_id": "r1", "status": 200, "odd": "\udcff"}
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "request" and line["request_id"] == "r1" and line["level"] == "info"
    assert line["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        error = logging.LogRecord("wsgikernel", logging.ERROR, __file__, 1, "failed", (),
                                  sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(error))["traceback"]


def _reader(path, reads, out):
    last, drops = {}, 0
    for _ in range(reads):
        samples, _ = files.read_count_file(path)
        for key, value in (samples or {}).items():
            if value < last.get(key, 0.0):
                drops += 1
            last[key] = value
    out.put(drops)


def test_a_reader_never_sees_a_count_go_down_while_it_is_written(tmp_path):
    """struct.pack_into zeroes the bytes before writing them: a reader in another
    process then saw 0 about once in a hundred reads (a reset, to Prometheus)."""
    counts = files.CountFile(str(tmp_path / "metrics"))
    keys = [("wsgikernel_test", (("n", str(n)),)) for n in range(4)]
    for key in keys:
        counts.add(key)
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    reader = context.Process(target=_reader, args=(counts.path, 20000, out))
    reader.start()
    try:
        while reader.is_alive():
            for key in keys:
                counts.add(key)
        assert out.get(timeout=30) == 0
    finally:
        reader.join(30)


def test_a_file_that_is_not_ours_in_the_metrics_dir_is_skipped(tmp_path):
    directory = tmp_path / "metrics"
    directory.mkdir()
    bad = files.HEADER.pack(files.MAGIC, 8 + 16) + files.LENGTH.pack(8) + b"[[1],[]]"
    (directory / "1-x.counts").write_bytes(bad + b"\0" * 16)
    (directory / "2-y.counts").write_bytes(b"garbage")
    (directory / files.ARCHIVE).write_text('{"samples": [[["x"], 1, 2]], "merged": 3}')
    own = files.CountFile(str(directory))
    own.add(("wsgikernel_test", ()), 1)
    with files.locked(str(directory)):
        assert files.collect(own) == {("wsgikernel_test", ()): 1}
    render(files.collect(own))


def test_a_new_count_file_takes_its_name_only_once_locked(tmp_path, monkeypatch):
    """Created under a dot name, locked, then renamed: a scrape never takes it for a
    file whose process is gone."""
    renames = []
    real = os.rename

    def rename(src, dst):
        samples, alive = files.read_count_file(src)
        renames.append((os.path.basename(src), alive, samples))
        return real(src, dst)

    monkeypatch.setattr(files.os, "rename", rename)
    counts = files.CountFile(str(tmp_path / "metrics"))
    counts.add(("wsgikernel_test", ()))
    assert len(renames) == 1 and renames[0][0].startswith(".") and renames[0][1] is True
    assert os.path.basename(counts.path).endswith(files.SUFFIX)


class _Files:
    def __init__(self, settings, env_dir):
        import io
        self.record, self.log = {"id": "e", "settings": settings}, io.StringIO()
        self.env_dir = str(env_dir)


def deaths(events):
    return {labels[0][1]: value for (name, labels), value
            in kernels.samples_of(events.counters.data).items() if name == kernels.DEATHS}


def test_a_batch_jobs_end_after_its_user_code_died_of_it_is_one_death(tmp_path):
    from wsgikernel.kernel.eventlog import EventLog
    events = EventLog(_Files({"log_format": "json"}, tmp_path))
    events.started(session=1, pid=1)
    events.died("kernel_died", "Slurm ended job 7")
    events.stopped("dead", "kernel_died")  # the supervisor's own SIGTERM, next
    assert deaths(events) == {"kernel_died": 1}
    events.started(session=2, pid=2)  # a restart: a new death counts again
    events.stopped("dead", "kernel_died")
    assert deaths(events) == {"kernel_died": 2}
    lines = [json.loads(line) for line in events.files.log.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        "kernel_started", "kernel_died", "kernel_started", "kernel_died"]


def test_metrics_off_in_a_kernel_count_nothing(tmp_path):
    from wsgikernel.kernel.eventlog import EventLog
    events = EventLog(_Files({"metrics": False}, tmp_path))
    events.execution(None, {"status": "ok", "duration": 1})
    events.died("kernel_died")
    assert events.counters is None and events.files.log.getvalue() == ""
    assert os.listdir(events.files.env_dir) == []  # no counts file either


def test_forks_waiting_for_a_cell_are_not_executions_and_odd_labels_are_other():
    counters = KernelCounters()
    counters.execution_ended({"status": "ok", "fork_into": "/x", "duration": 0.1})
    counters.execution_ended({"status": "weird", "reason": "new_reason", "duration": 0.1})
    counters.died("some_new_way")
    samples = kernels.samples_of(counters.data)
    assert {key: value for key, value in samples.items() if key[0] != kernels.TRUNCATED
            and not key[0].startswith(kernels.DURATION)} == {
        (kernels.EXECUTIONS, (("status", "other"), ("reason", "other"))): 1,
        (kernels.DEATHS, (("reason", "other"),)): 1}
