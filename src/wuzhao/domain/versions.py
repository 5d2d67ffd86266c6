"""Versions and aliases: which code a qualified call runs.

``$LATEST`` is the mutable working copy; a published version is an immutable
snapshot numbered 1, 2, …; an alias names a version and may send a share of the
calls to a second one (a canary). All of it is decided here, without I/O: the
random draw is passed in.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from wuzhao.domain.functions import FunctionConfig
from wuzhao.errors import BadRequest

LATEST = "$LATEST"
ALIAS_PATTERN = r"^[a-z][a-z0-9_-]{0,63}\Z"  # starts with a letter: never confused with a number
_ALIAS_RE = re.compile(ALIAS_PATTERN)


class QualifierKind(enum.StrEnum):
    LATEST = "latest"  # the working copy
    VERSION = "version"  # a published version number
    ALIAS = "alias"  # a name resolved through the alias table


@dataclass(frozen=True)
class Qualifier:
    kind: QualifierKind
    version: int | None = None
    alias: str | None = None


def parse_qualifier(raw: str | None) -> Qualifier:
    if raw is None or raw == "" or raw == LATEST:
        return Qualifier(QualifierKind.LATEST)
    if _is_number(raw):
        number = int(raw)
        if number < 1:
            raise BadRequest("versions are numbered from 1", field="qualifier")
        return Qualifier(QualifierKind.VERSION, version=number)
    if _ALIAS_RE.match(raw):
        return Qualifier(QualifierKind.ALIAS, alias=raw)
    raise BadRequest(
        f"qualifier {raw!r} is neither $LATEST, a version number nor an alias name", field="qualifier"
    )


def _is_number(raw: str) -> bool:
    # str.isdigit alone also accepts "²" (which int() refuses) and other scripts' digits
    return raw.isascii() and raw.isdigit()


def version_number(raw: str, *, field: str = "version") -> int:
    """A published version number (1, 2, …) from text such as a URL path segment."""
    if not _is_number(raw) or int(raw) < 1:
        raise BadRequest(f"version {raw!r} is not a version number", field=field)
    return int(raw)


def check_alias_name(name: str) -> str:
    if not _ALIAS_RE.match(name):
        raise BadRequest(
            f"alias name {name!r} is invalid: 1-64 of a-z, 0-9, '-' and '_', starting with a letter",
            field="alias",
        )
    return name


@dataclass(frozen=True)
class Routing:
    """Where an alias sends calls: ``version``, except a ``weight`` share to ``additional``."""

    version: int
    additional: int | None = None
    weight: float = 0.0  # share of calls for ``additional``, 0 <= weight < 1

    def pick(self, draw: float) -> int:
        """The version for one call, given a uniform draw in [0, 1)."""
        if self.additional is not None and draw < self.weight:
            return self.additional
        return self.version

    @property
    def versions(self) -> tuple[int, ...]:
        return (self.version,) if self.additional is None else (self.version, self.additional)


def routing_from_weights(version: int, weights: dict[str, float] | None, existing: set[int]) -> Routing:
    """Validate an alias body: the main version and at most one extra version with its share.

    ``weights`` maps a version (as a string, like JSON keys) to the share of calls
    it gets; the main version gets the rest. Shares must be in (0, 1).
    """
    if version not in existing:
        raise BadRequest(f"version {version} does not exist", field="version")
    if not weights:
        return Routing(version)
    if len(weights) != 1:
        raise BadRequest("an alias routes to at most one additional version", field="routing")
    ((raw, weight),) = weights.items()
    if not _is_number(raw) or int(raw) not in existing:
        raise BadRequest(f"additional version {raw!r} does not exist", field="routing")
    additional = int(raw)
    if additional == version:
        raise BadRequest("the additional version must differ from the main one", field="routing")
    if not 0.0 < weight < 1.0:
        raise BadRequest(f"weight {weight} must be between 0 and 1 (exclusive)", field="routing")
    return Routing(version, additional, weight)


@dataclass(frozen=True)
class Executable:
    """Exactly what one call runs: a function's code and configuration at one version.

    Instances are pooled by ``pool_key``; for ``$LATEST`` a higher ``revision``
    replaces the pool (the working copy changed), published versions never change.
    """

    namespace: str
    function: str
    version: str  # "$LATEST" or a published version number, as text
    revision: int  # revision of $LATEST this was taken from (0 for published versions)
    config: FunctionConfig
    code_sha256: str

    @property
    def pool_key(self) -> tuple[str, str, str]:
        return (self.namespace, self.function, self.version)
