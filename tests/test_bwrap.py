"""Unit tests of the sandbox's pure parts: the bwrap command line, its environment, the
bind setting's parser, and how a sandboxed child's exit status is read back."""

import os

import pytest

from wsgikernel import config
from wsgikernel.kernel import bwrap
from wsgikernel.kernel.sandbox import SandboxedChild


def spec(**fields):
    return dict({"bwrap": "/usr/bin/bwrap", "network": False, "ro_binds": [], "rw_binds": [],
                 "hide": []}, **fields)


def pairs(argv, option):
    """The (src, dest) of every ``option SRC DEST`` in ``argv``, in order."""
    return [(argv[i + 1], argv[i + 2]) for i, word in enumerate(argv) if word == option]


def singles(argv, option):
    return [argv[i + 1] for i, word in enumerate(argv) if word == option]


def test_network_is_unshared_unless_the_spec_allows_it():
    assert "--unshare-net" in bwrap.command(spec(), "/w", paths=[])
    assert "--unshare-net" not in bwrap.command(spec(network=True), "/w", paths=[])


def test_every_isolation_option_is_there_and_the_command_ends_before_the_program():
    argv = bwrap.command(spec(), "/w", paths=[])
    assert argv[0] == "/usr/bin/bwrap" and argv[-1] == "--"
    for option in ("--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
                   "--unshare-uts"):
        assert option in argv
    assert argv[argv.index("--cap-drop") + 1] == "ALL"
    assert argv[argv.index("--info-fd") + 1] == str(bwrap.INFO_FD)
    assert "--info-fd" not in bwrap.command(spec(), "/w", info_fd=None, paths=[])
    assert argv[argv.index("--chdir") + 1] == bwrap.HOME
    assert argv[argv.index("--proc") + 1] == "/proc"


def test_the_work_dir_is_the_only_read_write_bind_besides_the_configured_ones():
    argv = bwrap.command(spec(rw_binds=[["/data/cache", "/cache"]]), "/s/envs/a/work", paths=[])
    assert pairs(argv, "--bind") == [("/s/envs/a/work", bwrap.HOME), ("/data/cache", "/cache")]


def test_extra_read_only_binds_are_bound_read_only(tmp_path):
    argv = bwrap.command(spec(ro_binds=[["/datasets", "/mnt/datasets"]]), "/w", paths=[])
    assert ("/datasets", "/mnt/datasets") in pairs(argv, "--ro-bind")


def test_a_private_tmp_comes_before_any_bind_that_may_lie_under_tmp(tmp_path):
    venv = tmp_path / "venv" / "site-packages"
    venv.mkdir(parents=True)
    argv = bwrap.command(spec(), str(tmp_path / "work"), paths=[str(venv)])
    tmpfs = argv.index("--tmpfs")
    assert argv[tmpfs + 1] == "/tmp"
    bound = argv.index(str(venv.resolve()))
    assert tmpfs < bound


def test_a_hidden_directory_is_covered_where_a_bind_exposes_it_and_never_bound(tmp_path):
    root = tmp_path / "project"
    state = root / "state"
    inside = state / "lib"
    inside.mkdir(parents=True)
    work = state / "envs" / "a" / "work"
    argv = bwrap.command(spec(hide=[str(state.resolve())]), str(work),
                         paths=[str(root), str(inside)])
    bound = [src for src, _ in pairs(argv, "--ro-bind")]
    assert str(root.resolve()) in bound
    assert str(inside.resolve()) not in bound  # inside the state dir: never exposed
    covered = singles(argv, "--tmpfs")
    assert str(state.resolve()) in covered
    # The mask goes on after the bind that exposed it, the work dir on top of the mask.
    assert argv.index(str(state.resolve())) > argv.index(str(root.resolve()))
    assert argv.index("--bind") > argv.index(str(state.resolve()))


def test_a_hidden_directory_no_bind_exposes_gets_no_mount():
    argv = bwrap.command(spec(hide=["/srv/wsgikernel-state"]), "/w", paths=[])
    assert "/srv/wsgikernel-state" not in argv


def test_nested_import_paths_are_bound_once_through_the_outermost(tmp_path):
    outer = tmp_path / "lib"
    inner = outer / "site-packages"
    inner.mkdir(parents=True)
    argv = bwrap.command(spec(), "/w", paths=[str(inner), str(outer)])
    bound = [src for src, _ in pairs(argv, "--ro-bind")]
    assert str(outer.resolve()) in bound and str(inner.resolve()) not in bound


def test_system_links_stay_links_and_directories_are_bound_read_only(tmp_path):
    usr_lib = tmp_path / "usr" / "lib"
    usr_lib.mkdir(parents=True)
    link = tmp_path / "lib"
    link.symlink_to("usr/lib")
    argv = bwrap.command(spec(), "/w", paths=[], system=(str(link), str(tmp_path / "usr"),
                                                           str(tmp_path / "absent")))
    assert pairs(argv, "--symlink") == [("usr/lib", str(link))]
    assert (str(tmp_path / "usr"), str(tmp_path / "usr")) in pairs(argv, "--ro-bind")
    assert str(tmp_path / "absent") not in argv


