import hashlib
import inspect
import json
import textwrap
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from wuzhao import errors, manifest
from wuzhao.client import Client, Deployment
from wuzhao.domain.functions import FunctionConfig
from wuzhao.manifest import Change, FunctionSpec, ManifestError, Problem
from wuzhao.packaging import zip_directory

HANDLER = "def handler(event, context):\n    return event\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("hello", "world"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text(HANDLER)
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "api.py").write_text(HANDLER)
    return tmp_path


def parse(project: Path, text: str) -> manifest.Manifest:
    return manifest.parse(textwrap.dedent(text).lstrip("\n"), file="wuzhao.yaml", base_dir=project)


def problems(project: Path, text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse(project, text)
    return [str(problem) for problem in caught.value.problems]


# -- a good file ---------------------------------------------------------------


def test_every_setting(project: Path) -> None:
    loaded = parse(
        project,
        """
        functions:
          hello:
            code: ./hello
            runtime: python3.11
            handler: main.handler
            memory_mb: 256
            timeout_s: 10
            env:
              GREETING: hi
              RATIO: 1.10
              FLAG: yes
              EMPTY: ""
            secrets: {DB_PASSWORD: db-password}
            layers: [deps:3, "tools:12"]
            network: outbound
            max_concurrency: 0
            idle_timeout_s: 60
            max_retries: 0
            retry_delay_s: 2
            max_event_age_s: 600
            on_success: audit
            on_failure: world
            ordering_hold: true
            max_chain_calls: 3
            recursive_loop: allow
        """,
    )

    (hello,) = loaded.functions
    assert hello == FunctionSpec(
        name="hello",
        code_dir=project / "hello",
        memory_mb=256,
        timeout_s=10,
        env={"GREETING": "hi", "RATIO": "1.10", "FLAG": "yes", "EMPTY": ""},  # as written
        secrets={"DB_PASSWORD": "db-password"},
        layers=["deps:3", "tools:12"],
        network="outbound",
        max_concurrency=0,
        idle_timeout_s=60,
        max_retries=0,
        retry_delay_s=2.0,
        max_event_age_s=600,
        on_success="audit",
        on_failure="world",
        ordering_hold=True,
        max_chain_calls=3,
        recursive_loop="allow",
    )
    assert hello.settings() == {
        "runtime": "python3.11",
        "handler": "main.handler",
        "memory_mb": 256,
        "timeout_s": 10,
        "env": {"GREETING": "hi", "RATIO": "1.10", "FLAG": "yes", "EMPTY": ""},
        "secrets": {"DB_PASSWORD": "db-password"},
        "layers": ["deps:3", "tools:12"],
        "network": "outbound",
        "max_concurrency": 0,
        "min_instances": 0,
        "idle_timeout_s": 60,
        "max_retries": 0,
        "retry_delay_s": 2.0,
        "max_event_age_s": 600,
        "on_success": "audit",
        "on_failure": "world",
        "ordering_hold": True,
        "max_chain_calls": 3,
        "recursive_loop": "allow",
    }
    assert isinstance(hello.settings()["retry_delay_s"], float)


def test_the_manifest_knows_every_setting_of_a_function() -> None:
    # A setting added to functions and forgotten here could not be written in a manifest.
    assert set(manifest.SETTINGS) == set(FunctionConfig.__struct_fields__)


def test_defaults_are_the_servers_and_two_limits_are_left_alone(project: Path) -> None:
    (hello,) = parse(project, "functions:\n  hello: {code: hello}\n").functions

    assert hello.settings() == {
        "runtime": "python3.11",
        "handler": "main.handler",
        "memory_mb": 128,
        "timeout_s": 30,
        "env": {},
        "secrets": {},
        "layers": [],
        "network": "none",
        "min_instances": 0,
        "max_retries": 2,
        "retry_delay_s": 60.0,
        "max_event_age_s": 21_600,
        "on_success": "",  # none: one set before is removed
        "on_failure": "",
        "ordering_hold": False,
        "max_chain_calls": 16,
        "recursive_loop": "terminate",
    }


def test_anchors_and_merge_keys_share_settings(project: Path) -> None:
    loaded = parse(
        project,
        """
        functions:
          hello: &base
            code: hello
            memory_mb: 512
            env: {A: "1"}
          world:
            <<: *base
            code: world
            memory_mb: 256
          api:
            <<: *base
            code: app
            handler: api.handler
        """,
    )

    _, world, api = loaded.functions
    assert (world.memory_mb, world.env, world.code_dir) == (256, {"A": "1"}, project / "world")
    assert (api.memory_mb, api.handler) == (512, "api.handler")


def test_the_documented_example_is_valid(tmp_path: Path) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "manifest.md").read_text()
    example = doc.split("```yaml\n# wuzhao.yaml\n", 1)[1].split("```", 1)[0]
    for name in ("hello", "resize", "thumbnail"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text(HANDLER)

    loaded = manifest.parse(example, base_dir=tmp_path)

    assert [f.name for f in loaded.functions] == ["hello", "resize", "thumbnail"]
    assert loaded.functions[2].timeout_s == 300
    assert (loaded.functions[2].max_retries, loaded.functions[2].on_failure) == (1, "hello")  # merged
    types = [(t.name, t.settings()["type"]) for t in loaded.triggers]
    assert types == [
        ("hello-http", "http"),
        ("nightly", "cron"),
        ("thumbnails", "object"),
        ("refunds", "topic"),
    ]
    assert loaded.functions[2].max_chain_calls == 4  # merged too


def test_load_reads_relative_to_the_manifest_folder(project: Path) -> None:
    (project / "wuzhao.yaml").write_text("functions:\n  hello:\n    code: hello\n")

    loaded = manifest.load(project / "wuzhao.yaml")

    assert loaded.file == str(project / "wuzhao.yaml")
    assert loaded.functions[0].code_dir == project / "hello"


def test_load_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError) as caught:
        manifest.load(tmp_path / "nope.yaml")

    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}: does not exist"


