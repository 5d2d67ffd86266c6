"""What a route needs from the request: the platform, and the namespace it acts in.

Every /v1 route calls :func:`authorize` first with the action it performs.
A key acts in its own namespace; an admin key may name another one with the
``X-Wuzhao-Namespace`` header. A non-admin key naming another namespace gets
404, exactly as for anything else it must not know exists.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

from wuzhao.domain.access import Action, Role, allows
from wuzhao.errors import Forbidden, NotFound
from wuzhao.store.api import ApiKeyRecord

if TYPE_CHECKING:
    from wuzhao.platform import Platform

NAMESPACE_HEADER = "x-wuzhao-namespace"


def platform_of(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


def authorize(request: Request, action: Action) -> str:
    """The namespace the request acts in, once the key's role allows ``action`` there."""
    named = request.headers.get(NAMESPACE_HEADER)
    return namespace_for(platform_of(request), request.state.key, named, action)


def namespace_for(platform: Platform, key: ApiKeyRecord, named: str | None, action: Action) -> str:
    """:func:`authorize` without a Starlette request: ``named`` is the namespace header, if any."""
    wanted = named or key.namespace
    if wanted != key.namespace and key.role != Role.ADMIN:
        raise NotFound(f"namespace {wanted!r} does not exist")
    if not platform.namespaces.exists(wanted):
        raise NotFound(f"namespace {wanted!r} does not exist")
    if not allows(key.role, action):
        raise Forbidden(f"a key with the role {key.role!r} cannot {action.value} here")
    return wanted
