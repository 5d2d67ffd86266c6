"""What a bucket name, an object key and user metadata may be: pure checks, no I/O.

Keys never become file names (the embedded store keeps each object under a
random id, see ``objects/local.py``), so a key cannot reach outside its
bucket whatever it holds. These rules exist for everything else a key meets:
URLs (a ``.`` or ``..`` segment is rewritten by clients before it is sent, so
such a key could be written by one client and never read by another), HTTP
headers and terminals (no control characters), SQLite and C strings (no NUL),
and the local paths ``wuzhao cp`` makes of keys (no leading ``/``).
"""

from __future__ import annotations

import ipaddress
import re

from wuzhao.errors import BadRequest

BUCKET_PATTERN = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z"
MAX_KEY_BYTES = 1024  # of UTF-8, as on S3
MAX_METADATA_BYTES = 2048  # names and values of one object's user metadata together, as on S3
METADATA_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,127}\Z"
MAX_CONTENT_TYPE = 255
DEFAULT_CONTENT_TYPE = "application/octet-stream"
MAX_LIST_LIMIT = 1000
DEFAULT_LIST_LIMIT = 1000

_BUCKET_RE = re.compile(BUCKET_PATTERN)
_METADATA_NAME_RE = re.compile(METADATA_NAME_PATTERN)
# C0 controls (NUL, CR, LF, ESC, ...), DEL and the C1 controls.
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_METADATA_VALUE_RE = re.compile(r"^(?:[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?)?\Z")


def check_bucket(name: str) -> str:
    """S3's rules, less its reserved prefixes: 3-63 of a-z, 0-9, '-', '.', not like an IP address."""
    if not _BUCKET_RE.match(name) or ".." in name:
        raise BadRequest(
            f"bucket name {name!r} is invalid: use 3-63 characters of a-z, 0-9, '-' and '.', "
            "starting and ending with a letter or digit, with no '..'",
            field="bucket",
        )
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return name
    raise BadRequest(f"bucket name {name!r} is invalid: it looks like an IP address", field="bucket")


def check_key(key: str) -> str:
    """1-1024 bytes of UTF-8; '/' separates segments, none of which is '.' or '..'."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: not text
        raise BadRequest("an object key must be valid UTF-8", field="key") from None
    if not 1 <= size <= MAX_KEY_BYTES:
        raise BadRequest(f"an object key is 1 to {MAX_KEY_BYTES} bytes of UTF-8, not {size}", field="key")
    if _CONTROL_RE.search(key):
        raise BadRequest(f"object key {key!r} holds a control character (NUL, CR, LF, ...)", field="key")
    if key.startswith("/"):
        raise BadRequest(f"object key {key!r} cannot start with '/'", field="key")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise BadRequest(f"object key {key!r} cannot have a '.' or '..' segment", field="key")
    return key


def check_prefix(prefix: str, field: str = "prefix") -> str:
    """A listing's ``prefix`` (or ``after``): any text a key could start with, up to a key's length."""
    try:
        size = len(prefix.encode("utf-8"))
    except UnicodeEncodeError:
        raise BadRequest(f"{field} must be valid UTF-8", field=field) from None
    if size > MAX_KEY_BYTES or "\0" in prefix:
        raise BadRequest(f"{field} is at most {MAX_KEY_BYTES} bytes, without NUL", field=field)
    return prefix


def check_metadata(metadata: dict[str, str]) -> dict[str, str]:
    """User metadata: it travels as HTTP headers, so lower-case names and printable ASCII values.

    A value cannot start or end with a space either (HTTP strips those), so
    what is read back is exactly what was written. 2 KiB in all.
    """
    total = 0
    for name, value in metadata.items():
        if not _METADATA_NAME_RE.match(name):
            raise BadRequest(
                f"metadata name {name!r} is invalid: 1-128 of a-z, 0-9, '-' and '_'", field="metadata"
            )
        if not _METADATA_VALUE_RE.match(value):
            raise BadRequest(
                f"metadata {name!r} must be printable ASCII without leading or trailing spaces",
                field="metadata",
            )
        total += len(name) + len(value)
    if total > MAX_METADATA_BYTES:
        raise BadRequest(
            f"user metadata is {total} bytes; the limit is {MAX_METADATA_BYTES}", field="metadata"
        )
    return metadata


def check_content_type(content_type: str | None) -> str:
    """The media type kept with an object (sent back as Content-Type): printable ASCII, 255 at most."""
    if not content_type:
        return DEFAULT_CONTENT_TYPE
    if len(content_type) > MAX_CONTENT_TYPE or not _METADATA_VALUE_RE.match(content_type):
        raise BadRequest(
            f"Content-Type must be printable ASCII of at most {MAX_CONTENT_TYPE} characters",
            field="Content-Type",
        )
    return content_type


def key_successor(prefix: bytes) -> bytes | None:
    """The smallest byte string greater than every string that starts with ``prefix``.

    None when there is none (an empty prefix, or one of only 0xff bytes): the
    listing then has no upper bound.
    """
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])
