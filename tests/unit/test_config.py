import dataclasses
from pathlib import Path

import pytest

from wuzhao.config import Settings, default_data_dir, reference_table
from wuzhao.errors import BadRequest

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"
HOME = {"HOME": "/home/tester"}
FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def test_defaults() -> None:
    settings = Settings.load(HOME)
    assert settings.data_dir == Path("/home/tester/.local/share/wuzhao")
    assert settings.host == "127.0.0.1"
    assert settings.port == 9600
    assert settings.idle_timeout_s == 300.0
    assert settings.max_concurrency == 100
    assert settings.throttle_wait_s == 1.0
    assert settings.max_code_bytes == 50 * 1024 * 1024
    assert settings.max_unpacked_code_bytes == 250 * 1024 * 1024
    assert settings.max_request_bytes == settings.max_response_bytes == 6 * 1024 * 1024
    assert settings.log_bytes_per_call == 1024 * 1024
    assert (settings.uid_base, settings.uid_count) == (200000, 65536)
    assert settings.insecure_no_sandbox is False


def test_data_dir_default_comes_from_home_in_the_given_mapping() -> None:
    assert default_data_dir({"HOME": "/srv/x"}) == Path("/srv/x/.local/share/wuzhao")
    assert Settings.load({"HOME": "/srv/y"}).data_dir == Path("/srv/y/.local/share/wuzhao")


@pytest.mark.parametrize(
    ("env", "raw", "name", "value"),
    [
        ("WUZHAO_HOST", "0.0.0.0", "host", "0.0.0.0"),
        ("WUZHAO_PORT", "8080", "port", 8080),
        ("WUZHAO_PORT", " 8081 ", "port", 8081),
        ("WUZHAO_IDLE_TIMEOUT", "2.5", "idle_timeout_s", 2.5),
        ("WUZHAO_IDLE_TIMEOUT", "60", "idle_timeout_s", 60.0),
        ("WUZHAO_MAX_CONCURRENCY", "3", "max_concurrency", 3),
        ("WUZHAO_THROTTLE_WAIT", "0", "throttle_wait_s", 0.0),
        ("WUZHAO_ASYNC_CONCURRENCY", "8", "async_concurrency", 8),
        ("WUZHAO_RETRY_BUDGET", "0.5", "retry_budget", 0.5),
        ("WUZHAO_RETRY_BUDGET", "1", "retry_budget", 1.0),
        ("WUZHAO_ASYNC_RETENTION", "3600", "async_retention_s", 3600.0),
        ("WUZHAO_MAX_CODE_BYTES", "1024", "max_code_bytes", 1024),
        ("WUZHAO_UID_BASE", "300000", "uid_base", 300000),
        ("WUZHAO_DATA_DIR", "/var/lib/wuzhao", "data_dir", Path("/var/lib/wuzhao")),
        ("WUZHAO_INSECURE_NO_SANDBOX", "1", "insecure_no_sandbox", True),
        ("WUZHAO_INSECURE_NO_SANDBOX", "true", "insecure_no_sandbox", True),
        ("WUZHAO_INSECURE_NO_SANDBOX", "YES", "insecure_no_sandbox", True),
        ("WUZHAO_INSECURE_NO_SANDBOX", "on", "insecure_no_sandbox", True),
        ("WUZHAO_INSECURE_NO_SANDBOX", "0", "insecure_no_sandbox", False),
        ("WUZHAO_INSECURE_NO_SANDBOX", "False", "insecure_no_sandbox", False),
        ("WUZHAO_INSECURE_NO_SANDBOX", "no", "insecure_no_sandbox", False),
        ("WUZHAO_INSECURE_NO_SANDBOX", "off", "insecure_no_sandbox", False),
    ],
)
def test_env_parsing(env: str, raw: str, name: str, value: object) -> None:
    settings = Settings.load({**HOME, env: raw})
    assert getattr(settings, name) == value
    assert type(getattr(settings, name)) is type(value)


def test_an_empty_variable_means_the_default() -> None:
    assert Settings.load({**HOME, "WUZHAO_PORT": "", "WUZHAO_DATA_DIR": ""}) == Settings.load(HOME)


