import pytest

from wuzhao.domain.access import Action, Role, allows, parse_role
from wuzhao.errors import BadRequest

# Every role against every action: a new role or action must be added here.
TABLE = [
    (Role.ADMIN, Action.INVOKE, True),
    (Role.ADMIN, Action.READ, True),
    (Role.ADMIN, Action.MANAGE, True),
    (Role.ADMIN, Action.ADMINISTER, True),
    (Role.DEVELOPER, Action.INVOKE, True),
    (Role.DEVELOPER, Action.READ, True),
    (Role.DEVELOPER, Action.MANAGE, True),
    (Role.DEVELOPER, Action.ADMINISTER, False),
    (Role.INVOKER, Action.INVOKE, True),
    (Role.INVOKER, Action.READ, False),
    (Role.INVOKER, Action.MANAGE, False),
    (Role.INVOKER, Action.ADMINISTER, False),
]


def test_the_table_covers_every_role_and_action() -> None:
    assert {(role, action) for role, action, _ in TABLE} == {(r, a) for r in Role for a in Action}


@pytest.mark.parametrize(("role", "action", "allowed"), TABLE)
def test_allows(role: Role, action: Action, allowed: bool) -> None:
    assert allows(role, action) is allowed
    assert allows(role.value, action) is allowed  # as stored with a key: plain text


@pytest.mark.parametrize("role", ["", "Admin", "ADMIN", "root", "user", "admin ", "developer\n", "*"])
@pytest.mark.parametrize("action", list(Action))
def test_an_unknown_role_allows_nothing(role: str, action: Action) -> None:
    assert allows(role, action) is False


@pytest.mark.parametrize("raw", ["admin", "developer", "invoker"])
def test_parse_role(raw: str) -> None:
    assert parse_role(raw) == Role(raw)


@pytest.mark.parametrize("raw", ["", "Admin", "root", "user", "admin ", "invoker\n"])
def test_parse_role_refuses_unknown_roles_on_role(raw: str) -> None:
    with pytest.raises(BadRequest) as info:
        parse_role(raw)
    assert info.value.field == "role"
    for role in Role:  # the message lists what would have worked
        assert role.value in info.value.message
