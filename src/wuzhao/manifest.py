"""The project manifest, ``wuzhao.yaml``: several functions, and their triggers, in one file.

The format is documented in ``docs/manifest.md``; keep the two in step.

Reading composes the YAML document into nodes (not plain values) and walks
them, so every problem names the file, the line and the field, and all
problems of a file are reported at once::

    wuzhao.yaml:7: functions.hello.memory_mb: must be an integer from 128 to 10240

A manifest states the whole wanted configuration of each function it names: a
setting left out means the server's default, so deleting a line and deploying
again resets that setting. ``max_concurrency`` and ``idle_timeout_s`` are the
exception: the API cannot reset them to the server's default yet, so one left
out keeps its current value (the server's default on create). A destination
(``on_success``, ``on_failure``) left out is sent as ``""``, which removes it.

:func:`deploy` compares each function with the server's current configuration
and with the SHA-256 of its deterministic zip (:func:`wuzhao.packaging.zip_directory`,
the same hash the server keeps), and sends only functions that differ, so
deploying the same files twice sends nothing the second time. Triggers follow
the functions, each compared with the server's and put whole when it differs
(the trigger rules of ``domain/triggers.py`` check them while reading).
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import msgspec
import yaml

from wuzhao import errors
from wuzhao.domain import triggers as trigger_rules
from wuzhao.domain.functions import (
    ENV_NAME_PATTERN,
    HANDLER_PATTERN,
    NAME_PATTERN,
    NETWORK_MODES,
    RECURSIVE_LOOP_MODES,
    FunctionConfig,
    IdleTimeoutS,
    MaxChainCalls,
    MaxConcurrency,
    MaxEventAgeS,
    MaxRetries,
    MemoryMB,
    MinInstances,
    RetryDelayS,
    TimeoutS,
    handler_module_files,
)
from wuzhao.domain.schedules import MISSED_TICKS
from wuzhao.domain.triggers import TriggerSpec
from wuzhao.packaging import zip_directory

if TYPE_CHECKING:
    from wuzhao.client import Client

MANIFEST_FILE = "wuzhao.yaml"
# Top-level keys a later version of the format will use. Today they are an
# error like any unknown key, with a message that says why.
RESERVED_KEYS: dict[str, str] = {}
TOP_LEVEL_KEYS = ("functions", "triggers")
# The settings of a trigger, by type, in the order changes are reported.
TRIGGER_KEYS = {
    "http": ("type", "function", "qualifier", "path", "methods", "auth"),
    "cron": ("type", "function", "qualifier", "schedule", "timezone", "missed_ticks"),
    "object": ("type", "function", "qualifier", "bucket", "events", "prefix", "suffix"),
    "topic": ("type", "function", "qualifier", "topic", "filter"),
}
TRIGGER_REQUIRED = {"http": "path", "cron": "schedule", "object": "bucket", "topic": "topic"}
FUNCTION_KEYS = (
    "code",
    "runtime",
    "handler",
    "memory_mb",
    "timeout_s",
    "env",
    "secrets",
    "layers",
    "network",
    "max_concurrency",
    "min_instances",
    "idle_timeout_s",
    "max_retries",
    "retry_delay_s",
    "max_event_age_s",
    "on_success",
    "on_failure",
    "ordering_hold",
    "max_chain_calls",
    "recursive_loop",
)
# The settings a deploy sends and compares, in the order changes are reported.
SETTINGS = FUNCTION_KEYS[1:]
# Settings the API removes when given "" and shows as null once removed.
CLEARED_BY_EMPTY = ("on_success", "on_failure")

_DEFAULTS = FunctionConfig()
_NAME_RE = re.compile(NAME_PATTERN)
_HANDLER_RE = re.compile(HANDLER_PATTERN)
_ENV_RE = re.compile(ENV_NAME_PATTERN)
_LAYER_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}:[1-9][0-9]{0,8}\Z")  # as the server checks references


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest, where it is and what is wrong."""

    file: str
    line: int | None  # 1-based; None when the whole file is the problem
    field: str  # dotted path, e.g. functions.hello.memory_mb; "" for the document itself
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ManifestError(Exception):
    """A manifest that cannot be deployed; :attr:`problems` lists every reason, by line."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


@dataclass(frozen=True)
class FunctionSpec:
    """One function of a manifest: its code directory and its wanted settings."""

    name: str
    code_dir: Path
    runtime: str = _DEFAULTS.runtime
    handler: str = _DEFAULTS.handler
    memory_mb: int = _DEFAULTS.memory_mb
    timeout_s: int = _DEFAULTS.timeout_s
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # env var -> secret name
    layers: list[str] = field(default_factory=list)  # "name:version"
    network: str = _DEFAULTS.network
    max_concurrency: int | None = None  # None: left as it is
    min_instances: int = _DEFAULTS.min_instances
    idle_timeout_s: int | None = None  # None: left as it is
    max_retries: int = _DEFAULTS.max_retries
    retry_delay_s: float = _DEFAULTS.retry_delay_s
    max_event_age_s: int = _DEFAULTS.max_event_age_s
    on_success: str | None = None  # a function's name; None: no destination
    on_failure: str | None = None
    ordering_hold: bool = _DEFAULTS.ordering_hold
    max_chain_calls: int = _DEFAULTS.max_chain_calls
    recursive_loop: str = _DEFAULTS.recursive_loop
    file: str = MANIFEST_FILE
    # Line of every field path read, e.g. {"functions.hello.env.A": 9}.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def settings(self) -> dict[str, Any]:
        """What a deploy sends besides the code (settings left as None are not sent, but a
        destination left out is sent as "": none, so one set before goes)."""
        values = {key: getattr(self, key) for key in SETTINGS}
        for key in CLEARED_BY_EMPTY:
            if values[key] is None:
                values[key] = ""
        return {key: value for key, value in values.items() if value is not None}

    def problem(self, field: str | None, message: str) -> Problem:
        """A problem with ``field`` (a server error's field, e.g. ``secrets.DB``), at its line."""
        path = f"functions.{self.name}" + (f".{field}" if field else "")
        found = path
        while found and found not in self.lines:
            found = found.rpartition(".")[0]
        return Problem(self.file, self.lines.get(found), path, message)


@dataclass(frozen=True)
class TriggerEntry:
    """One trigger of a manifest: its name and its whole wanted spec (checked)."""

    name: str
    spec: TriggerSpec
    file: str = MANIFEST_FILE
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def settings(self) -> dict[str, Any]:
        """What a deploy sends and compares: every setting of its type, defaults included."""
        values = msgspec.to_builtins(self.spec)
        return {key: values[key] for key in TRIGGER_KEYS[values["type"]]}

    def problem(self, field: str | None, message: str) -> Problem:
        path = f"triggers.{self.name}" + (f".{field}" if field else "")
        line = self.lines.get(path) or self.lines.get(f"triggers.{self.name}")
        return Problem(self.file, line, path, message)


@dataclass(frozen=True)
class Manifest:
    file: str  # as the user named it, for messages
    functions: tuple[FunctionSpec, ...]
    triggers: tuple[TriggerEntry, ...] = ()


def load(path: str | os.PathLike[str] = MANIFEST_FILE) -> Manifest:
    """Read and check the manifest at ``path``; code directories are relative to its folder."""
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError([Problem(str(path), None, "", "does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError([Problem(str(path), None, "", f"cannot be read: {exc}")]) from None
    return parse(text, file=str(path), base_dir=where.parent)


def parse(text: str, *, file: str = MANIFEST_FILE, base_dir: Path = Path(".")) -> Manifest:
    """Check a manifest's text; raises :class:`ManifestError` with every problem found."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ManifestError([Problem(file, line, "", f"invalid YAML: {exc.problem or exc}")]) from None
    except yaml.YAMLError as exc:
        raise ManifestError([Problem(file, None, "", f"invalid YAML: {exc}")]) from None
    reader = _Reader(file, base_dir)
    functions = reader.document(root)
    if reader.problems:
        raise ManifestError(sorted(reader.problems, key=lambda p: p.line or 0))
    return Manifest(file, tuple(functions), tuple(reader.triggers))


class Change(enum.StrEnum):
    CREATED = "created"  # the function did not exist
    UPDATED = "updated"  # some settings or the code differed, and were sent
    UNCHANGED = "unchanged"  # the server already had this; nothing was sent


@dataclass(frozen=True)
class Outcome:
    name: str
    change: Change
    fields: tuple[str, ...]  # what differed (UPDATED), in SETTINGS order, "code" last
    function: Mapping[str, Any] | None  # the server's function object; None for a dry-run create
    kind: str = "function"  # or "trigger"
    trigger: Mapping[str, Any] | None = None  # a trigger's server object; None for a dry-run create


def differences(spec: FunctionSpec, current: Mapping[str, Any], code_sha256: str) -> tuple[str, ...]:
    """The settings of ``spec`` that ``current`` (a function object) does not have, then ``code``."""
    changed = [key for key, value in spec.settings().items() if _current(current, key) != value]
    if current.get("code_sha256") != code_sha256:
        changed.append("code")
    return tuple(changed)


def trigger_differences(entry: TriggerEntry, current: Mapping[str, Any]) -> tuple[str, ...]:
    """The settings of ``entry`` that ``current`` (a trigger object) does not have."""
    return tuple(key for key, value in entry.settings().items() if current.get(key) != value)


def deploy(client: Client, manifest: Manifest, *, dry_run: bool = False) -> Iterator[Outcome]:
    """Deploy every function, then every trigger, of ``manifest`` that differs from the server;
    yield each outcome.

    Every directory is zipped before anything is sent, so an unreadable file
    stops the deploy before it starts. A function or trigger the server refuses
    raises :class:`ManifestError` naming it (and its field's line, when the
    server names a field); those before it stay deployed.
    """
    packages = {spec.name: _package(spec) for spec in manifest.functions}
    current = {function["name"]: function for function in client.list_functions()}
    for spec in manifest.functions:
        code_zip = packages[spec.name]
        existing = current.get(spec.name)
        fields: tuple[str, ...]
        if existing is None:
            change, fields = Change.CREATED, ()
        else:
            fields = differences(spec, existing, hashlib.sha256(code_zip).hexdigest())
            change = Change.UPDATED if fields else Change.UNCHANGED
        if change is Change.UNCHANGED or dry_run:
            yield Outcome(spec.name, change, fields, existing)
            continue
        try:
            function = client.deploy(
                spec.name,
                code_zip=code_zip if change is Change.CREATED or "code" in fields else None,
                **spec.settings(),
            )
        except errors.WuzhaoError as error:
            raise ManifestError([spec.problem(error.field, f"{error.code}: {error.message}")]) from error
        yield Outcome(spec.name, change, fields, function)
    if manifest.triggers:
        yield from _deploy_triggers(client, manifest.triggers, dry_run=dry_run)


def _deploy_triggers(
    client: Client, entries: tuple[TriggerEntry, ...], *, dry_run: bool
) -> Iterator[Outcome]:
    current = {trigger["name"]: trigger for trigger in client.list_triggers()}
    for entry in entries:
        existing = current.get(entry.name)
        fields = trigger_differences(entry, existing) if existing is not None else ()
        change = Change.CREATED if existing is None else Change.UPDATED if fields else Change.UNCHANGED
        if change is Change.UNCHANGED or dry_run:
            yield Outcome(entry.name, change, fields, None, kind="trigger", trigger=existing)
            continue
        try:
            trigger = client.put_trigger(entry.name, **entry.settings())
        except errors.WuzhaoError as error:
            raise ManifestError([entry.problem(error.field, f"{error.code}: {error.message}")]) from error
        yield Outcome(entry.name, change, fields, None, kind="trigger", trigger=trigger)


def _package(spec: FunctionSpec) -> bytes:
    try:
        return zip_directory(spec.code_dir)
    except OSError as exc:
        raise ManifestError([spec.problem("code", f"cannot zip {spec.code_dir}: {exc}")]) from None


def _current(function: Mapping[str, Any], key: str) -> Any:
    """A setting of a server's function object, as a manifest states it (no destination: "")."""
    value = function.get(key)
    return "" if value is None and key in CLEARED_BY_EMPTY else value


def _bounds(annotated: Any) -> tuple[int, int]:
    """``(ge, le)`` of an ``Annotated[int, msgspec.Meta(ge=..., le=...)]`` from the domain."""
    meta = get_args(annotated)[1]
    return int(meta.ge), int(meta.le)


def _float_bounds(annotated: Any) -> tuple[float, float]:
    """``(ge, le)`` of an ``Annotated[float, msgspec.Meta(ge=..., le=...)]`` from the domain."""
    meta = get_args(annotated)[1]
    return float(meta.ge), float(meta.le)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_INVALID = object()  # a scalar that could not be constructed, or a collection where a scalar belongs


class _Reader:
    """Walks the composed document, collecting problems rather than stopping at the first."""

    def __init__(self, file: str, base_dir: Path) -> None:
        self.file = file
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}
        self.triggers: list[TriggerEntry] = []
        self._loader = yaml.SafeLoader("")  # builds a scalar's value from its resolved tag
        self._fields: dict[str, Callable[[yaml.Node, str], Any]] = {
            "code": self.string,
            "runtime": self.string,
            "handler": self.handler,
            "memory_mb": lambda node, path: self.integer(node, path, *_bounds(MemoryMB)),
            "timeout_s": lambda node, path: self.integer(node, path, *_bounds(TimeoutS)),
            "env": lambda node, path: self.env_map(node, path, secrets=False),
            "secrets": lambda node, path: self.env_map(node, path, secrets=True),
            "layers": self.layers,
            "network": self.network,
            "max_concurrency": lambda node, path: self.integer(node, path, *_bounds(MaxConcurrency)),
            "min_instances": lambda node, path: self.integer(node, path, *_bounds(MinInstances)),
            "idle_timeout_s": lambda node, path: self.integer(node, path, *_bounds(IdleTimeoutS)),
            "max_retries": lambda node, path: self.integer(node, path, *_bounds(MaxRetries)),
            "retry_delay_s": lambda node, path: self.number(node, path, *_float_bounds(RetryDelayS)),
            "max_event_age_s": lambda node, path: self.integer(node, path, *_bounds(MaxEventAgeS)),
            "on_success": self.function_name,
            "on_failure": self.function_name,
            "ordering_hold": self.boolean,
            "max_chain_calls": lambda node, path: self.integer(node, path, *_bounds(MaxChainCalls)),
            "recursive_loop": lambda node, path: self.choice(node, path, RECURSIVE_LOOP_MODES),
        }
        self._trigger_fields: dict[str, Callable[[yaml.Node, str], Any]] = {
            "function": self.function_name,
            "qualifier": lambda node, path: self.text(node),  # as written: 3 is "3"
            "path": self.string,
            "methods": self.methods,
            "auth": lambda node, path: self.choice(node, path, ("key", "none")),
            "schedule": self.string,
            "timezone": self.string,
            "missed_ticks": lambda node, path: self.choice(node, path, MISSED_TICKS),
            "bucket": self.string,
            "events": self.object_events,
            "prefix": self.affix,
            "suffix": self.affix,
            "topic": self.string,
            "filter": self.topic_filter,
        }

    def report(self, node: yaml.Node, path: str, message: str) -> None:
        self.problems.append(Problem(self.file, node.start_mark.line + 1, path, message))

    # -- structure ---------------------------------------------------------

    def document(self, root: yaml.Node | None) -> list[FunctionSpec]:
        if root is None:
            self.problems.append(
                Problem(self.file, 1, "", "the manifest is empty; it needs a functions: mapping")
            )
            return []
        entries = self.entries(root, "", what="a mapping with a functions: key")
        if entries is None:
            return []
        specs: list[FunctionSpec] = []
        found = False
        for key, key_node, value in entries:
            if key == "functions":
                found = True
                specs = self.functions(key_node, value)
            elif key == "triggers":
                self.trigger_section(key_node, value)
            elif key in RESERVED_KEYS:
                self.report(key_node, key, f"{RESERVED_KEYS[key]}; remove it for now")
            else:
                self.report(key_node, key, f"unknown top-level key; known: {', '.join(TOP_LEVEL_KEYS)}")
        if not found:
            self.report(root, "functions", "is missing: name the functions to deploy under functions:")
        return specs

    def functions(self, key_node: yaml.Node, node: yaml.Node) -> list[FunctionSpec]:
        entries = self.entries(node, "functions", at=key_node)
        if entries is None:
            return []
        if not entries:
            self.report(key_node, "functions", "names no function")
        specs = [self.function(name, name_node, value) for name, name_node, value in entries]
        return [spec for spec in specs if spec is not None]

    def function(self, name: str, key_node: yaml.Node, node: yaml.Node) -> FunctionSpec | None:
        path = f"functions.{name}"
        before = len(self.problems)
        if not _NAME_RE.match(name):
            self.report(
                key_node,
                path,
                "is not a valid function name: use 1-64 characters of a-z, 0-9, '-' and '_', "
                "starting with a letter or digit",
            )
        entries = self.entries(node, path, at=key_node, what="a mapping of settings (at least code:)")
        if entries is None:
            return None
        values: dict[str, Any] = {}
        for key, setting_node, value in entries:
            read = self._fields.get(key)
            if read is None:
                self.report(
                    setting_node, _join(path, key), f"unknown setting; known: {', '.join(FUNCTION_KEYS)}"
                )
            else:
                values[key] = read(value, _join(path, key))
        if "code" not in values:
            self.report(
                key_node, f"{path}.code", "is missing: the function's directory, relative to the manifest"
            )
        if len(self.problems) > before:
            return None
        code_dir = self._code_dir(path, values.pop("code"), values.get("handler", _DEFAULTS.handler))
        if code_dir is None:
            return None
        lines = {key: line for key, line in self.lines.items() if key == path or key.startswith(f"{path}.")}
        return FunctionSpec(name=name, code_dir=code_dir, file=self.file, lines=lines, **values)

    def _code_dir(self, path: str, code: str, handler: str) -> Path | None:
        code_dir = self.base_dir / code
        line = self.lines[f"{path}.code"]
        if not code_dir.is_dir():
            self.problems.append(
                Problem(
                    self.file, line, f"{path}.code", f"{code!r} is not a directory (relative to the manifest)"
                )
            )
            return None
        candidates = handler_module_files(handler)
        if not any((code_dir / candidate).is_file() for candidate in candidates):
            where = f"{path}.handler" if f"{path}.handler" in self.lines else f"{path}.code"
            self.problems.append(
                Problem(
                    self.file,
                    self.lines[where],
                    where,
                    f"the handler {handler} needs {' or '.join(candidates)} in {code}",
                )
            )
            return None
        return code_dir

    def trigger_section(self, key_node: yaml.Node, node: yaml.Node) -> None:
        entries = self.entries(node, "triggers", at=key_node, what="a mapping of trigger names to settings")
        for name, name_node, value in entries or []:
            entry = self.trigger(name, name_node, value)
            if entry is not None:
                self.triggers.append(entry)

    def trigger(self, name: str, key_node: yaml.Node, node: yaml.Node) -> TriggerEntry | None:
        path = f"triggers.{name}"
        before = len(self.problems)
        if not _NAME_RE.match(name):
            self.report(
                key_node, path, "is not a valid trigger name: use 1-64 characters of a-z, 0-9, '-' and '_'"
            )
        entries = self.entries(node, path, at=key_node, what="a mapping of settings (function:, type:, ...)")
        if entries is None:
            return None
        given = {key: (setting_node, value) for key, setting_node, value in entries}
        kind = self.text(given["type"][1]) if "type" in given else None
        if kind is None:
            self.report(key_node, f"{path}.type", f"is missing: one of {', '.join(TRIGGER_KEYS)}")
            return None
        if kind not in TRIGGER_KEYS:
            self.report(
                given["type"][1], f"{path}.type", f"{kind!r} is unknown; types: {', '.join(TRIGGER_KEYS)}"
            )
            return None
        values: dict[str, Any] = {"type": kind}
        for key, (setting_node, value) in given.items():
            if key == "type":
                continue
            if key not in TRIGGER_KEYS[kind]:
                known = ", ".join(TRIGGER_KEYS[kind])
                self.report(
                    setting_node, _join(path, key), f"unknown setting of {kind} triggers; known: {known}"
                )
                continue
            values[key] = self._trigger_fields[key](value, _join(path, key))
        for required in ("function", TRIGGER_REQUIRED[kind]):
            if required not in given:
                self.report(key_node, f"{path}.{required}", "is missing")
        if len(self.problems) > before:
            return None
        try:  # what only the trigger rules can say (a bad path or schedule), at its field's line
            spec = trigger_rules.check_trigger(name, msgspec.convert(values, type=TriggerSpec))
        except (errors.BadRequest, msgspec.ValidationError) as error:
            field = getattr(error, "field", None)
            where = f"{path}.{field}" if field else path
            self.problems.append(
                Problem(self.file, self.lines.get(where, self.lines.get(path)), where, str(error))
            )
            return None
        lines = {key: line for key, line in self.lines.items() if key == path or key.startswith(f"{path}.")}
        return TriggerEntry(name, spec, self.file, lines)

    def function_name(self, node: yaml.Node, path: str) -> str | None:
        value = self.string(node, path)
        if value is not None and not _NAME_RE.match(value):
            self.report(node, path, f"{value!r} is not a function name")
            return None
        return value

    def choice(self, node: yaml.Node, path: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node)
        if value not in choices:
            self.report(node, path, f"must be one of: {', '.join(choices)}")
            return None
        return value

    def methods(self, node: yaml.Node, path: str) -> list[str] | None:
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        found = [self.text(item) for item in items]
        if not found or any(method is None for method in found):
            self.report(node, path, "must be a method (GET), ANY, or a list of methods")
            return None
        return [str(method) for method in found]

    def object_events(self, node: yaml.Node, path: str) -> list[str] | None:
        """``created``, ``deleted`` or a list of them."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        found = [self.text(item) for item in items]
        if not found or any(event not in trigger_rules.OBJECT_EVENTS for event in found):
            self.report(node, path, "must be created, deleted, or a list of them")
            return None
        return [str(event) for event in found]

    def affix(self, node: yaml.Node, path: str) -> str | None:
        """A key's prefix or suffix, as written (``2024`` is "2024"); empty is allowed."""
        if not isinstance(node, yaml.ScalarNode):
            self.report(node, path, "must be a string (the start or end of object keys)")
            return None
        return str(node.value)

    def topic_filter(self, node: yaml.Node, path: str) -> dict[str, list[str]] | None:
        """``attribute: value`` or ``attribute: [values]``, each value as written."""
        entries = self.entries(node, path, what="a mapping of attribute names to values")
        if entries is None:
            return None
        result: dict[str, list[str]] = {}
        for name, _, value_node in entries:
            items = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            values = [self.text(item) if isinstance(item, yaml.ScalarNode) else None for item in items]
            if not values or any(value is None for value in values):
                self.report(value_node, _join(path, name), "must be a value or a list of values")
                continue
            result[name] = [str(value) for value in values]
        return result

    def entries(
        self,
        node: yaml.Node,
        path: str,
        *,
        at: yaml.Node | None = None,
        what: str = "a mapping",
    ) -> list[tuple[str, yaml.Node, yaml.Node]] | None:
        """A mapping's ``(key, key node, value node)``; keys are taken as written (``yes`` is "yes")."""
        if not isinstance(node, yaml.MappingNode):
            self.report(at or node, path, f"must be {what}")
            return None
        own = {id(key_node) for key_node, _ in node.value}
        try:
            # Applies merge keys (<<: *defaults): merged pairs come first, so own keys override them.
            self._loader.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.report(node, path, f"cannot merge: {getattr(exc, 'problem', None) or exc}")
            return None
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.report(key_node, path, "keys must be plain names")
                continue
            key = key_node.value
            earlier = found.get(key)
            if earlier is not None and id(earlier[0]) in own:
                line = earlier[0].start_mark.line + 1
                self.report(key_node, _join(path, key), f"is given twice (first on line {line})")
                continue
            found[key] = (key_node, value)
        for key, (key_node, _) in found.items():
            self.lines[_join(path, key)] = key_node.start_mark.line + 1
        if path:
            self.lines.setdefault(path, node.start_mark.line + 1)
        return [(key, key_node, value) for key, (key_node, value) in found.items()]

    # -- values ------------------------------------------------------------

    def scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return _INVALID
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.YAMLError:  # an unknown tag (!env) or a value its tag refuses (!!int x)
            return _INVALID

    def text(self, node: yaml.Node) -> str | None:
        """A scalar exactly as written (``1.10`` stays "1.10", ``yes`` stays "yes"); None if empty."""
        if not isinstance(node, yaml.ScalarNode) or self.scalar(node) is None:
            return None
        return str(node.value)

    def string(self, node: yaml.Node, path: str) -> str | None:
        value = self.scalar(node)
        if not isinstance(value, str) or not value:
            self.report(node, path, "must be a non-empty string")
            return None
        return value

    def handler(self, node: yaml.Node, path: str) -> str | None:
        value = self.string(node, path)
        if value is not None and not _HANDLER_RE.match(value):
            self.report(node, path, f"{value!r} is not MODULE.FUNCTION, e.g. main.handler")
            return None
        return value

    def network(self, node: yaml.Node, path: str) -> str | None:
        value = self.text(node)
        if value not in NETWORK_MODES:
            self.report(node, path, f"must be one of: {', '.join(NETWORK_MODES)}")
            return None
        return value

    def integer(self, node: yaml.Node, path: str, low: int, high: int) -> int | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.report(node, path, f"must be an integer from {low} to {high}")
            return None
        return value

    def number(self, node: yaml.Node, path: str, low: float, high: float) -> float | None:
        value = self.scalar(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            self.report(node, path, f"must be a number from {low:g} to {high:g}")
            return None
        return float(value)

    def boolean(self, node: yaml.Node, path: str) -> bool | None:
        value = self.scalar(node)
        if not isinstance(value, bool):
            self.report(node, path, "must be true or false")
            return None
        return value

    def env_map(self, node: yaml.Node, path: str, *, secrets: bool) -> dict[str, str] | None:
        what = "a mapping of ENV_NAME: secret-name" if secrets else "a mapping of ENV_NAME: value"
        entries = self.entries(node, path, what=what)
        if entries is None:
            return None
        result: dict[str, str] = {}
        for key, key_node, value_node in entries:
            if not _ENV_RE.match(key):
                self.report(key_node, _join(path, key), "is not a valid environment variable name")
                continue
            value = self.text(value_node)
            if value is None or (secrets and not value):
                needed = "the name of a secret" if secrets else 'a value (write "" for an empty one)'
                self.report(value_node, _join(path, key), f"needs {needed}")
                continue
            result[key] = value
        return result

    def layers(self, node: yaml.Node, path: str) -> list[str] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.report(node, path, 'must be a list of "name:version" references')
            return None
        result: list[str] = []
        for index, item in enumerate(node.value):
            # As written: a plain 12:30 would otherwise be read as the base-60 number 750.
            value = self.text(item)
            if value is None or not _LAYER_RE.match(value):
                self.report(item, f"{path}[{index}]", 'must be a layer reference "name:version", e.g. deps:3')
                continue
            result.append(value)
        return result
