import pytest

from wuzhao.domain.routes import Kind, Route, RouteTable, conflict, parse_methods, parse_path, split_path
from wuzhao.errors import BadRequest


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("/", ()),
        ("/users", ((Kind.LITERAL, "users"),)),
        ("/users/{id}", ((Kind.LITERAL, "users"), (Kind.PARAM, "id"))),
        ("/files/{proxy+}", ((Kind.LITERAL, "files"), (Kind.GREEDY, "proxy"))),
        ("/{proxy+}", ((Kind.GREEDY, "proxy"),)),
        ("/a/{x}/b/{y}", ((Kind.LITERAL, "a"), (Kind.PARAM, "x"), (Kind.LITERAL, "b"), (Kind.PARAM, "y"))),
        ("/v1.2/x-y_z~:@!$&'()*+,;=", ((Kind.LITERAL, "v1.2"), (Kind.LITERAL, "x-y_z~:@!$&'()*+,;="))),
    ],
)
def test_paths(path: str, segments: tuple[tuple[Kind, str], ...]) -> None:
    pattern = parse_path(path)
    assert pattern.path == path
    assert tuple((s.kind, s.text) for s in pattern.segments) == segments


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("users", "must start with /"),
        ("", "must start with /"),
        ("/users/", "empty segment"),
        ("//users", "empty segment"),
        ("/a//b", "empty segment"),
        ("/{proxy+}/more", "must be the last segment"),
        ("/{id}/{id}", "appears twice"),
        ("/user-{id}", "whole-segment parameter"),
        ("/{}", "whole-segment parameter"),
        ("/{1d}", "whole-segment parameter"),
        ("/a b", "whole-segment parameter"),
        ("/a%20b", "whole-segment parameter"),  # patterns are written decoded
        ("/a?b", "whole-segment parameter"),
        ("/" + "a" * 512, "longer than 512"),
    ],
)
def test_refused_paths(path: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_path(path)
    assert caught.value.field == "path"
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("methods", "expected"),
    [
        (["GET"], frozenset({"GET"})),
        (["get", "Post"], frozenset({"GET", "POST"})),
        (["ANY"], None),
        (["any"], None),
    ],
)
def test_methods(methods: list[str], expected: frozenset[str] | None) -> None:
    assert parse_methods(methods) == expected


@pytest.mark.parametrize(
    ("methods", "message"),
    [
        ([], "at least one"),
        (["ANY", "GET"], "give it alone"),
        (["FETCH"], "is not one of"),
        (["GET", "get"], "given twice"),
    ],
)
def test_refused_methods(methods: list[str], message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_methods(methods)
    assert caught.value.field == "methods"
    assert message in caught.value.message


def route(name: str, path: str, *methods: str) -> Route:
    return Route(name, parse_path(path), parse_methods(methods or ["ANY"]))


TABLE = RouteTable(
    [
        route("catch-all", "/{proxy+}"),
        route("user", "/users/{id}", "GET"),
        route("me", "/users/me", "GET"),
        route("user-any", "/users/{id}", "PUT", "DELETE"),
        route("files", "/files/{path+}", "GET"),
        route("file-meta", "/files/{path+}", "HEAD"),
        route("readme", "/files/docs/{name}", "GET"),
        route("root", "/", "GET"),
        route("posts", "/users/{id}/posts/{post}", "GET"),
    ]
)


@pytest.mark.parametrize(
    ("method", "path", "name", "parameters"),
    [
        ("GET", "/users/42", "user", {"id": "42"}),
        ("GET", "/users/me", "me", {}),  # a literal beats a parameter
        ("DELETE", "/users/me", "user-any", {"id": "me"}),  # ... for the methods it answers
        ("POST", "/users/42", "catch-all", {"proxy": "users/42"}),
        ("GET", "/users/42/posts/7", "posts", {"id": "42", "post": "7"}),
        ("GET", "/files/a/b/c.txt", "files", {"path": "a/b/c.txt"}),
        ("GET", "/files/docs/readme", "readme", {"name": "readme"}),  # literal beats greedy
        ("GET", "/files/docs/a/b", "files", {"path": "docs/a/b"}),
        ("HEAD", "/files/x", "file-meta", {"path": "x"}),
        ("GET", "/", "root", {}),
        ("POST", "/", None, {}),  # {proxy+} takes one segment or more, never none
        ("GET", "/anything", "catch-all", {"proxy": "anything"}),
        ("GET", "/users/42/", None, {}),  # a trailing / is an empty segment, in no parameter
        ("GET", "/files", "catch-all", {"proxy": "files"}),
        ("GET", "/users/a/b", "catch-all", {"proxy": "users/a/b"}),
    ],
)
def test_matching(method: str, path: str, name: str | None, parameters: dict[str, str]) -> None:
    match = TABLE.match(method, split_path(path))
    assert (match.route.name if match.route else None, match.parameters) == (name, parameters)


def test_no_route_says_which_methods_the_path_has() -> None:
    table = RouteTable([route("user", "/users/{id}", "GET"), route("edit", "/users/{id}", "PUT", "PATCH")])
    assert table.match("GET", ["users", "1"]).route is not None
    refused = table.match("DELETE", ["users", "1"])
    assert (refused.route, refused.allowed) == (None, frozenset({"GET", "PUT", "PATCH"}))
    unknown = table.match("GET", ["other"])
    assert (unknown.route, unknown.allowed) == (None, frozenset())


def test_a_specific_method_beats_any_on_the_same_path() -> None:
    table = RouteTable([route("any", "/x"), route("get", "/x", "GET")])
    assert [r.name for r in table.routes] == ["get", "any"]
    assert table.match("GET", ["x"]).route.name == "get"  # type: ignore[union-attr]
    assert table.match("POST", ["x"]).route.name == "any"  # type: ignore[union-attr]


def test_route_keys() -> None:
    assert route("a", "/users/{id}", "GET").key == "GET /users/{id}"
    assert route("a", "/users/{id}", "POST", "GET").key == "GET POST /users/{id}"
    assert route("a", "/{proxy+}").key == "ANY /{proxy+}"


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        (("/users/{id}", "GET"), ("/users/{uid}", "GET"), True),  # same shape, other names
        (("/users/{id}", "GET"), ("/users/{id}", "POST"), False),
        (("/users/{id}", "GET", "POST"), ("/users/{id}", "POST"), True),
        (("/users/{id}",), ("/users/{id}", "PATCH"), True),  # ANY overlaps everything
        (("/users/{id}", "GET"), ("/users/me", "GET"), False),  # a literal is more specific
        (("/files/{p+}", "GET"), ("/files/{p}", "GET"), False),  # greedy is not a parameter
        (("/a", "GET"), ("/b", "GET"), False),
    ],
)
def test_conflicts(first: tuple[str, ...], second: tuple[str, ...], clash: bool) -> None:
    one, two = route("one", *first), route("two", *second)
    assert (conflict(two, [one]) is one) is clash
    assert conflict(one, [one]) is None  # a trigger never conflicts with itself


def test_split_path() -> None:
    assert split_path("/") == []
    assert split_path("") == []
    assert split_path("/a/b") == ["a", "b"]
    assert split_path("/a/") == ["a", ""]