# -- errors, each with its line ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "wuzhao.yaml:1: the manifest is empty; it needs a functions: mapping"),
        ("- a\n", "wuzhao.yaml:1: must be a mapping with a functions: key"),
        ("functions:\n  hello: {code: hello\n", "wuzhao.yaml:3: invalid YAML: expected ',' or '}', but got"),
        ("functions:\n\thello: {}\n", "wuzhao.yaml:2: invalid YAML: found character '\\t'"),
        ("functions: []\n", "wuzhao.yaml:1: functions: must be a mapping"),
        ("functions: {}\n", "wuzhao.yaml:1: functions: names no function"),
        ("other: 1\n", "wuzhao.yaml:1: functions: is missing"),
        (
            "functions:\n  hello: {code: hello}\ntriggers: []\n",
            "wuzhao.yaml:3: triggers: must be a mapping of trigger names to settings",
        ),
        (
            "functions:\n  hello: {code: hello}\nfunctoins: {}\n",
            "wuzhao.yaml:3: functoins: unknown top-level key",
        ),
        ("functions:\n  hello:\n", "wuzhao.yaml:2: functions.hello: must be a mapping of settings"),
        (
            "functions:\n  Hello: {code: hello}\n",
            "wuzhao.yaml:2: functions.Hello: is not a valid function name",
        ),
        ("functions:\n  hello:\n    memory_mb: 256\n", "wuzhao.yaml:2: functions.hello.code: is missing"),
        (
            "functions:\n  hello:\n    code: hello\n    memory: 256\n",
            "wuzhao.yaml:4: functions.hello.memory: unknown setting; known: code, runtime",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    code: world\n",
            "wuzhao.yaml:4: functions.hello.code: is given twice (first on line 3)",
        ),
        (
            "functions:\n  hello:\n    code: nope\n",
            "wuzhao.yaml:3: functions.hello.code: 'nope' is not a directory",
        ),
        (
            "functions:\n  hello:\n    code: [hello]\n",
            "wuzhao.yaml:3: functions.hello.code: must be a non-empty string",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    handler: app.handle\n",
            "wuzhao.yaml:4: functions.hello.handler: the handler app.handle needs app.py or app/__init__.py",
        ),
        (
            "functions:\n  hello:\n    code: app\n",
            "wuzhao.yaml:3: functions.hello.code: the handler main.handler needs main.py or main/__init__.py",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    handler: main\n",
            "wuzhao.yaml:4: functions.hello.handler: 'main' is not MODULE.FUNCTION",
        ),
        (
            "functions:\n  hello:\n    code: hello\n\n    memory_mb: 99999\n",
            "wuzhao.yaml:5: functions.hello.memory_mb: must be an integer from 128 to 10240",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    memory_mb: '256'\n",
            "wuzhao.yaml:4: functions.hello.memory_mb: must be an integer from 128 to 10240",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    timeout_s: true\n",
            "wuzhao.yaml:4: functions.hello.timeout_s: must be an integer from 1 to 900",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    max_concurrency: -1\n",
            "wuzhao.yaml:4: functions.hello.max_concurrency: must be an integer from 0 to 10000",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    idle_timeout_s: 1.5\n",
            "wuzhao.yaml:4: functions.hello.idle_timeout_s: must be an integer from 1 to 86400",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    network: inbound\n",
            "wuzhao.yaml:4: functions.hello.network: must be one of: none, outbound",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    env: [A=1]\n",
            "wuzhao.yaml:4: functions.hello.env: must be a mapping of ENV_NAME: value",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    env:\n      OK: 1\n      1BAD: x\n",
            "wuzhao.yaml:6: functions.hello.env.1BAD: is not a valid environment variable name",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    env:\n      A:\n",
            "wuzhao.yaml:5: functions.hello.env.A: needs a value",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    env:\n      A: [1]\n",
            "wuzhao.yaml:5: functions.hello.env.A: needs a value",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    secrets:\n      DB: ''\n",
            "wuzhao.yaml:5: functions.hello.secrets.DB: needs the name of a secret",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    layers: deps:3\n",
            'wuzhao.yaml:4: functions.hello.layers: must be a list of "name:version" references',
        ),
        (
            "functions:\n  hello:\n    code: hello\n    layers:\n      - deps:3\n      - deps\n",
            'wuzhao.yaml:6: functions.hello.layers[1]: must be a layer reference "name:version"',
        ),
        (
            "functions:\n  hello:\n    code: hello\n    max_retries: 11\n",
            "wuzhao.yaml:4: functions.hello.max_retries: must be an integer from 0 to 10",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    retry_delay_s: 0.05\n",
            "wuzhao.yaml:4: functions.hello.retry_delay_s: must be a number from 0.1 to 3600",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    retry_delay_s: soon\n",
            "wuzhao.yaml:4: functions.hello.retry_delay_s: must be a number from 0.1 to 3600",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    retry_delay_s: .nan\n",
            "wuzhao.yaml:4: functions.hello.retry_delay_s: must be a number from 0.1 to 3600",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    max_event_age_s: 0\n",
            "wuzhao.yaml:4: functions.hello.max_event_age_s: must be an integer from 1 to 21600",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    on_success: Audit Log\n",
            "wuzhao.yaml:4: functions.hello.on_success: 'Audit Log' is not a function name",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    on_failure: ''\n",
            "wuzhao.yaml:4: functions.hello.on_failure: must be a non-empty string",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    ordering_hold: 1\n",
            "wuzhao.yaml:4: functions.hello.ordering_hold: must be true or false",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    max_chain_calls: 0\n",
            "wuzhao.yaml:4: functions.hello.max_chain_calls: must be an integer from 1 to 1000",
        ),
        (
            "functions:\n  hello:\n    code: hello\n    recursive_loop: ignore\n",
            "wuzhao.yaml:4: functions.hello.recursive_loop: must be one of: terminate, allow",
        ),
    ],
)
def test_each_error_names_line_and_field(project: Path, text: str, expected: str) -> None:
    assert any(found.startswith(expected) for found in problems(project, text)), problems(project, text)


