import pytest

from wuzhao.errors import BadRequest
from wuzhao.objects.names import (
    DEFAULT_CONTENT_TYPE,
    MAX_KEY_BYTES,
    check_bucket,
    check_content_type,
    check_key,
    check_metadata,
    check_prefix,
    key_successor,
)

# -- bucket names --


@pytest.mark.parametrize(
    "name", ["abc", "my-bucket", "my.bucket", "0ab", "a" * 63, "photos-2024.backup", "1-2", "a1b"]
)
def test_valid_bucket_names(name: str) -> None:
    assert check_bucket(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ab",  # too short
        "a" * 64,  # too long
        "Photos",  # upper case
        "-abc",
        "abc-",
        ".abc",
        "abc.",
        "a..b",
        "a_b",
        "a b",
        "a/b",
        "..",
        "...",
        "192.168.1.1",  # like an IP address
        "10.0.0.255",
        "ab\x00c",
        "abc\n",
        "über",
        "%2e%2e",
    ],
)
def test_invalid_bucket_names(name: str) -> None:
    with pytest.raises(BadRequest) as raised:
        check_bucket(name)
    assert raised.value.field == "bucket"


def test_an_ip_like_name_with_more_parts_is_a_name() -> None:
    assert check_bucket("1.2.3.4.5") == "1.2.3.4.5"


# -- keys --


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "photos/2024/cat.png",
        "trailing/",
        "a//b",
        "..a/b..",  # dots inside a segment are fine
        "...",
        ".hidden",
        "dir/.hidden",
        "ü/ñ/日本語/😀",
        "   spaces   ",
        "a\\b",  # a backslash is only a character
        "%2e%2e",  # percent signs are characters too: the URL was decoded already
        "x" * MAX_KEY_BYTES,
        "é" * (MAX_KEY_BYTES // 2),  # 2 bytes each: exactly the limit
    ],
)
def test_valid_keys(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("", "1 to 1024 bytes"),
        ("x" * (MAX_KEY_BYTES + 1), "1 to 1024 bytes"),
        ("é" * (MAX_KEY_BYTES // 2) + "x", "1 to 1024 bytes"),  # 1024 characters would pass; bytes count
        ("..", "'.' or '..' segment"),
        (".", "'.' or '..' segment"),
        ("../etc/passwd", "'.' or '..' segment"),
        ("a/../b", "'.' or '..' segment"),
        ("a/./b", "'.' or '..' segment"),
        ("a/..", "'.' or '..' segment"),
        ("/etc/passwd", "cannot start with '/'"),
        ("/", "cannot start with '/'"),
        ("a\x00b", "control character"),
        ("\x00", "control character"),
        ("a\nb", "control character"),
        ("a\r\nX-Injected: 1", "control character"),
        ("\x1b[31mred", "control character"),
        ("a\x7fb", "control character"),
        ("a\x85b", "control character"),  # C1 (NEL)
        ("\ud800", "valid UTF-8"),  # a lone surrogate
    ],
)
def test_hostile_keys_are_refused(key: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why) as raised:
        check_key(key)
    assert raised.value.field == "key"


# -- prefixes, metadata, content types --


def test_prefixes_may_be_any_start_of_a_key() -> None:
    for prefix in ("", "a/", "..", "/", "ü"):
        assert check_prefix(prefix) == prefix
    for bad in ("a\x00", "x" * (MAX_KEY_BYTES + 1), "\udc80"):
        with pytest.raises(BadRequest):
            check_prefix(bad, "after")


@pytest.mark.parametrize(
    "metadata",
    [{}, {"owner": "me"}, {"a-b_c": "x y z"}, {"n": ""}, {"v": "!~"}, {"x" * 100: "y" * 1948}],
)
def test_valid_metadata(metadata: dict[str, str]) -> None:
    assert check_metadata(metadata) == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        {"Owner": "me"},  # names travel as header names: lower case only
        {"": "x"},
        {"a b": "x"},
        {"a:b": "x"},
        {"owner": "ü"},  # not ASCII: not a header value
        {"owner": "a\r\nX-Injected: 1"},
        {"owner": " leading"},
        {"owner": "trailing "},
        {"owner": "tab\tinside"},
        {"x" * 100: "y" * 1949},  # 2049 bytes in all
    ],
)
def test_invalid_metadata(metadata: dict[str, str]) -> None:
    with pytest.raises(BadRequest) as raised:
        check_metadata(metadata)
    assert raised.value.field == "metadata"


def test_content_types() -> None:
    assert check_content_type(None) == check_content_type("") == DEFAULT_CONTENT_TYPE
    assert check_content_type("text/plain; charset=utf-8") == "text/plain; charset=utf-8"
    for bad in ("a" * 256, "text/\r\nX: 1", "tëxt/plain"):
        with pytest.raises(BadRequest):
            check_content_type(bad)


# -- the prefix range --


@pytest.mark.parametrize(
    ("prefix", "successor"),
    [
        (b"a", b"b"),
        (b"a/", b"a0"),
        (b"ab\xff", b"ac"),
        (b"\xff\xff", None),
        (b"", None),
        ("é".encode(), b"\xc3\xaa"),
    ],
)
def test_key_successor(prefix: bytes, successor: bytes | None) -> None:
    assert key_successor(prefix) == successor


@pytest.mark.parametrize("prefix", ["a", "a/", "é", "😀", "z\U0010ffff"])
def test_the_successor_bounds_exactly_the_keys_with_the_prefix(prefix: str) -> None:
    upper = key_successor(prefix.encode())
    assert upper is not None
    for key in [prefix + tail for tail in ("", "x", "\U0010ffff", "\U0010ffff" * 3)]:
        assert prefix.encode() <= key.encode() < upper
    for other in ["", "0", "b", "é0", "{", "\U0010ffff"]:
        if not other.startswith(prefix):
            encoded = other.encode()
            assert not (prefix.encode() <= encoded < upper)
