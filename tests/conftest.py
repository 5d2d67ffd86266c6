"""Fixtures shared by every test folder: code packages made from a dict of files."""

from __future__ import annotations

import base64
import io
import textwrap
import zipfile
from collections.abc import Callable

import pytest

HELLO = """
def handler(event, context):
    return {"hello": event.get("name", "world")}
"""


def zip_files(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name, textwrap.dedent(text).lstrip())
    return buffer.getvalue()


@pytest.fixture
def code() -> Callable[..., str]:
    """Factory: ``code({"main.py": "..."})`` -> base64 of a zip holding those files."""

    def make(files: dict[str, str] | None = None, **named: str) -> str:
        content = dict(files or {})
        content.update({name.replace("__", "."): text for name, text in named.items()})
        return base64.b64encode(zip_files(content or {"main.py": HELLO})).decode()

    return make