def test_every_problem_is_reported_in_line_order(project: Path) -> None:
    found = problems(
        project,
        """
        triggers: []
        functions:
          hello:
            code: hello
            memory_mb: 1
          world:
            code: world
            timeout_s: 0
        """,
    )

    assert [line.split(": ")[0:2] for line in found] == [
        ["wuzhao.yaml:1", "triggers"],
        ["wuzhao.yaml:5", "functions.hello.memory_mb"],
        ["wuzhao.yaml:8", "functions.world.timeout_s"],
    ]


def test_a_layer_reference_is_never_read_as_a_number(project: Path) -> None:
    # YAML 1.1 reads a plain 12:30 as 750 (base 60); a layer named "12" must stay "12:30".
    (hello,) = parse(project, "functions:\n  hello: {code: hello, layers: [12:30]}\n").functions

    assert hello.layers == ["12:30"]


def test_problem_without_a_line() -> None:
    assert str(Problem("x.yaml", None, "", "does not exist")) == "x.yaml: does not exist"


def test_a_server_error_is_placed_at_its_fields_line(project: Path) -> None:
    (hello,) = parse(
        project,
        """
        functions:
          hello:
            code: hello
            secrets:
              DB: db-password
            layers: [deps:1]
        """,
    ).functions

    assert str(hello.problem("secrets.DB", "no such secret")) == (
        "wuzhao.yaml:5: functions.hello.secrets.DB: no such secret"
    )
    assert hello.problem("layers", "x").line == 6
    assert hello.problem("memory_mb", "x").line == 2  # not in the file: the function's line
    assert hello.problem(None, "x").field == "functions.hello"


