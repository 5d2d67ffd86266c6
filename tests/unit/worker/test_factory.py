"""The sandbox spec of a cold start: the layers, in order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from wuzhao.config import Settings
from wuzhao.domain.functions import FunctionConfig
from wuzhao.domain.versions import Executable
from wuzhao.sandbox.api import LayerMount, SandboxSpec
from wuzhao.store.api import LayerRecord
from wuzhao.worker.factory import InstanceFactory

CODE = "c0" * 32


class FakePackages:
    """Every package unpacked under /data/code, imaged under /data/images (None: no image)."""

    def __init__(self, without_image: frozenset[str] = frozenset()) -> None:
        self.without_image = without_image

    def code_dir(self, sha256: str) -> Path:
        return Path(f"/data/code/{sha256[:4]}")

    def code_image(self, sha256: str) -> Path | None:
        return None if sha256 in self.without_image else Path(f"/data/images/{sha256[:4]}.erofs")


def layer(name: str, version: int, sha: str) -> LayerRecord:
    return LayerRecord("default", name, version, sha * 32, 10, "", 0.0)


def spec_of(
    layers: list[str], records: list[LayerRecord], runtime: tuple[LayerMount, ...], **kw: Any
) -> SandboxSpec:
    async def no_secrets(namespace: str, names: dict[str, str]) -> dict[str, str]:
        return {}

    async def resolve(namespace: str, refs: list[str]) -> list[LayerRecord]:
        assert refs == layers
        return records

    factory = InstanceFactory(
        Settings.load({}, data_dir="/data"),
        launcher=None,  # type: ignore[arg-type]
        packages=FakePackages(**kw),  # type: ignore[arg-type]
        recorder=None,  # type: ignore[arg-type]
        secrets=no_secrets,
        layers=resolve,
        runtime_layers=runtime,
    )
    target = Executable("default", "f", "$LATEST", 1, FunctionConfig(layers=layers), CODE)
    return asyncio.run(factory._spec(target, 200001))


RUNTIME = (LayerMount("sci", "/srv/sci"), LayerMount("tools", "/srv/tools"))


def test_runtime_layers_come_first_then_the_functions_own_in_its_order() -> None:
    spec = spec_of(["b:2", "a:1"], [layer("b", 2, "b1"), layer("a", 1, "a1")], RUNTIME)
    assert spec.layers == (
        *RUNTIME,
        LayerMount("b", "/data/code/b1b1", "/data/images/b1b1.erofs"),
        LayerMount("a", "/data/code/a1a1", "/data/images/a1a1.erofs"),
    )
    assert (spec.code_dir, spec.code_image) == ("/data/code/c0c0", "/data/images/c0c0.erofs")


def test_no_layers_at_all() -> None:
    assert spec_of([], [], ()).layers == ()


def test_a_layer_without_an_image_is_bound_from_its_tree() -> None:
    spec = spec_of(["a:1"], [layer("a", 1, "a1")], (), without_image=frozenset({"a1" * 32}))
    assert spec.layers == (LayerMount("a", "/data/code/a1a1", None),)


def test_a_functions_own_layer_is_used_instead_of_a_runtime_layer_of_its_name() -> None:
    # Deployed before the operator declared "sci": deploys refuse that name since.
    spec = spec_of(["sci:3"], [layer("sci", 3, "5c")], RUNTIME)
    assert [m.name for m in spec.layers] == ["tools", "sci"]
    assert spec.layers[1].directory == "/data/code/5c5c"


class CodeUnder:
    """Every package unpacked under ``root`` (the function's files really there), without images."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def code_dir(self, sha256: str) -> Path:
        return self.root / sha256[:4]

    def code_image(self, sha256: str) -> Path | None:
        return None


def preloaded(tmp_path: Path, source: str, layers: list[str], preload: str = "numpy") -> bool:
    (tmp_path / CODE[:4]).mkdir()
    (tmp_path / CODE[:4] / "main.py").write_text(source)

    async def no_secrets(namespace: str, names: dict[str, str]) -> dict[str, str]:
        return {}

    async def resolve(namespace: str, refs: list[str]) -> list[LayerRecord]:
        return [layer(ref.split(":")[0], 1, "5c") for ref in refs]

    factory = InstanceFactory(
        Settings.load({"WUZHAO_RUNTIME_PRELOAD": preload}, data_dir="/data"),
        launcher=None,  # type: ignore[arg-type]
        packages=CodeUnder(tmp_path),  # type: ignore[arg-type]
        recorder=None,  # type: ignore[arg-type]
        secrets=no_secrets,
        layers=resolve,
        runtime_layers=RUNTIME,
    )
    target = Executable("default", "f", "$LATEST", 1, FunctionConfig(layers=layers), CODE)
    return asyncio.run(factory._spec(target, 200001)).preloaded


def test_a_handler_importing_a_preloaded_module_is_forked_from_the_preloaded_zygote(tmp_path: Path) -> None:
    assert preloaded(tmp_path, "import numpy\n", []) is True


def test_a_handler_importing_nothing_preloaded_is_forked_from_the_plain_zygote(tmp_path: Path) -> None:
    assert preloaded(tmp_path, "import json\n", []) is False


def test_without_modules_to_preload_every_instance_is_plain(tmp_path: Path) -> None:
    assert preloaded(tmp_path, "import numpy\n", [], preload="") is False


def test_an_own_layer_in_a_runtime_layers_place_means_the_plain_zygote(tmp_path: Path) -> None:
    # numpy was preloaded from the operator's "sci"; this instance's /opt/sci is its own layer.
    assert preloaded(tmp_path, "import numpy\n", ["sci:1"]) is False
