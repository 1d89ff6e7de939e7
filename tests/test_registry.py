"""control/registry.py on its own: env directories, the id rule, env.json and its cache.

No kernel: the registry is files.  A real temporary state dir per test.
"""

import json
import os

import pytest

from wsgikernel.config import load_config
from wsgikernel.control.errors import EnvironmentExists, EnvironmentNotFound, InvalidEnvId
from wsgikernel.control.registry import EnvRegistry


@pytest.fixture
def registry(state_dir):
    return EnvRegistry(load_config({"state_dir": state_dir}, environ={}))


def write(registry, env_id, text):
    with open(os.path.join(registry.env_dir(env_id), "env.json"), "w") as handle:
        handle.write(text)


def test_reserving_a_directory_is_the_creation_lock(registry):
    path = registry.reserve("a1")
    assert os.path.isdir(path) and oct(os.stat(path).st_mode & 0o777) == "0o700"
    with pytest.raises(EnvironmentExists):
        registry.reserve("a1")
    assert registry.ids() == ["a1"] and registry.count() == 1


@pytest.mark.parametrize("env_id", ["", "../x", "a/b", ".hidden", "x" * 200, "\ud800", None])
def test_an_id_outside_the_rule_is_refused_before_any_path_is_made(registry, env_id):
    with pytest.raises(InvalidEnvId):
        registry.env_dir(env_id)


def test_env_json_is_parsed_again_only_when_it_changed(registry):
    registry.reserve("c1")
    write(registry, "c1", json.dumps({"id": "c1", "state": "idle", "n": 1}))
    first = registry.read("c1")
    first["n"] = 99  # a copy: callers may change it
    assert registry.read("c1")["n"] == 1
    key = registry.records["c1"][0]
    path = os.path.join(registry.env_dir("c1"), "env.json")
    os.replace(path, path + ".old")  # writers replace by rename: a new inode, a new key
    with open(path, "w") as handle:
        json.dump({"id": "c1", "state": "idle", "n": 2}, handle)
    assert registry.read("c1")["n"] == 2 and registry.records["c1"][0] != key


@pytest.mark.parametrize("text, reason", [("{not json", "corrupt_record"),
                                          ("[1, 2]", "corrupt_record")])
def test_an_unusable_env_json_reads_as_a_dead_env_with_its_reason(registry, text, reason):
    registry.reserve("u1")
    write(registry, "u1", text)
    record = registry.read("u1")
    assert (record["state"], record["reason"]) == ("dead", reason) and record["detail"]


def test_a_directory_without_env_json_is_starting_and_a_missing_one_not_found(registry):
    registry.reserve("s1")
    assert registry.read("s1") == {"id": "s1", "state": "starting"}
    with pytest.raises(EnvironmentNotFound):
        registry.read("nobody")


def test_removing_frees_the_id_at_once_and_leaves_nothing(registry):
    registry.reserve("r1")
    write(registry, "r1", json.dumps({"id": "r1"}))
    registry.read("r1")
    registry.remove("r1")
    assert registry.ids() == [] and "r1" not in registry.records
    assert os.listdir(registry.envs_dir) == []
    registry.reserve("r1")  # the id is free again
    with pytest.raises(EnvironmentNotFound):
        registry.remove("gone")
