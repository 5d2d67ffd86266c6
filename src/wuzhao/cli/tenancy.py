"""Commands on namespaces (tenants, with quotas) and API keys; both need an admin key."""

from __future__ import annotations

from typing import Any

import click

from wuzhao.cli import output
from wuzhao.cli.session import Session
from wuzhao.domain.access import Role

NO_LIMIT = "none"


class Limit(click.ParamType):
    """A quota: a number from 0, or ``none`` for no limit (converted to -1, since None means "not given")."""

    name = "N|none"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        if str(value).lower() in (NO_LIMIT, "unlimited"):
            return -1
        if str(value).isdigit():
            return int(value)
        self.fail(f"{value!r} is not a number from 0 or {NO_LIMIT!r}", param, ctx)


def _quota(value: int | None) -> int | None:
    return None if value is None or value < 0 else value


MAX_INSTANCES = click.option(
    "--max-instances",
    type=Limit(),
    metavar="N|none",
    help="Most instances the namespace may run at once (none: no limit).",
)
MAX_MEMORY = click.option(
    "--max-memory",
    "max_memory_mb",
    type=Limit(),
    metavar="MB|none",
    help="Most memory, in MB, its instances may hold together (none: no limit).",
)


@click.group()
def ns() -> None:
    """Namespaces: tenants that each hold their own functions, layers, secrets and keys."""


@ns.command("create")
@click.argument("name")
@MAX_INSTANCES
@MAX_MEMORY
@click.pass_obj
def create_namespace(
    session: Session, name: str, max_instances: int | None, max_memory_mb: int | None
) -> None:
    """Create namespace NAME; quotas not given mean no limit."""
    record = session.client().create_namespace(
        name, max_instances=_quota(max_instances), max_memory_mb=_quota(max_memory_mb)
    )
    click.echo(f"created namespace {record['name']}: {_quotas(record)}")


@ns.command("ls")
@click.pass_obj
def list_namespaces(session: Session) -> None:
    """List the namespaces with their usage and quotas."""
    session.rows(
        output.NAMESPACE_COLUMNS,
        (output.namespace_row(n) for n in session.client().list_namespaces()),
        empty="no namespaces",
    )


@ns.command("get")
@click.argument("name")
@click.pass_obj
def get_namespace(session: Session, name: str) -> None:
    """Show namespace NAME: quotas and current usage (JSON when piped)."""
    session.record(session.client().get_namespace(name))


@ns.command("quota")
@click.argument("name")
@MAX_INSTANCES
@MAX_MEMORY
@click.pass_obj
def set_quotas(session: Session, name: str, max_instances: int | None, max_memory_mb: int | None) -> None:
    """Change the quotas of namespace NAME; a quota not given keeps its value."""
    if max_instances is None and max_memory_mb is None:
        raise click.UsageError("give --max-instances and/or --max-memory (a number, or none for no limit)")
    client = session.client()
    current = client.get_namespace(name)
    record = client.set_quotas(
        name,
        max_instances=current.get("max_instances") if max_instances is None else _quota(max_instances),
        max_memory_mb=current.get("max_memory_mb") if max_memory_mb is None else _quota(max_memory_mb),
    )
    click.echo(f"namespace {record['name']}: {_quotas(record)}")


@ns.command("rm")
@click.argument("name")
@click.pass_obj
def delete_namespace(session: Session, name: str) -> None:
    """Delete namespace NAME (refused while it still holds functions, layers, secrets or keys)."""
    session.client().delete_namespace(name)
    session.err.print(f"deleted namespace {name}", markup=False)


def _quotas(record: dict[str, Any]) -> str:
    instances, memory = record.get("max_instances"), record.get("max_memory_mb")
    return (
        f"max instances {'no limit' if instances is None else instances}, "
        f"max memory {'no limit' if memory is None else f'{memory} MB'}"
    )


@click.group()
def key() -> None:
    """API keys: each bound to one namespace with one role."""


@key.command("create")
@click.option(
    "--role",
    required=True,
    type=click.Choice([role.value for role in Role]),
    help="admin: everything, every namespace; developer: manage and invoke in its namespace; "
    "invoker: invoke only.",
)
@click.option(
    "--namespace",
    "key_namespace",
    metavar="NAMESPACE",
    help="The namespace the key belongs to. [default: the global --namespace, else default]",
)
@click.option("--description", "-d", default="", metavar="TEXT", help="Who or what the key is for.")
@click.pass_obj
def create_key(session: Session, role: str, key_namespace: str | None, description: str) -> None:
    """Issue an API key and print it, once: it cannot be shown again."""
    record = session.client().create_key(role, key_namespace, description)
    click.echo(record["key"])  # alone on stdout, so KEY=$(wuzhao key create ...) works
    session.err.print(
        f"created key {record['key_id']} ({record['role']} in namespace {record['namespace']}). "
        "This is the only time the key is shown: store it now.",
        style="yellow",
        markup=False,
    )


@key.command("ls")
@click.pass_obj
def list_keys(session: Session) -> None:
    """List the API keys (never their secrets)."""
    session.rows(
        output.KEY_COLUMNS, (output.key_row(k) for k in session.client().list_keys()), empty="no keys"
    )


@key.command("revoke")
@click.argument("key_id", metavar="ID")
@click.pass_obj
def revoke_key(session: Session, key_id: str) -> None:
    """Revoke key ID; requests with it fail at once."""
    session.client().revoke_key(key_id)
    session.err.print(f"revoked key {key_id}", markup=False)


COMMANDS = [ns, key]
