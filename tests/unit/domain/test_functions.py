import msgspec
import pytest

from wuzhao.domain.functions import (
    FunctionConfig,
    FunctionUpdate,
    check_name,
    handler_module_files,
    merge_config,
)
from wuzhao.errors import BadRequest


@pytest.mark.parametrize(
    "name",
    ["a", "0", "hello", "hello-world", "snake_case", "9lives", "a" * 64, "x-_-y", "a1b2c3"],
)
def test_valid_names_are_returned_unchanged(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-leading-dash",
        "_leading_underscore",
        "Upper",
        "a" * 65,
        "has space",
        "dot.name",
        "slash/name",
        "ünïcode",
        "name\n",
        "../etc",
    ],
)
def test_invalid_names_raise_bad_request_on_name(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        check_name(name)
    assert info.value.field == "name"


def test_merge_onto_nothing_gives_the_defaults() -> None:
    config = merge_config(None, FunctionUpdate())
    assert config == FunctionConfig(
        runtime="python3.11", handler="main.handler", memory_mb=128, timeout_s=30, env={}
    )


def test_merge_sets_every_given_field() -> None:
    update = FunctionUpdate(
        runtime="python3.11", handler="app.run", memory_mb=512, timeout_s=60, env={"A": "1"}
    )
    assert merge_config(None, update) == FunctionConfig("python3.11", "app.run", 512, 60, {"A": "1"})


def test_merge_keeps_unset_fields_of_the_current_config() -> None:
    current = FunctionConfig(handler="app.run", memory_mb=1024, timeout_s=120, env={"KEEP": "me"})
    config = merge_config(current, FunctionUpdate(timeout_s=5))
    assert config == FunctionConfig("python3.11", "app.run", 1024, 5, {"KEEP": "me"})


def test_merge_replaces_env_as_a_whole() -> None:
    current = FunctionConfig(env={"OLD": "1", "BOTH": "old"})
    config = merge_config(current, FunctionUpdate(env={"BOTH": "new"}))
    assert config.env == {"BOTH": "new"}


def test_an_empty_env_clears_it() -> None:
    config = merge_config(FunctionConfig(env={"OLD": "1"}), FunctionUpdate(env={}))
    assert config.env == {}


@pytest.mark.parametrize("runtime", ["python3.12", "node20", "", "Python3.11"])
def test_unsupported_runtime_is_refused(runtime: str) -> None:
    with pytest.raises(BadRequest) as info:
        merge_config(None, FunctionUpdate(runtime=runtime))
    assert info.value.field == "runtime"
    assert "python3.11" in info.value.message


@pytest.mark.parametrize(
    "key",
    [
        "AWS_REGION",
        "WUZHAO_KEY",
        "_PRIVATE",
        "__",
        "1STARTS_WITH_DIGIT",
        "HAS-DASH",
        "HAS SPACE",
        "",
        "A=B",
        "TRAILING_NEWLINE\n",
    ],
)
def test_reserved_or_invalid_env_names_are_refused(key: str) -> None:
    with pytest.raises(BadRequest) as info:
        merge_config(None, FunctionUpdate(env={key: "v"}))
    assert info.value.field == f"env.{key}"


@pytest.mark.parametrize("key", ["A", "lower", "MY_VAR", "X1", "AWS", "WUZHAO", "aws_lower_is_not_reserved"])
def test_ordinary_env_names_are_accepted(key: str) -> None:
    assert merge_config(None, FunctionUpdate(env={key: "value"})).env == {key: "value"}


def test_env_value_with_a_nul_byte_is_refused() -> None:
    with pytest.raises(BadRequest) as info:
        merge_config(None, FunctionUpdate(env={"OK": "a\0b"}))
    assert info.value.field == "env.OK"


def test_network_defaults_to_none_and_is_kept_by_updates() -> None:
    assert merge_config(None, FunctionUpdate()).network == "none"
    outbound = merge_config(None, FunctionUpdate(network="outbound"))
    assert outbound.network == "outbound"
    assert merge_config(outbound, FunctionUpdate(memory_mb=256)).network == "outbound"
    assert merge_config(outbound, FunctionUpdate(network="none")).network == "none"


@pytest.mark.parametrize("mode", ["", "None", "OUTBOUND", "inbound", "host", "outbound ", "all"])
def test_unknown_network_modes_are_refused(mode: str) -> None:
    with pytest.raises(BadRequest) as info:
        merge_config(None, FunctionUpdate(network=mode))
    assert info.value.field == "network"
    assert "none, outbound" in info.value.message


def test_network_of_another_type_is_refused_when_decoded() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"\$\.network"):
        msgspec.json.decode(b'{"network": 1}', type=FunctionUpdate)