# -- what changed --------------------------------------------------------------


def spec(project: Path, **settings: Any) -> FunctionSpec:
    return FunctionSpec(name="hello", code_dir=project / "hello", **settings)


def server_view(spec: FunctionSpec, sha: str, **changes: Any) -> dict[str, Any]:
    view = {
        "name": spec.name,
        **spec.settings(),
        "on_success": spec.on_success,  # the server shows no destination as null, never ""
        "on_failure": spec.on_failure,
        "max_concurrency": None,
        "idle_timeout_s": None,
        "code_sha256": sha,
        "code_size": 1,
        "revision": 4,
    }
    return {**view, **changes}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, ()),
        ({"memory_mb": 512}, ("memory_mb",)),
        ({"env": {"A": "2"}, "code_sha256": "other"}, ("env", "code")),
        ({"layers": ["b:1", "a:1"]}, ("layers",)),  # order is the import order: it matters
        ({"max_concurrency": 7, "idle_timeout_s": 9}, ()),  # not in the manifest: left alone
        ({"max_retries": 0, "retry_delay_s": 0.5}, ("max_retries", "retry_delay_s")),
        ({"max_event_age_s": 60, "ordering_hold": True}, ("max_event_age_s", "ordering_hold")),
        ({"retry_delay_s": 60}, ()),  # 60 is 60.0
        ({"on_failure": "alert"}, ("on_failure",)),  # not in the manifest: removed
    ],
)
def test_differences(project: Path, changes: dict[str, Any], expected: tuple[str, ...]) -> None:
    wanted = spec(project, env={"A": "1"}, layers=["a:1", "b:1"])

    assert manifest.differences(wanted, server_view(wanted, "sha", **changes), "sha") == expected


def test_limits_given_in_the_manifest_are_compared(project: Path) -> None:
    wanted = spec(project, max_concurrency=3)

    assert manifest.differences(wanted, server_view(wanted, "sha"), "sha") == ("max_concurrency",)


def test_destinations_are_compared_as_the_server_shows_them(project: Path) -> None:
    wanted = spec(project, on_success="audit")
    current = server_view(wanted, "sha")

    assert manifest.differences(wanted, current, "sha") == ()
    assert manifest.differences(wanted, {**current, "on_success": None}, "sha") == ("on_success",)
    assert manifest.differences(wanted, {**current, "on_success": "other"}, "sha") == ("on_success",)


# -- deploy --------------------------------------------------------------------


class FakeClient:
    """list_functions and deploy, keeping what was deployed as a server would."""

    def __init__(self, functions: list[dict[str, Any]] | None = None) -> None:
        self.functions = {f["name"]: f for f in functions or []}
        self.deployed: list[tuple[str, dict[str, Any]]] = []
        self.refuse: errors.WuzhaoError | None = None

    def list_functions(self) -> list[dict[str, Any]]:
        return list(self.functions.values())

    def deploy(self, name: str, *, code_zip: bytes | None = None, **settings: Any) -> Deployment:
        # Only what the real client takes (a setting it lacks is a TypeError there, and here).
        inspect.signature(Client.deploy).bind(self, name, code_zip=code_zip, **settings)
        if self.refuse is not None:
            raise self.refuse
        self.deployed.append((name, {**settings, "code": code_zip is not None}))
        current = self.functions.get(name, {"revision": 0})
        function = {**current, **settings, "name": name, "revision": current["revision"] + 1}
        if code_zip is not None:
            function.update(code_sha256=hashlib.sha256(code_zip).hexdigest(), code_size=len(code_zip))
        self.functions[name] = function
        return Deployment(function, created=current["revision"] == 0)


