"""Routes of HTTP triggers: path patterns, their order, and matching a request to one.

A pattern is a path of segments, each a literal (``users``), a parameter that
takes one whole segment (``{id}``) or, as the last segment only, a greedy
parameter that takes one or more (``{proxy+}``), as in API Gateway. A route is
a pattern with the methods it answers (``ANY``: all of them).

When several routes match a request, the most specific wins: segment by
segment from the left, a literal beats a parameter, which beats a greedy
parameter; for the same path, a route naming the method beats ``ANY``. Two
routes of one namespace that would match exactly the same requests (same
shape, overlapping methods) conflict, so the winner is never arbitrary.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wuzhao.errors import BadRequest

ANY = "ANY"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
MAX_PATH_LENGTH = 512
_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]{0,63})(\+?)\}\Z")
# RFC 3986 pchar, less '{' and '}' (which mark parameters) and '%' (patterns are written decoded).
_LITERAL = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+\Z")


class Kind(enum.IntEnum):  # the order is the precedence: a lower kind is more specific
    LITERAL = 0
    PARAM = 1
    GREEDY = 2


@dataclass(frozen=True)
class Segment:
    kind: Kind
    text: str  # the literal, or the parameter's name


@dataclass(frozen=True)
class Pattern:
    path: str  # as written, e.g. /users/{id}
    segments: tuple[Segment, ...]

    @property
    def shape(self) -> tuple[tuple[Kind, str], ...]:
        """What the pattern matches, without its parameters' names."""
        return tuple((s.kind, s.text if s.kind is Kind.LITERAL else "") for s in self.segments)


def parse_path(path: str) -> Pattern:
    """Check a path pattern; BadRequest on ``path`` says what is wrong."""
    if not path.startswith("/"):
        raise BadRequest(f"path {path!r} must start with /", field="path")
    if len(path) > MAX_PATH_LENGTH:
        raise BadRequest(f"path is longer than {MAX_PATH_LENGTH} characters", field="path")
    if path == "/":
        return Pattern(path, ())
    parts = path[1:].split("/")
    segments: list[Segment] = []
    for index, part in enumerate(parts):
        param = _PARAM.match(part)
        if param is not None:
            greedy = bool(param.group(2))
            if greedy and index != len(parts) - 1:
                raise BadRequest(
                    f"path {path!r}: a greedy parameter {part} must be the last segment", field="path"
                )
            name = param.group(1)
            if any(s.text == name for s in segments if s.kind is not Kind.LITERAL):
                raise BadRequest(f"path {path!r}: parameter {name!r} appears twice", field="path")
            segments.append(Segment(Kind.GREEDY if greedy else Kind.PARAM, name))
        elif part and _LITERAL.match(part):
            segments.append(Segment(Kind.LITERAL, part))
        elif not part:
            raise BadRequest(f"path {path!r} has an empty segment (// or a trailing /)", field="path")
        else:
            raise BadRequest(
                f"path {path!r}: segment {part!r} must be a literal (letters, digits, -._~!$&'()*+,;=:@) "
                "or a whole-segment parameter like {id} or {proxy+}",
                field="path",
            )
    return Pattern(path, tuple(segments))


def parse_methods(methods: Iterable[str]) -> frozenset[str] | None:
    """The methods of a route, upper-cased; None for ``ANY`` (every method)."""
    found = [method.upper() for method in methods]
    if not found:
        raise BadRequest("methods must name at least one method, or ANY", field="methods")
    if ANY in found:
        if len(found) > 1:
            raise BadRequest("ANY already takes every method: give it alone", field="methods")
        return None
    for method in found:
        if method not in METHODS:
            raise BadRequest(f"method {method!r} is not one of {', '.join((*METHODS, ANY))}", field="methods")
    if len(set(found)) != len(found):
        raise BadRequest("a method is given twice", field="methods")
    return frozenset(found)


@dataclass(frozen=True)
class Route:
    name: str  # the trigger's
    pattern: Pattern
    methods: frozenset[str] | None  # None: any method

    @property
    def key(self) -> str:
        """API Gateway's ``routeKey``: ``GET /users/{id}``, ``ANY /{proxy+}``."""
        methods = " ".join(sorted(self.methods)) if self.methods is not None else ANY
        return f"{methods} {self.pattern.path}"

    def answers(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def precedence(self) -> tuple[tuple[int, ...], int, str]:
        return (tuple(s.kind for s in self.pattern.segments), self.methods is None, self.name)


def conflict(route: Route, others: Iterable[Route]) -> Route | None:
    """Another route that would take exactly the requests ``route`` takes, if any."""
    for other in others:
        if other.name == route.name or other.pattern.shape != route.pattern.shape:
            continue
        if route.methods is None or other.methods is None or route.methods & other.methods:
            return other
    return None


@dataclass(frozen=True)
class Match:
    route: Route | None  # None: no route takes this method (see ``allowed``) or this path
    parameters: dict[str, str] = field(default_factory=dict)
    allowed: frozenset[str] = frozenset()  # the methods routes of this path answer


class RouteTable:
    """The HTTP routes of one namespace, most specific first."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=Route.precedence)

    def match(self, method: str, segments: Sequence[str]) -> Match:
        """The route for ``method`` on a path split into its (decoded) segments."""
        allowed: set[str] = set()
        for route in self.routes:
            parameters = _bind(route.pattern, segments)
            if parameters is None:
                continue
            if route.answers(method):
                return Match(route, parameters)
            allowed |= route.methods or set()
        return Match(None, allowed=frozenset(allowed))


def split_path(path: str) -> list[str]:
    """``/users/42`` as ``["users", "42"]``; ``/`` as ``[]``."""
    return [] if path in ("", "/") else path[1:].split("/")


def _bind(pattern: Pattern, segments: Sequence[str]) -> dict[str, str] | None:
    """The parameters if ``pattern`` matches ``segments``, else None."""
    wanted = pattern.segments
    greedy = bool(wanted) and wanted[-1].kind is Kind.GREEDY
    if len(segments) < len(wanted) or (not greedy and len(segments) != len(wanted)):
        return None
    parameters: dict[str, str] = {}
    for index, segment in enumerate(wanted):
        if segment.kind is Kind.GREEDY:
            rest = segments[index:]
            if not all(rest):  # an empty segment (// or a trailing /) is not part of any value
                return None
            parameters[segment.text] = "/".join(rest)
            return parameters
        value = segments[index]
        if segment.kind is Kind.LITERAL:
            if value != segment.text:
                return None
        elif not value:
            return None
        else:
            parameters[segment.text] = value
    return parameters
