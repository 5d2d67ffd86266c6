"""Who may do what: roles of API keys and the actions they allow.

A key belongs to one namespace and never sees another (its requests for other
namespaces' objects answer 404, as if they did not exist); within its
namespace its role decides. Admin keys act on any namespace they name.
"""

from __future__ import annotations

import enum

from wuzhao.errors import BadRequest


class Role(enum.StrEnum):
    ADMIN = "admin"  # everything, in every namespace: namespaces, keys, quotas
    DEVELOPER = "developer"  # manage and invoke functions, layers, secrets in its namespace
    INVOKER = "invoker"  # invoke functions of its namespace, nothing else


class Action(enum.StrEnum):
    INVOKE = "invoke"  # run a function
    READ = "read"  # read functions, versions, logs, invocation records
    MANAGE = "manage"  # create, change, delete functions, versions, aliases, layers, secrets
    ADMINISTER = "administer"  # namespaces and API keys


ALLOWED: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.DEVELOPER: frozenset({Action.INVOKE, Action.READ, Action.MANAGE}),
    Role.INVOKER: frozenset({Action.INVOKE}),
}


def allows(role: str, action: Action) -> bool:
    try:
        return action in ALLOWED[Role(role)]
    except ValueError:  # an unknown role allows nothing
        return False


def parse_role(raw: str) -> Role:
    try:
        return Role(raw)
    except ValueError:
        raise BadRequest(
            f"role {raw!r} is unknown; roles: {', '.join(r.value for r in Role)}", field="role"
        ) from None