TWO = """
functions:
  hello:
    code: hello
    memory_mb: 256
  world:
    code: world
"""


def deploy(fake: FakeClient, loaded: manifest.Manifest, **kwargs: Any) -> list[manifest.Outcome]:
    return list(manifest.deploy(cast(Client, fake), loaded, **kwargs))


def test_deploy_creates_then_changes_nothing(project: Path) -> None:
    fake = FakeClient()
    loaded = parse(project, TWO)

    first = deploy(fake, loaded)
    second = deploy(fake, loaded)

    assert [(o.name, o.change) for o in first] == [("hello", Change.CREATED), ("world", Change.CREATED)]
    assert [(o.name, o.change, o.fields) for o in second] == [
        ("hello", Change.UNCHANGED, ()),
        ("world", Change.UNCHANGED, ()),
    ]
    assert [name for name, _ in fake.deployed] == ["hello", "world"]  # nothing sent the second time


def test_deploy_sends_what_changed_and_code_only_when_it_changed(project: Path) -> None:
    fake = FakeClient()
    deploy(fake, parse(project, TWO))
    (project / "world" / "main.py").write_text(HANDLER + "# changed\n")

    outcomes = deploy(fake, parse(project, TWO.replace("256", "512")))

    assert [(o.change, o.fields) for o in outcomes] == [
        (Change.UPDATED, ("memory_mb",)),
        (Change.UPDATED, ("code",)),
    ]
    (hello, hello_settings), (world, world_settings) = fake.deployed[2:]
    assert (hello, hello_settings["code"], hello_settings["memory_mb"]) == ("hello", False, 512)
    assert (world, world_settings["code"]) == ("world", True)
    assert outcomes[0].function is not None and outcomes[0].function["revision"] == 2


def test_every_setting_goes_through_the_real_client(project: Path) -> None:
    # The SDK, not a fake: a setting the manifest sends and Client.deploy lacks is a TypeError.
    sent: list[dict[str, Any]] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"functions": []})
        sent.append(json.loads(request.content))
        return httpx.Response(201, json={"name": "hello", "revision": 1})

    loaded = parse(
        project,
        """
        functions:
          hello:
            code: hello
            memory_mb: 256
            max_retries: 0
            retry_delay_s: 0.5
            max_event_age_s: 120
            on_failure: world
            ordering_hold: true
          world: {code: world}
        """,
    )
    transport = httpx.MockTransport(server)
    with Client(url="http://wuzhao.test", api_key="k", environ={}, transport=transport) as client:
        outcomes = list(manifest.deploy(client, loaded))

    assert [o.change for o in outcomes] == [Change.CREATED, Change.CREATED]
    hello, world = sent
    assert {key: hello[key] for key in manifest.SETTINGS if key in hello} == loaded.functions[0].settings()
    assert (hello["max_retries"], hello["retry_delay_s"], hello["on_failure"]) == (0, 0.5, "world")
    assert (hello["on_success"], hello["ordering_hold"]) == ("", True)
    assert (world["max_retries"], world["on_failure"], world["ordering_hold"]) == (2, "", False)
    assert "code" in hello and "code" in world


def test_dry_run_sends_nothing(project: Path) -> None:
    fake = FakeClient()

    outcomes = deploy(fake, parse(project, TWO), dry_run=True)

    assert [(o.change, o.function) for o in outcomes] == [(Change.CREATED, None), (Change.CREATED, None)]
    assert fake.deployed == []


def test_code_hash_is_that_of_the_deterministic_zip(project: Path) -> None:
    sha = hashlib.sha256(zip_directory(project / "hello")).hexdigest()
    wanted = parse(project, "functions:\n  hello: {code: hello}\n")
    fake = FakeClient([server_view(wanted.functions[0], sha)])

    (outcome,) = deploy(fake, wanted)

    assert outcome.change == Change.UNCHANGED