def test_unrelated_variables_are_ignored() -> None:
    assert Settings.load({**HOME, "PORT": "1", "port": "2", "WUZHAO_NOPE": "3"}) == Settings.load(HOME)


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("WUZHAO_PORT", "http"),
        ("WUZHAO_PORT", "96.5"),
        ("WUZHAO_MAX_CONCURRENCY", "ten"),
        ("WUZHAO_IDLE_TIMEOUT", "5m"),
        ("WUZHAO_INSECURE_NO_SANDBOX", "maybe"),
        ("WUZHAO_INSECURE_NO_SANDBOX", "2"),
    ],
)
def test_bad_values_name_the_variable(env: str, raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        Settings.load({**HOME, env: raw})
    assert info.value.field == env
    assert env in info.value.message
    assert repr(raw) in info.value.message


def test_network_allow_is_a_list_of_cidrs() -> None:
    assert Settings.load(HOME).allowed_networks() == ()
    settings = Settings.load({**HOME, "WUZHAO_NETWORK_ALLOW": " 10.203.0.0/24, fd00::/8 ,"})
    assert [str(n) for n in settings.allowed_networks()] == ["10.203.0.0/24", "fd00::/8"]


@pytest.mark.parametrize(("raw", "bad"), [("10.0.0.1/24", "10.0.0.1/24"), ("10.0.0.0/8, lan", "lan")])
def test_a_bad_network_allow_entry_is_named(raw: str, bad: str) -> None:
    with pytest.raises(BadRequest) as info:
        Settings.load({**HOME, "WUZHAO_NETWORK_ALLOW": raw})
    assert info.value.field == "WUZHAO_NETWORK_ALLOW"
    assert repr(bad) in info.value.message


def test_overrides_win_over_the_environment() -> None:
    settings = Settings.load(
        {**HOME, "WUZHAO_PORT": "1111", "WUZHAO_HOST": "0.0.0.0", "WUZHAO_DATA_DIR": "/from/env"},
        port=2222,
        data_dir=Path("/from/cli"),
    )
    assert settings.port == 2222
    assert settings.data_dir == Path("/from/cli")
    assert settings.host == "0.0.0.0"


def test_none_overrides_are_ignored() -> None:
    settings = Settings.load({**HOME, "WUZHAO_PORT": "1111"}, port=None, host=None, data_dir=None)
    assert settings.port == 1111
    assert settings.host == "127.0.0.1"
    assert settings.data_dir == Path("/home/tester/.local/share/wuzhao")


def test_data_dir_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.load({**HOME, "WUZHAO_DATA_DIR": "state"}).data_dir == tmp_path / "state"
    assert Settings.load(HOME, data_dir="other").data_dir == tmp_path / "other"


def test_settings_are_frozen() -> None:
    settings = Settings.load(HOME)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_every_setting_has_one_distinct_variable_and_a_doc() -> None:
    envs = [f.metadata["env"] for f in FIELDS.values()]
    assert len(set(envs)) == len(envs)
    assert all(env.startswith("WUZHAO_") for env in envs)
    assert all(f.metadata["doc"].strip() for f in FIELDS.values())


def test_reference_table_has_a_row_per_setting() -> None:
    table = reference_table()
    rows = table.splitlines()
    assert len(rows) == 2 + len(FIELDS)
    for name, f in FIELDS.items():
        assert f"| `{name}` | `{f.metadata['env']}` |" in table
    assert "| `port` | `WUZHAO_PORT` | `9600` |" in table


def test_docs_config_md_holds_the_current_table() -> None:
    # Regenerate with: python -m wuzhao.config (see the file's heading).
    assert reference_table() in DOCS.read_text()


def test_runtime_layers_are_checked_on_the_host_only_when_asked(tmp_path: Path) -> None:
    (tmp_path / "sci").mkdir()
    settings = Settings.load({"WUZHAO_RUNTIME_LAYERS": f"sci={tmp_path}/sci, gone={tmp_path}/gone"})
    assert [(m.name, m.directory, m.image) for m in settings.runtime_layer_mounts()] == [
        ("sci", f"{tmp_path}/sci", None),
        ("gone", f"{tmp_path}/gone", None),
    ]
    with pytest.raises(BadRequest, match=r"gone=.* is not an existing directory") as info:
        settings.runtime_layer_mounts(check_dirs=True)
    assert info.value.field == "WUZHAO_RUNTIME_LAYERS"


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("WUZHAO_ASYNC_CONCURRENCY", "0"),
        ("WUZHAO_ASYNC_CONCURRENCY", "-3"),
        ("WUZHAO_RETRY_BUDGET", "0"),
        ("WUZHAO_RETRY_BUDGET", "1.5"),
        ("WUZHAO_RETRY_BUDGET", "-0.2"),
    ],
)
def test_async_settings_out_of_range_stop_the_server(env: str, raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        Settings.load({**HOME, env: raw})
    assert info.value.field == env


def test_async_defaults() -> None:
    settings = Settings.load(HOME)
    assert (settings.async_concurrency, settings.retry_budget, settings.async_retention_s) == (
        64,
        0.2,
        86400.0,
    )


@pytest.mark.parametrize("raw", ["-1", "9"])
def test_zygote_shells_out_of_range_stop_the_server(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        Settings.load({**HOME, "WUZHAO_ZYGOTE_SHELLS": raw})
    assert info.value.field == "WUZHAO_ZYGOTE_SHELLS"
    assert Settings.load({**HOME, "WUZHAO_ZYGOTE_SHELLS": "0"}).zygote_shells == 0


def test_runtime_preload_is_a_list_of_module_names() -> None:
    assert Settings.load(HOME).runtime_preload_modules() == ()
    settings = Settings.load({**HOME, "WUZHAO_RUNTIME_PRELOAD": " numpy, h5py,numpy.linalg ,_private,"})
    assert settings.runtime_preload_modules() == ("numpy", "h5py", "numpy.linalg", "_private")


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("numpy,numpy-x", "'numpy-x' is not a module name"),
        ("numpy..linalg", "'numpy..linalg' is not a module name"),
        ("3d", "'3d' is not a module name"),
        ("numpy/linalg", "'numpy/linalg' is not a module name"),
        ("numpy, numpy", "'numpy' appears twice"),
    ],
)
def test_a_bad_runtime_preload_entry_is_named(raw: str, says: str) -> None:
    with pytest.raises(BadRequest) as info:
        Settings.load({**HOME, "WUZHAO_RUNTIME_PRELOAD": raw})
    assert info.value.field == "WUZHAO_RUNTIME_PRELOAD"
    assert says in info.value.message


def test_cron_settings() -> None:
    settings = Settings.load(HOME)
    assert (settings.cron_missed_ticks, settings.cron_grace_s) == ("skip", 10.0)
    settings = Settings.load(HOME | {"WUZHAO_CRON_MISSED_TICKS": "catch_up_one", "WUZHAO_CRON_GRACE": "0"})
    assert (settings.cron_missed_ticks, settings.cron_grace_s) == ("catch_up_one", 0.0)
    for variable, value in [("WUZHAO_CRON_MISSED_TICKS", "all"), ("WUZHAO_CRON_GRACE", "-1")]:
        with pytest.raises(BadRequest) as caught:
            Settings.load(HOME | {variable: value})
        assert caught.value.field == variable