def test_a_reserved_name_in_the_current_env_is_caught_too() -> None:
    # Validation applies to the merged result, not just the update.
    with pytest.raises(BadRequest):
        merge_config(FunctionConfig(env={"AWS_X": "1"}), FunctionUpdate(memory_mb=256))


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        (b'{"memory_mb": 128}', True),
        (b'{"memory_mb": 10240}', True),
        (b'{"memory_mb": 127}', False),
        (b'{"memory_mb": 10241}', False),
        (b'{"timeout_s": 1}', True),
        (b'{"timeout_s": 900}', True),
        (b'{"timeout_s": 0}', False),
        (b'{"timeout_s": 901}', False),
        (b'{"handler": "main.handler"}', True),
        (b'{"handler": "pkg.mod.handle"}', True),
        (b'{"handler": "handler"}', False),
        (b'{"handler": "main."}', False),
        (b'{"handler": "1main.handler"}', False),
        (b'{"handler": "main.handler; rm"}', False),
        (b'{"handler": "main.handler\\n"}', False),
        (b'{"unknown": 1}', False),
        (b'{"max_retries": 0}', True),
        (b'{"max_retries": 10}', True),
        (b'{"max_retries": -1}', False),
        (b'{"max_retries": 11}', False),
        (b'{"retry_delay_s": 0.1}', True),
        (b'{"retry_delay_s": 3600}', True),
        (b'{"retry_delay_s": 0.09}', False),
        (b'{"retry_delay_s": 3601}', False),
        (b'{"max_event_age_s": 1}', True),
        (b'{"max_event_age_s": 21600}', True),
        (b'{"max_event_age_s": 0}', False),
        (b'{"max_event_age_s": 21601}', False),
        (b'{"max_event_age_s": 1.5}', False),
        (b'{"on_success": "audit"}', True),
        (b'{"on_failure": ""}', True),
        (b'{"on_failure": 1}', False),
        (b'{"ordering_hold": true}', True),
        (b'{"ordering_hold": "yes"}', False),
        (b'{"max_chain_calls": 1}', True),
        (b'{"max_chain_calls": 1000}', True),
        (b'{"max_chain_calls": 0}', False),
        (b'{"max_chain_calls": 1001}', False),
        (b'{"recursive_loop": "allow"}', True),
        (b'{"recursive_loop": 1}', False),
    ],
)
def test_update_body_limits(body: bytes, ok: bool) -> None:
    if ok:
        msgspec.json.decode(body, type=FunctionUpdate)
    else:
        with pytest.raises(msgspec.ValidationError):
            msgspec.json.decode(body, type=FunctionUpdate)


@pytest.mark.parametrize(
    ("handler", "files"),
    [
        ("main.handler", ("main.py", "main/__init__.py")),
        ("pkg.mod.handle", ("pkg/mod.py", "pkg/mod/__init__.py")),
        ("a.b.c.d", ("a/b/c.py", "a/b/c/__init__.py")),
    ],
)
def test_handler_module_files(handler: str, files: tuple[str, str]) -> None:
    assert handler_module_files(handler) == files


def test_async_settings_default_to_lambdas() -> None:
    config = merge_config(None, FunctionUpdate())
    assert (config.max_retries, config.retry_delay_s, config.max_event_age_s) == (2, 60.0, 21_600)
    assert (config.on_success, config.on_failure, config.ordering_hold) == (None, None, False)


def test_destinations_are_set_kept_and_removed_with_an_empty_name() -> None:
    config = merge_config(None, FunctionUpdate(on_success="audit", on_failure="alarm"))
    assert (config.on_success, config.on_failure) == ("audit", "alarm")
    kept = merge_config(config, FunctionUpdate(max_retries=0))
    assert (kept.on_success, kept.on_failure, kept.max_retries) == ("audit", "alarm", 0)
    removed = merge_config(kept, FunctionUpdate(on_failure=""))
    assert (removed.on_success, removed.on_failure) == ("audit", None)


@pytest.mark.parametrize("name", ["Audit", "-x", "a b", "a/b", "x" * 65])
def test_a_destination_must_be_a_function_name(name: str) -> None:
    with pytest.raises(BadRequest) as info:
        merge_config(None, FunctionUpdate(on_failure=name))
    assert info.value.field == "on_failure"


def test_loops_are_stopped_at_16_calls_by_default_and_a_function_may_opt_out() -> None:
    config = merge_config(None, FunctionUpdate())
    assert (config.max_chain_calls, config.recursive_loop) == (16, "terminate")
    allowed = merge_config(config, FunctionUpdate(recursive_loop="allow", max_chain_calls=4))
    assert (allowed.max_chain_calls, allowed.recursive_loop) == (4, "allow")
    assert merge_config(allowed, FunctionUpdate(memory_mb=256)).recursive_loop == "allow"


@pytest.mark.parametrize("mode", ["Allow", "ignore", ""])
def test_unknown_recursive_loop_modes_are_refused(mode: str) -> None:
    with pytest.raises(BadRequest) as info:
        merge_config(None, FunctionUpdate(recursive_loop=mode))
    assert info.value.field == "recursive_loop"
    assert "terminate, allow" in info.value.message