def test_a_refused_function_is_a_problem_at_its_field(project: Path) -> None:
    fake = FakeClient()
    fake.refuse = errors.BadRequest("secret 'nope' (for DB) does not exist", field="secrets.DB")
    loaded = parse(project, "functions:\n  hello:\n    code: hello\n    secrets:\n      DB: nope\n")

    with pytest.raises(ManifestError) as caught:
        deploy(fake, loaded)

    assert str(caught.value) == (
        "wuzhao.yaml:5: functions.hello.secrets.DB: BadRequest: secret 'nope' (for DB) does not exist"
    )


# -- triggers --------------------------------------------------------------------

TRIGGERS = """
functions:
  hello:
    code: hello
triggers:
  users:
    function: hello
    type: http
    path: /users/{id}
    methods: [get, POST]
    auth: none
  files:
    function: hello
    qualifier: 3
    type: http
    path: /files/{proxy+}
  nightly:
    function: hello
    type: cron
    schedule: "0 3 * * *"
    timezone: Europe/Paris
    missed_ticks: catch_up_one
  often:
    function: hello
    type: cron
    schedule: rate(5 minutes)
"""


HTTP_TRIGGER = "triggers:\n  t:\n    type: http\n    function: hello\n    path: /x\n"
CRON_TRIGGER = "triggers:\n  t:\n    type: cron\n    function: hello\n    schedule: rate(1 hour)\n"


