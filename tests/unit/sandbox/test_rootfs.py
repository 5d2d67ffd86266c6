"""Table tests of the sandbox's mount plan: pure, no mounts made."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import pytest

from wuzhao.sandbox.api import LAYERS_ROOT, TASK_ROOT, LayerMount, SandboxSpec
from wuzhao.sandbox.rootfs import (
    MB,
    PYTHON_ROOT,
    RUNTIME_ROOT,
    Bind,
    Directory,
    File,
    HostFacts,
    Image,
    Images,
    Op,
    Proc,
    ReadOnly,
    Symlink,
    Tmpfs,
    base_plan,
    instance_plan,
    plan,
    python_inside,
    sandbox_path,
)

PYENV = "/root/.pyenv/versions/3.11.7"
DEBIAN = HostFacts(
    python_home=PYENV,
    python_executable=f"{PYENV}/bin/python3.11",
    usr_links=(("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib"), ("lib64", "usr/lib64")),
    usr_dirs=(),
    etc_binds=("/etc/ssl/certs", "/etc/ld.so.cache"),
    localtime="/usr/share/zoneinfo/Etc/UTC",
)
SYSTEM_PYTHON = HostFacts(
    python_home="/usr",
    python_executable="/usr/bin/python3.11",
    usr_links=(),
    usr_dirs=("bin", "lib"),
    etc_binds=(),
    localtime=None,
)
# The zygote runs from the runtime's images: its Python is the one at /var/lang.
FROM_IMAGES = replace(
    DEBIAN,
    python_home=PYTHON_ROOT,
    python_executable=f"{PYTHON_ROOT}/bin/python3.11",
    images=Images(lang="/dev/loop0", runtime="/dev/loop1", task="/dev/loop7"),
)
SYSTEM_PYTHON_FROM_IMAGES = replace(SYSTEM_PYTHON, images=Images(runtime="/dev/loop1", task="/dev/loop7"))
SPEC = SandboxSpec(
    instance_id="i1",
    code_dir="/data/code/abc",
    uid=20001,
    memory_mb=128,
    cpu_shares=128,
    tmp_size_mb=64,
    hostname="fn-host",
)


def targets(ops: Iterable[Op]) -> list[str]:
    return [op.target for op in ops]


def test_usr_and_code_are_read_only_binds() -> None:
    ops = plan(SPEC, DEBIAN)
    assert Bind("/usr", "/usr") in ops
    assert Bind("/data/code/abc", TASK_ROOT) in ops
    writable = {op.target for op in ops if isinstance(op, Bind) and op.writable}
    assert writable == {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"}


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (
            DEBIAN,
            [
                Symlink("/bin", "usr/bin"),
                Symlink("/sbin", "usr/sbin"),
                Symlink("/lib", "usr/lib"),
                Symlink("/lib64", "usr/lib64"),
            ],
        ),
        (SYSTEM_PYTHON, [Bind("/bin", "/bin"), Bind("/lib", "/lib")]),
    ],
)
def test_top_level_library_dirs_follow_the_host(facts: HostFacts, expected: list) -> None:
    ops = plan(SPEC, facts)
    tops = [op for op in ops if op.target in ("/bin", "/sbin", "/lib", "/lib64")]
    assert tops == expected


@pytest.mark.parametrize(
    ("facts", "python_mount"),
    [
        (DEBIAN, Bind(PYENV, PYTHON_ROOT)),
        (SYSTEM_PYTHON, None),
        (FROM_IMAGES, Image("/dev/loop0", PYTHON_ROOT)),
        (SYSTEM_PYTHON_FROM_IMAGES, None),  # /usr is bound whole: nothing more to mount
    ],
)
def test_python_outside_usr_is_mounted_at_a_neutral_path(facts: HostFacts, python_mount) -> None:
    mounts = [op for op in plan(SPEC, facts) if isinstance(op, Bind | Image) and op.target == PYTHON_ROOT]
    assert mounts == ([python_mount] if python_mount else [])


@pytest.mark.parametrize(
    ("facts", "task", "runtime"),
    [
        (DEBIAN, Bind("/data/code/abc", TASK_ROOT), None),
        (FROM_IMAGES, Image("/dev/loop7", TASK_ROOT), Image("/dev/loop1", RUNTIME_ROOT)),
        (SYSTEM_PYTHON_FROM_IMAGES, Image("/dev/loop7", TASK_ROOT), Image("/dev/loop1", RUNTIME_ROOT)),
        # the zygote's images but no image of this code: its tree is bound
        (
            replace(FROM_IMAGES, images=Images("/dev/loop0", "/dev/loop1")),
            Bind("/data/code/abc", TASK_ROOT),
            Image("/dev/loop1", RUNTIME_ROOT),
        ),
    ],
)
def test_code_and_runtime_are_images_when_there_are_devices(
    facts: HostFacts, task: Op, runtime: Op | None
) -> None:
    ops = plan(SPEC, facts)
    assert [op for op in ops if op.target == TASK_ROOT] == [task]
    assert [op for op in ops if op.target == RUNTIME_ROOT] == ([runtime] if runtime else [])


@pytest.mark.parametrize("facts", [FROM_IMAGES, SYSTEM_PYTHON_FROM_IMAGES])
def test_with_images_no_bind_shows_a_path_the_function_does_not_see_anyway(facts: HostFacts) -> None:
    # A bind shows its source in /proc/self/mountinfo: only sources at their own path remain.
    assert [op for op in plan(SPEC, facts) if isinstance(op, Bind) and op.source != op.target] == []


@pytest.mark.parametrize(
    ("host", "inside"),
    [
        (f"{PYENV}/lib/python3.11", "/var/lang/lib/python3.11"),
        (f"{PYENV}/lib/python3.11/lib-dynload", "/var/lang/lib/python3.11/lib-dynload"),
        (f"{PYENV}/bin/python3.11", "/var/lang/bin/python3.11"),
        (PYENV, "/var/lang"),
        (f"{PYENV}-other/lib", None),  # a sibling install is not the mounted one
        ("/tmp/venv/lib/python3.11/site-packages", None),
        ("/work/main/src", None),
        ("/usr/lib/python3/dist-packages", "/usr/lib/python3/dist-packages"),
    ],
)
def test_host_python_paths_map_into_the_sandbox(host: str, inside: str | None) -> None:
    assert sandbox_path(host, DEBIAN) == inside


@pytest.mark.parametrize(
    ("path", "from_images", "with_binds"),
    [
        ("/var/lang/lib/python3.11", "/var/lang/lib/python3.11", None),  # not DEBIAN's installation
        ("/var/lang/bin/python3.11", "/var/lang/bin/python3.11", None),
        (RUNTIME_ROOT, RUNTIME_ROOT, None),  # mounted inside only from its image
        (f"{RUNTIME_ROOT}/wuzhao", f"{RUNTIME_ROOT}/wuzhao", None),
        ("/var/runtimes", None, None),
        ("/work/main/src", None, None),
    ],
)
def test_paths_of_a_zygote_running_from_images_are_kept(path: str, from_images, with_binds) -> None:
    assert sandbox_path(path, FROM_IMAGES) == from_images
    assert sandbox_path(path, DEBIAN) == with_binds


def test_system_python_keeps_its_paths() -> None:
    assert python_inside(SYSTEM_PYTHON) == "/usr"
    assert sandbox_path("/usr/lib/python3.11", SYSTEM_PYTHON) == "/usr/lib/python3.11"


def test_tmp_is_the_capped_writable_tmpfs() -> None:
    tmpfs = {op.target: op for op in plan(SPEC, DEBIAN) if isinstance(op, Tmpfs)}
    assert tmpfs["/tmp"] == Tmpfs("/tmp", 64 * MB, 0o1777, noexec=False)
    assert tmpfs["/dev"].size_bytes <= 1 * MB
    assert tmpfs["/dev/shm"].size_bytes <= 1 * MB


def test_etc_is_written_not_bound() -> None:
    ops = plan(SPEC, DEBIAN)
    files = {op.target: op.content for op in ops if isinstance(op, File)}
    assert set(files) == {
        "/etc/passwd",
        "/etc/group",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/nsswitch.conf",
    }
    assert files["/etc/hostname"] == "fn-host\n"
    assert "127.0.0.1\tlocalhost" in files["/etc/hosts"]
    assert "fn-host" in files["/etc/hosts"]
    assert files["/etc/passwd"].startswith("root:x:0:0:")
    assert Bind("/etc/ssl/certs", "/etc/ssl/certs") in ops
    assert Symlink("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC") in ops
    assert not any(op.target.startswith("/etc/ssl/private") for op in ops)


def test_no_localtime_when_the_host_has_none() -> None:
    assert "/etc/localtime" not in targets(plan(SPEC, SYSTEM_PYTHON))


def test_dev_is_populated_then_sealed_and_proc_is_fresh() -> None:
    ops = plan(SPEC, DEBIAN)
    names = targets(ops)
    dev = names.index("/dev")
    sealed = ops.index(ReadOnly("/dev"))
    assert isinstance(ops[dev], Tmpfs)
    for node in ("/dev/null", "/dev/urandom", "/dev/fd", "/dev/stdout", "/dev/shm"):
        assert dev < names.index(node) < sealed
    assert Symlink("/dev/fd", "/proc/self/fd") in ops
    assert ops.count(Proc("/proc")) == 1
    assert not any(t == "/sys" or t.startswith("/sys/") for t in names)


def test_every_mount_comes_before_anything_placed_inside_it() -> None:
    names = targets(op for op in plan(SPEC, DEBIAN) if not isinstance(op, ReadOnly))
    for i, name in enumerate(names):
        for parent in names[i + 1 :]:
            assert not name.startswith(parent + "/"), f"{name} is planned before its parent {parent}"


# Layers at /opt/<name>

LAYERED = replace(
    SPEC,
    layers=(
        LayerMount("sci", "/srv/sci"),  # an operator's runtime layer: a host directory
        LayerMount("lib", "/data/code/l1b", image="/data/images/l1b.erofs"),
        LayerMount("extra", "/data/code/e2a", image="/data/images/e2a.erofs"),
    ),
)
WITH_LAYER_DEVICES = replace(
    FROM_IMAGES, images=replace(FROM_IMAGES.images, layers=("/dev/loop3", "/dev/loop4", "/dev/loop5"))
)


def layer_ops(ops: Iterable[Op]) -> list[Op]:
    return [op for op in ops if op.target == LAYERS_ROOT or op.target.startswith(LAYERS_ROOT + "/")]


@pytest.mark.parametrize("facts", [DEBIAN, SYSTEM_PYTHON, FROM_IMAGES])
def test_opt_exists_with_no_layer(facts: HostFacts) -> None:
    assert layer_ops(plan(SPEC, facts)) == [Directory(LAYERS_ROOT)]


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # no images at all: each layer's directory, bound read-only
        (
            DEBIAN,
            [
                Bind("/srv/sci", "/opt/sci"),
                Bind("/data/code/l1b", "/opt/lib"),
                Bind("/data/code/e2a", "/opt/extra"),
            ],
        ),
        # the zygote's images but none given for the layers: binds
        (
            FROM_IMAGES,
            [
                Bind("/srv/sci", "/opt/sci"),
                Bind("/data/code/l1b", "/opt/lib"),
                Bind("/data/code/e2a", "/opt/extra"),
            ],
        ),
        # a device for every layer, the runtime layer's made at start included
        (
            WITH_LAYER_DEVICES,
            [
                Image("/dev/loop3", "/opt/sci"),
                Image("/dev/loop4", "/opt/lib"),
                Image("/dev/loop5", "/opt/extra"),
            ],
        ),
        # a runtime layer whose image could not be made: bound, the others from their devices
        (
            replace(
                FROM_IMAGES, images=replace(FROM_IMAGES.images, layers=(None, "/dev/loop4", "/dev/loop5"))
            ),
            [
                Bind("/srv/sci", "/opt/sci"),
                Image("/dev/loop4", "/opt/lib"),
                Image("/dev/loop5", "/opt/extra"),
            ],
        ),
    ],
)
def test_layers_are_mounted_under_opt_in_order(facts: HostFacts, expected: list[Op]) -> None:
    assert layer_ops(plan(LAYERED, facts)) == [Directory(LAYERS_ROOT), *expected]


@pytest.mark.parametrize("facts", [DEBIAN, WITH_LAYER_DEVICES])
def test_layers_are_read_only_and_come_after_the_code(facts: HostFacts) -> None:
    ops = plan(LAYERED, facts)
    layers = layer_ops(ops)[1:]
    assert all(not op.writable and op.nodev for op in layers if isinstance(op, Bind))
    names = targets(ops)
    assert names.index(LAYERS_ROOT) < names.index(TASK_ROOT) < names.index("/opt/sci")
    assert ops.index(layers[-1]) < names.index("/tmp")


def test_with_layer_devices_no_bind_shows_a_host_path() -> None:
    assert [
        op for op in plan(LAYERED, WITH_LAYER_DEVICES) if isinstance(op, Bind) and op.source != op.target
    ] == []


def test_every_mount_comes_before_anything_placed_inside_it_with_layers() -> None:
    for facts in (DEBIAN, WITH_LAYER_DEVICES):
        names = targets(op for op in plan(LAYERED, facts) if not isinstance(op, ReadOnly))
        for i, name in enumerate(names):
            for parent in names[i + 1 :]:
                assert not name.startswith(parent + "/"), f"{name} is planned before its parent {parent}"


# The base (a shell builds it before it has a function) and the function's part


OTHER = replace(
    LAYERED,
    instance_id="other",
    code_dir="/data/code/other",
    uid=29999,
    memory_mb=2048,
    tmp_size_mb=1,
    hostname="other-host",
    env={"SECRET": "x"},
    network="outbound",
    code_image="/data/images/other.erofs",
)
FUNCTION_TARGETS = {TASK_ROOT, "/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/tmp"}


@pytest.mark.parametrize("facts", [DEBIAN, SYSTEM_PYTHON, FROM_IMAGES, WITH_LAYER_DEVICES])
@pytest.mark.parametrize("spec", [SPEC, LAYERED, OTHER])
def test_the_plan_is_the_base_then_the_function_s_part(facts: HostFacts, spec: SandboxSpec) -> None:
    base = base_plan(facts)  # takes no spec: nothing in it can be a function's
    assert plan(spec, facts) == base + instance_plan(spec, facts)
    own = targets(instance_plan(spec, facts))
    layers = {f"{LAYERS_ROOT}/{layer.name}" for layer in spec.layers}
    assert set(own) <= FUNCTION_TARGETS | layers
    assert not set(own) & set(targets(base))


def test_everything_a_function_decides_is_in_its_part() -> None:
    # Two functions as different as can be differ only in their own part.
    for facts in (DEBIAN, WITH_LAYER_DEVICES):
        ours, theirs = instance_plan(SPEC, facts), instance_plan(OTHER, facts)
        assert plan(SPEC, facts)[: -len(ours)] == plan(OTHER, facts)[: -len(theirs)]
    assert File("/etc/hostname", "other-host\n") in instance_plan(OTHER, DEBIAN)
    assert Tmpfs("/tmp", 1 * MB, 0o1777, noexec=False) in instance_plan(OTHER, DEBIAN)
