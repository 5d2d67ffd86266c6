"""What a route needs from the request: the platform and the caller's namespace."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from wuzhao.platform import Platform


def platform_of(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


def namespace_of(request: Request) -> str:
    """The namespace of the key that authenticated the request (set by AuthMiddleware)."""
    return str(request.state.key.namespace)