def test_triggers(project: Path) -> None:
    users, files, nightly, often = parse(project, TRIGGERS).triggers
    assert users.settings() == {
        "type": "http",
        "function": "hello",
        "qualifier": None,
        "path": "/users/{id}",
        "methods": ["GET", "POST"],
        "auth": "none",
    }
    assert files.settings() == {
        "type": "http",
        "function": "hello",
        "qualifier": "3",  # as written, never a number
        "path": "/files/{proxy+}",
        "methods": ["ANY"],
        "auth": "key",
    }
    assert nightly.settings() == {
        "type": "cron",
        "function": "hello",
        "qualifier": None,
        "schedule": "0 3 * * *",
        "timezone": "Europe/Paris",
        "missed_ticks": "catch_up_one",
    }
    assert (often.settings()["timezone"], often.settings()["missed_ticks"]) == ("UTC", None)
    assert parse(project, "functions:\n  hello: {code: hello}\ntriggers: {}\n").triggers == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("triggers:\n  t: x\n", "wuzhao.yaml:4: triggers.t: must be a mapping of settings"),
        ("triggers:\n  T_1: {type: cron}\n", "wuzhao.yaml:4: triggers.T_1: is not a valid trigger name"),
        (
            "triggers:\n  t: {function: hello}\n",
            "wuzhao.yaml:4: triggers.t.type: is missing: one of http, cron, object, topic",
        ),
        (
            "triggers:\n  t:\n    type: sms\n",
            "wuzhao.yaml:5: triggers.t.type: 'sms' is unknown; types: http, cron, object, topic",
        ),
        (
            "triggers:\n  t:\n    type: object\n    function: hello\n",
            "wuzhao.yaml:4: triggers.t.bucket: is missing",
        ),
        (
            "triggers:\n  t:\n    type: object\n    function: hello\n    bucket: Photos\n",
            "wuzhao.yaml:7: triggers.t.bucket: bucket 'Photos' is not a bucket name",
        ),
        (
            "triggers:\n  t:\n    type: object\n    function: hello\n    bucket: photos\n    events: [put]\n",
            "wuzhao.yaml:8: triggers.t.events: must be created, deleted, or a list of them",
        ),
        (
            "triggers:\n  t:\n    type: object\n    function: hello\n    bucket: photos\n    topic: x\n",
            "wuzhao.yaml:8: triggers.t.topic: unknown setting of object triggers; known: type, function",
        ),
        (
            "triggers:\n  t:\n    type: topic\n    function: hello\n",
            "wuzhao.yaml:4: triggers.t.topic: is missing",
        ),
        (
            "triggers:\n  t:\n    type: topic\n    function: hello\n    topic: orders\n    filter: [a]\n",
            "wuzhao.yaml:8: triggers.t.filter: must be a mapping of attribute names to values",
        ),
        (
            "triggers:\n  t:\n    type: topic\n    function: hello\n    topic: orders\n"
            "    filter:\n      kind: [{a: 1}]\n",
            "wuzhao.yaml:9: triggers.t.filter.kind: must be a value or a list of values",
        ),
        (
            "triggers:\n  t:\n    type: topic\n    function: hello\n    topic: orders\n"
            "    filter:\n      .kind: a\n",
            "wuzhao.yaml:8: triggers.t.filter: attribute name '.kind' is invalid",
        ),
        ("triggers:\n  t:\n    type: http\n    path: /x\n", "wuzhao.yaml:4: triggers.t.function: is missing"),
        (
            "triggers:\n  t:\n    type: cron\n    function: hello\n",
            "wuzhao.yaml:4: triggers.t.schedule: is missing",
        ),
        (
            HTTP_TRIGGER + "    schedule: rate(1 hour)\n",
            "wuzhao.yaml:8: triggers.t.schedule: unknown setting of http triggers; known: type, function",
        ),
        (
            "triggers:\n  t:\n    type: http\n    function: Hello\n    path: /x\n",
            "wuzhao.yaml:6: triggers.t.function: 'Hello' is not a function name",
        ),
        (
            "triggers:\n  t:\n    type: http\n    function: hello\n    path: /x/\n",
            "wuzhao.yaml:7: triggers.t.path: path '/x/' has an empty segment",
        ),
        (
            "triggers:\n  t:\n    type: http\n    function: hello\n    path: /x\n    methods: [GET, BREW]\n",
            "wuzhao.yaml:8: triggers.t.methods: method 'BREW' is not one of",
        ),
        (
            "triggers:\n  t:\n    type: http\n    function: hello\n    path: /x\n    methods: [[GET]]\n",
            "wuzhao.yaml:8: triggers.t.methods: must be a method (GET), ANY, or a list of methods",
        ),
        (
            "triggers:\n  t:\n    type: http\n    function: hello\n    path: /x\n    auth: basic\n",
            "wuzhao.yaml:8: triggers.t.auth: must be one of: key, none",
        ),
        (
            "triggers:\n  t:\n    type: cron\n    function: hello\n    schedule: 0 3 * *\n",
            "wuzhao.yaml:7: triggers.t.schedule: schedule '0 3 * *' has 4 fields",
        ),
        (
            CRON_TRIGGER + "    timezone: Paris\n",
            "wuzhao.yaml:8: triggers.t.timezone: time zone 'Paris' is unknown",
        ),
        (
            CRON_TRIGGER + "    missed_ticks: all\n",
            "wuzhao.yaml:8: triggers.t.missed_ticks: must be one of: skip, catch_up_one",
        ),
        (
            CRON_TRIGGER + "    qualifier: Live!\n",
            "wuzhao.yaml:8: triggers.t.qualifier: qualifier 'Live!' is neither",
        ),
    ],
)
def test_each_trigger_error_names_line_and_field(project: Path, text: str, expected: str) -> None:
    found = problems(project, "functions:\n  hello: {code: hello}\n" + text)
    assert any(line.startswith(expected) for line in found), found


class TriggerClient(FakeClient):
    """FakeClient, with list_triggers and put_trigger as a server would answer."""

    def __init__(self, triggers: list[dict[str, Any]] | None = None) -> None:
        super().__init__()
        self.triggers = {t["name"]: t for t in triggers or []}
        self.put: list[tuple[str, dict[str, Any]]] = []

    def list_triggers(self) -> list[dict[str, Any]]:
        return list(self.triggers.values())

    def put_trigger(self, name: str, **settings: Any) -> dict[str, Any]:
        if self.refuse is not None:
            raise self.refuse
        self.put.append((name, settings))
        self.triggers[name] = {"name": name, **settings, "url_path": f"/http/default{settings.get('path')}"}
        return self.triggers[name]