def test_only_the_listed_etc_files_are_bound(tmp_path):
    for name in ("passwd", "resolv.conf", "shadow", "ssh"):
        (tmp_path / name).write_text("x")
    for folder in ("ssl/certs", "ssl/private"):
        (tmp_path / folder).mkdir(parents=True)
    argv = bwrap.command(spec(), "/w", paths=[], etc=str(tmp_path))
    bound = [src for src, _ in pairs(argv, "--ro-bind")]
    assert str(tmp_path / "passwd") in bound and str(tmp_path / "resolv.conf") in bound
    assert str(tmp_path / "shadow") not in bound and str(tmp_path / "ssh") not in bound
    # Certificates, not the keys beside them (a root cell passes the owner's checks).
    assert str(tmp_path / "ssl" / "certs") in bound
    assert not any(b.startswith(str(tmp_path / "ssl")) and "certs" not in b for b in bound)


def test_binds_below_home_go_over_the_work_dir_and_binds_above_it_under(tmp_path):
    argv = bwrap.command(spec(ro_binds=[["/srv/venv", bwrap.HOME + "/.venv"],
                                        ["/srv/home", "/home"]]), "/w", paths=[])
    work = argv.index(bwrap.HOME, argv.index("--bind"))
    assert argv.index(bwrap.HOME + "/.venv") > work  # seen inside the work dir
    assert argv.index("/srv/home") < work             # covered by it at /home/user


@pytest.mark.parametrize("kind, source", [
    ("rw_binds", "{base}"), ("ro_binds", "{base}"), ("ro_binds", "{base}/state/envs"),
    ("rw_binds", "{link}"),
])
def test_a_bind_that_would_show_the_state_dir_is_refused(tmp_path, kind, source):
    state = tmp_path / "state"
    (state / "envs").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(tmp_path)
    src = source.format(base=tmp_path, link=link)
    why = bwrap.exposing(spec(hide=[str(state.resolve())], **{kind: [[src, "/data"]]}))
    assert why and src in why and str(state.resolve()) in why


def test_binds_beside_the_state_dir_are_fine(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "data").mkdir()
    assert bwrap.exposing(spec(hide=[str(tmp_path / "state")],
                               ro_binds=[[str(tmp_path / "data"), "/data"]],
                               rw_binds=[[str(tmp_path / "data"), "/d2"]])) is None


def test_the_interpreter_and_the_package_are_always_bound():
    argv = bwrap.command(spec(), "/w", paths=[])
    bound = {src for src, _ in pairs(argv, "--ro-bind")} | {"/usr"}
    for needed in (os.path.realpath(bwrap.sys.base_prefix), bwrap.PACKAGE):
        assert any(bwrap.within(os.path.realpath(needed), b) for b in bound), needed


def test_interpreter_command_runs_the_executor_with_its_arguments_last():
    argv = bwrap.interpreter({"work_dir": "/w", "rlimits": [], "preload": []})
    assert argv[0] == bwrap.sys.executable and argv[1] == "-c"
    assert "wsgikernel.kernel.executor" in argv[2]
    assert argv[3] == os.path.dirname(bwrap.PACKAGE)
    assert '"work_dir": "/w"' in argv[4]


def test_environment_points_home_at_the_work_dir_and_drops_the_servers_settings():
    env = bwrap.environment({"PATH": "/usr/bin", "HOME": "/root", "TMPDIR": "/var/tmp",
                             "WSGIKERNEL_TOKEN": "secret"})
    assert env["HOME"] == bwrap.HOME == "/home/user"
    assert env["TMPDIR"] == "/tmp" and env["PATH"] == "/usr/bin"
    assert not any(key.startswith("WSGIKERNEL_") for key in env)


@pytest.mark.parametrize("text, expected", [
    ("/data", (["/data", "/data"],)),
    ("/data:/mnt/data, /models/", (["/data", "/mnt/data"], ["/models", "/models"])),
    ("", ()),
])
def test_binds_setting_reads_src_and_optional_dest(text, expected):
    assert config.binds(text) == expected


@pytest.mark.parametrize("text", ["data", "/data:relative", "~/x"])
def test_binds_setting_refuses_relative_paths(text):
    with pytest.raises(ValueError, match="absolute"):
        config.binds(text)


def test_sandbox_settings_are_checked_when_the_config_loads():
    loaded = config.load_config({"sandbox": "BWRAP", "sandbox_network": "per-env"})
    assert loaded.sandbox == "bwrap" and loaded.sandbox_network == "per-env"
    with pytest.raises(ValueError, match="sandbox"):
        config.load_config({"sandbox": "docker"})
    with pytest.raises(ValueError, match="sandbox_network"):
        config.load_config({"sandbox_network": "maybe"})


@pytest.mark.parametrize("raw, read", [
    ((0, None), (0, None)), ((3, None), (3, None)), ((128, None), (128, None)),
    ((137, None), (None, 9)), ((130, None), (None, 2)), ((None, 9), (None, 9)),
    ((200, None), (200, None)), ((255, None), (255, None)),
    ((None, None), (None, None)),
])
def test_a_sandboxed_childs_128_plus_n_exit_reads_as_signal_n(raw, read):
    child = SandboxedChild(12345, None, {})
    child.status = raw
    assert child.status == read
