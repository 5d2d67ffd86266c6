"""The store contract for tenancy and versioning: namespaces, versions, aliases,
layers, secrets and key removal, run against every backend of ``test_store``."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from tests.contract.test_store import Backend, function, key, store

from wuzhao.domain.functions import FunctionConfig
from wuzhao.errors import Conflict
from wuzhao.store.api import AliasRecord, LayerRecord, NamespaceRecord, SecretRecord, Store, VersionRecord

__all__ = ["store"]  # the backend-parametrised fixture, shared with test_store


def namespace(name: str = "team", **changes: object) -> NamespaceRecord:
    fields: dict[str, object] = {"name": name, "created_at": 1000.0}
    fields.update(changes)
    return NamespaceRecord(**fields)  # type: ignore[arg-type]


def version(
    number: int, *, function: str = "hello", namespace: str = "default", **config: object
) -> VersionRecord:
    return VersionRecord(
        namespace=namespace,
        function=function,
        version=number,
        config=FunctionConfig(**config),  # type: ignore[arg-type]
        code_sha256=f"{number:02x}" * 32,
        code_size=100 + number,
        description=f"v{number}",
        created_at=1000.0 + number,
    )


def alias(
    name: str = "prod",
    number: int = 1,
    *,
    function: str = "hello",
    namespace: str = "default",
    additional: int | None = None,
    weight: float = 0.0,
) -> AliasRecord:
    return AliasRecord(namespace, function, name, number, additional, weight, f"{name} alias", 2000.0)


def layer(name: str = "lib", number: int = 1, *, namespace: str = "default") -> LayerRecord:
    return LayerRecord(namespace, name, number, f"{number:02x}" * 32, 10 * number, f"{name}:{number}", 1000.0)


def secret(
    name: str = "TOKEN", ciphertext: bytes = b"gAAAA-opaque", *, namespace: str = "default"
) -> SecretRecord:
    return SecretRecord(namespace, name, ciphertext, 1000.0)


def numbers(records: list[VersionRecord] | list[LayerRecord]) -> list[int]:
    return [r.version for r in records]


# namespaces


def test_namespaces_save_get_list_delete(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.get_namespace("team") is None
        assert await s.list_namespaces() == []
        team = namespace("team", max_instances=10, max_memory_mb=4096)
        await s.save_namespace(namespace("zeta"))
        await s.save_namespace(team)
        await s.save_namespace(namespace("alpha"))
        assert await s.get_namespace("team") == team
        assert [ns.name for ns in await s.list_namespaces()] == ["alpha", "team", "zeta"]
        assert await s.delete_namespace("team") is True
        assert await s.get_namespace("team") is None
        assert await s.delete_namespace("team") is False
        assert [ns.name for ns in await s.list_namespaces()] == ["alpha", "zeta"]

    store.run(check)


def test_saving_a_namespace_again_replaces_it(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_namespace(namespace("team", max_instances=10, max_memory_mb=4096))
        changed = namespace("team", max_instances=2)  # max_memory_mb back to no quota
        await s.save_namespace(changed)
        assert await s.get_namespace("team") == changed
        assert await s.list_namespaces() == [changed]

    store.run(check)


Change = Callable[[Store], Awaitable[None]]


async def _hold_function(s: Store) -> None:
    await s.save_function(function("f", namespace="team"))


async def _hold_layer(s: Store) -> None:
    await s.add_layer(layer(namespace="team"))


async def _hold_secret(s: Store) -> None:
    await s.save_secret(secret(namespace="team"))


async def _hold_key(s: Store) -> None:
    await s.add_key(key("k1", namespace="team"))


async def _free_function(s: Store) -> None:
    await s.delete_function("team", "f")


async def _free_layer(s: Store) -> None:
    await s.delete_layer("team", "lib", 1)


async def _free_secret(s: Store) -> None:
    await s.delete_secret("team", "TOKEN")


async def _free_key(s: Store) -> None:
    await s.delete_key("k1")


@pytest.mark.parametrize(
    ("hold", "free"),
    [
        (_hold_function, _free_function),
        (_hold_layer, _free_layer),
        (_hold_secret, _free_secret),
        (_hold_key, _free_key),
    ],
    ids=["function", "layer", "secret", "key"],
)
def test_a_namespace_that_holds_anything_is_not_deleted(store: Backend, hold: Change, free: Change) -> None:
    async def check(s: Store) -> None:
        await s.save_namespace(namespace("team"))
        await hold(s)
        with pytest.raises(Conflict):
            await s.delete_namespace("team")
        assert await s.get_namespace("team") == namespace("team")
        await free(s)
        assert await s.delete_namespace("team") is True

    store.run(check)


def test_what_other_namespaces_hold_does_not_keep_one(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_namespace(namespace("team"))
        await s.save_function(function("f", namespace="other"))
        await s.add_layer(layer(namespace="other"))
        await s.save_secret(secret(namespace="other"))
        await s.add_key(key("k1", namespace="other"))
        assert await s.delete_namespace("team") is True

    store.run(check)


# versions


def test_versions_add_list_delete(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.list_versions("default", "hello") == []
        first = version(1, memory_mb=256, env={"A": "1"}, network="outbound")
        await s.add_version(first)
        await s.add_version(version(2))
        await s.add_version(version(3))
        listed = await s.list_versions("default", "hello")
        assert listed[0] == first
        assert numbers(listed) == [1, 2, 3]
        assert await s.delete_version("default", "hello", 2) is True
        assert await s.delete_version("default", "hello", 2) is False
        assert await s.delete_version("default", "nope", 1) is False
        assert numbers(await s.list_versions("default", "hello")) == [1, 3]

    store.run(check)


def test_version_numbers_are_compare_and_set(store: Backend) -> None:
    async def check(s: Store) -> None:
        with pytest.raises(Conflict):  # the first version is 1
            await s.add_version(version(2))
        with pytest.raises(Conflict):
            await s.add_version(version(0))
        await s.add_version(version(1, timeout_s=10))
        with pytest.raises(Conflict):  # taken: a published version never changes
            await s.add_version(version(1, timeout_s=20))
        with pytest.raises(Conflict):  # skipping one
            await s.add_version(version(3))
        await s.add_version(version(2))
        (first, second) = await s.list_versions("default", "hello")
        assert first.config.timeout_s == 10 and second.version == 2
        # a hole left by a deletion below the highest does not become the next number
        await s.add_version(version(3))
        await s.delete_version("default", "hello", 2)
        with pytest.raises(Conflict):
            await s.add_version(version(2))
        await s.add_version(version(4))
        assert numbers(await s.list_versions("default", "hello")) == [1, 3, 4]

    store.run(check)


def test_versions_are_numbered_per_function_and_namespace(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.add_version(version(1))
        await s.add_version(version(2))
        await s.add_version(version(1, function="other"))
        await s.add_version(version(1, namespace="team"))
        assert numbers(await s.list_versions("default", "hello")) == [1, 2]
        assert numbers(await s.list_versions("default", "other")) == [1]
        assert numbers(await s.list_versions("team", "hello")) == [1]
        assert await s.list_versions("team", "other") == []

    store.run(check)


def test_a_deleted_number_is_never_given_again(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.add_version(version(1))
        await s.add_version(version(2))
        await s.delete_version("default", "hello", 2)
        await s.add_layer(layer("lib", 1))
        await s.delete_layer("default", "lib", 1)
        with pytest.raises(Conflict):
            await s.add_layer(layer("lib", 1))
        with pytest.raises(Conflict):
            await s.add_version(version(2))

    store.run(check)


def test_concurrent_publishers_of_one_number_only_one_wins(store: Backend) -> None:
    async def check(s: Store) -> None:
        attempts = [version(1, timeout_s=t) for t in range(1, 21)]
        results = await asyncio.gather(*(s.add_version(v) for v in attempts), return_exceptions=True)
        winners = [v for v, res in zip(attempts, results, strict=True) if res is None]
        assert len(winners) == 1
        assert all(isinstance(res, Conflict) for res in results if res is not None)
        assert await s.list_versions("default", "hello") == winners

    store.run(check)


# aliases


def test_aliases_save_list_replace_delete(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.list_aliases("default", "hello") == []
        prod = alias("prod", 1)
        canary = alias("canary", 2, additional=3, weight=0.25)
        await s.save_alias(prod)
        await s.save_alias(canary)
        assert await s.list_aliases("default", "hello") == [canary, prod]  # ordered by name
        moved = alias("prod", 3)
        await s.save_alias(moved)
        assert await s.list_aliases("default", "hello") == [canary, moved]
        assert await s.delete_alias("default", "hello", "canary") is True
        assert await s.delete_alias("default", "hello", "canary") is False
        assert await s.list_aliases("default", "hello") == [moved]

    store.run(check)


def test_aliases_belong_to_one_function(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.save_alias(alias("prod", 1))
        await s.save_alias(alias("prod", 2, function="other"))
        await s.save_alias(alias("prod", 3, namespace="team"))
        assert await s.list_aliases("default", "hello") == [alias("prod", 1)]
        assert await s.list_aliases("default", "other") == [alias("prod", 2, function="other")]
        assert await s.delete_alias("team", "hello", "prod") is True
        assert await s.list_aliases("default", "hello") == [alias("prod", 1)]

    store.run(check)


def test_deleting_a_function_deletes_its_versions_and_aliases(store: Backend) -> None:
    async def check(s: Store) -> None:
        for ns, name in [("default", "hello"), ("default", "other"), ("team", "hello")]:
            await s.save_function(function(name, namespace=ns))
            await s.add_version(version(1, function=name, namespace=ns))
            await s.add_version(version(2, function=name, namespace=ns))
            await s.save_alias(alias("prod", 2, function=name, namespace=ns))
        assert await s.delete_function("default", "hello") is True
        assert await s.list_versions("default", "hello") == []
        assert await s.list_aliases("default", "hello") == []
        for ns, name in [("default", "other"), ("team", "hello")]:
            assert numbers(await s.list_versions(ns, name)) == [1, 2]
            assert len(await s.list_aliases(ns, name)) == 1
        # a function created again under the old name starts from version 1
        await s.save_function(function("hello"))
        await s.add_version(version(1))
        assert numbers(await s.list_versions("default", "hello")) == [1]

    store.run(check)


# layers


def test_layers_add_list_delete(store: Backend) -> None:
    async def check(s: Store) -> None:
        assert await s.list_layers("default") == []
        assert await s.list_layers("default", "lib") == []
        for name, number in [("lib", 1), ("base", 1), ("lib", 2), ("base", 2), ("lib", 3)]:
            await s.add_layer(layer(name, number))
        await s.add_layer(layer("lib", 1, namespace="team"))
        assert await s.list_layers("default", "lib") == [layer("lib", n) for n in (1, 2, 3)]
        everything = await s.list_layers("default")
        assert [(r.name, r.version) for r in everything] == [
            ("base", 1),
            ("base", 2),
            ("lib", 1),
            ("lib", 2),
            ("lib", 3),
        ]
        assert await s.list_layers("team") == [layer("lib", 1, namespace="team")]
        assert await s.delete_layer("default", "lib", 2) is True
        assert await s.delete_layer("default", "lib", 2) is False
        assert numbers(await s.list_layers("default", "lib")) == [1, 3]
        assert await s.list_layers("team", "lib") == [layer("lib", 1, namespace="team")]

    store.run(check)


def test_layer_numbers_are_compare_and_set(store: Backend) -> None:
    async def check(s: Store) -> None:
        with pytest.raises(Conflict):
            await s.add_layer(layer("lib", 2))
        await s.add_layer(layer("lib", 1))
        with pytest.raises(Conflict):  # taken: a layer version never changes
            await s.add_layer(LayerRecord("default", "lib", 1, "ff" * 32, 1, "", 1.0))
        with pytest.raises(Conflict):
            await s.add_layer(layer("lib", 3))
        await s.add_layer(layer("lib", 2))
        await s.add_layer(layer("other", 1))  # numbered per layer
        assert await s.list_layers("default", "lib") == [layer("lib", 1), layer("lib", 2)]

    store.run(check)


def test_concurrent_pushers_of_one_layer_number_only_one_wins(store: Backend) -> None:
    async def check(s: Store) -> None:
        attempts = [LayerRecord("default", "lib", 1, f"{i:02x}" * 32, i, "", 1.0) for i in range(20)]
        results = await asyncio.gather(*(s.add_layer(r) for r in attempts), return_exceptions=True)
        winners = [r for r, res in zip(attempts, results, strict=True) if res is None]
        assert len(winners) == 1
        assert all(isinstance(res, Conflict) for res in results if res is not None)
        assert await s.list_layers("default", "lib") == winners

    store.run(check)


# secrets


def test_secrets_save_list_replace_delete(store: Backend) -> None:
    opaque = bytes(range(256))  # any bytes: stored exactly as given

    async def check(s: Store) -> None:
        assert await s.list_secrets("default") == []
        await s.save_secret(secret("TOKEN", opaque))
        await s.save_secret(secret("API_KEY", b"x"))
        await s.save_secret(secret("TOKEN", b"y", namespace="team"))
        assert await s.list_secrets("default") == [secret("API_KEY", b"x"), secret("TOKEN", opaque)]
        replaced = SecretRecord("default", "TOKEN", b"new", 2000.0)
        await s.save_secret(replaced)
        assert await s.list_secrets("default") == [secret("API_KEY", b"x"), replaced]
        assert await s.delete_secret("default", "TOKEN") is True
        assert await s.delete_secret("default", "TOKEN") is False
        assert await s.list_secrets("default") == [secret("API_KEY", b"x")]
        assert await s.list_secrets("team") == [secret("TOKEN", b"y", namespace="team")]

    store.run(check)


# keys


def test_delete_key(store: Backend) -> None:
    async def check(s: Store) -> None:
        await s.add_key(key("k1"))
        await s.add_key(key("k2", 2000.0))
        assert await s.delete_key("k1") is True
        assert await s.get_key("k1") is None
        assert await s.delete_key("k1") is False
        assert await s.delete_key("never") is False
        assert await s.list_keys() == [key("k2", 2000.0)]

    store.run(check)


# durability


def test_tenancy_survives_close_and_reopen(store: Backend) -> None:
    team = namespace("team", max_instances=3)
    canary = alias("canary", 1, additional=2, weight=0.1)

    async def main() -> None:
        async with store.opened() as s:
            await s.save_namespace(team)
            await s.save_function(function())
            await s.add_version(version(1, env={"K": "v"}))
            await s.add_version(version(2))
            await s.save_alias(canary)
            await s.add_layer(layer("lib", 1))
            await s.save_secret(secret("TOKEN", b"\x00\xffcipher"))
        async with store.opened() as s:
            assert await s.get_namespace("team") == team
            assert await s.list_versions("default", "hello") == [version(1, env={"K": "v"}), version(2)]
            assert await s.list_aliases("default", "hello") == [canary]
            assert await s.list_layers("default", "lib") == [layer("lib", 1)]
            assert await s.list_secrets("default") == [secret("TOKEN", b"\x00\xffcipher")]
            with pytest.raises(Conflict):  # numbering carries on from what is stored
                await s.add_version(version(2))
            await s.add_version(version(3))
            await s.add_layer(layer("lib", 2))

    asyncio.run(main())