def test_deploy_puts_triggers_after_functions_then_changes_nothing(project: Path) -> None:
    fake = TriggerClient()
    loaded = parse(project, TRIGGERS)

    first = deploy(fake, loaded)
    second = deploy(fake, loaded)

    assert [(o.kind, o.name, o.change) for o in first] == [
        ("function", "hello", Change.CREATED),
        ("trigger", "users", Change.CREATED),
        ("trigger", "files", Change.CREATED),
        ("trigger", "nightly", Change.CREATED),
        ("trigger", "often", Change.CREATED),
    ]
    assert fake.put[0] == (
        "users",
        {
            "type": "http",
            "function": "hello",
            "qualifier": None,
            "path": "/users/{id}",
            "methods": ["GET", "POST"],
            "auth": "none",
        },
    )
    assert {o.change for o in second} == {Change.UNCHANGED}
    assert len(fake.put) == 4

    changed = parse(
        project, TRIGGERS.replace("rate(5 minutes)", "rate(10 minutes)").replace("auth: none", "auth: key")
    )
    outcomes = deploy(fake, changed)
    assert [(o.name, o.change, o.fields) for o in outcomes if o.change is not Change.UNCHANGED] == [
        ("users", Change.UPDATED, ("auth",)),
        ("often", Change.UPDATED, ("schedule",)),
    ]
    assert outcomes[1].trigger is not None and outcomes[1].trigger["auth"] == "key"


EVENT_TRIGGERS = """
functions:
  hello:
    code: hello
triggers:
  uploads:
    function: hello
    type: object
    bucket: photos
    events: [deleted, created]
    prefix: 2024/
    suffix: .png
  removals:
    function: hello
    type: object
    bucket: photos
    events: deleted
  any-order:
    function: hello
    type: topic
    topic: orders
  refunds:
    function: hello
    qualifier: live
    type: topic
    topic: orders
    filter:
      kind: [refund, chargeback, refund]
      region: 42
"""


def test_object_and_topic_triggers(project: Path) -> None:
    uploads, removals, any_order, refunds = parse(project, EVENT_TRIGGERS).triggers
    assert uploads.settings() == {
        "type": "object",
        "function": "hello",
        "qualifier": None,
        "bucket": "photos",
        "events": ["created", "deleted"],  # in order, as the server shows them
        "prefix": "2024/",
        "suffix": ".png",
    }
    assert (removals.settings()["events"], removals.settings()["prefix"]) == (["deleted"], "")
    assert any_order.settings() == {
        "type": "topic",
        "function": "hello",
        "qualifier": None,
        "topic": "orders",
        "filter": {},
    }
    # values as written (42 is "42"), once each, sorted: as the server shows them
    assert refunds.settings()["filter"] == {"kind": ["chargeback", "refund"], "region": ["42"]}


def test_object_and_topic_triggers_deploy_once(project: Path) -> None:
    fake = TriggerClient()
    loaded = parse(project, EVENT_TRIGGERS)

    first = deploy(fake, loaded)
    second = deploy(fake, loaded)

    assert [o.change for o in first if o.kind == "trigger"] == [Change.CREATED] * 4
    assert {o.change for o in second} == {Change.UNCHANGED}
    outcomes = deploy(fake, parse(project, EVENT_TRIGGERS.replace("suffix: .png", "suffix: .jpg")))
    assert [(o.name, o.fields) for o in outcomes if o.change is Change.UPDATED] == [("uploads", ("suffix",))]


def test_a_manifest_without_triggers_never_asks_for_them(project: Path) -> None:
    fake = FakeClient()  # no list_triggers: asking would fail
    assert [o.kind for o in deploy(fake, parse(project, TWO))] == ["function", "function"]


def test_dry_run_puts_no_trigger(project: Path) -> None:
    fake = TriggerClient()
    outcomes = deploy(fake, parse(project, TRIGGERS), dry_run=True)
    assert [(o.kind, o.change, o.trigger) for o in outcomes][1:] == [("trigger", Change.CREATED, None)] * 4
    assert fake.put == []


def test_a_refused_trigger_is_a_problem_at_its_field(project: Path) -> None:
    fake = TriggerClient()
    deploy(fake, parse(project, "functions:\n  hello:\n    code: hello\n"))
    fake.refuse = errors.Conflict("trigger 'other' already answers GET /users/{uid}", field="path")

    with pytest.raises(ManifestError) as caught:
        deploy(fake, parse(project, TRIGGERS))

    assert str(caught.value) == (
        "wuzhao.yaml:8: triggers.users.path: Conflict: trigger 'other' already answers GET /users/{uid}"
    )
