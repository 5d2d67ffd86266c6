"""The OpenAPI 3.1 description of the HTTP API, served at ``GET /v1/openapi.json``.

What can be derived is derived: the paths, methods and path parameters come from
the app's route table, request body schemas from the msgspec structs the
handlers decode, and the error codes from :mod:`wuzhao.errors`. The rest (a
summary, the success statuses, the shape of the answers, query parameters,
headers and the errors a route can give) is in :data:`OPERATIONS`, one entry
per route. A unit test checks that the table and the route table name the same
operations, and a schemathesis run checks the server against the document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec
from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from wuzhao import __version__
from wuzhao.domain.access import Role
from wuzhao.domain.functions import NAME_PATTERN, FunctionUpdate
from wuzhao.domain.triggers import TriggerSpec
from wuzhao.errors import ERRORS_BY_CODE
from wuzhao.gateway.auth import _protected as needs_key
from wuzhao.gateway.bodies import (
    AliasBody,
    KeyBody,
    LayerBody,
    MessageBody,
    NamespaceBody,
    PublishBody,
    QuotaBody,
    SecretBody,
)
from wuzhao.gateway.context import NAMESPACE_HEADER
from wuzhao.gateway.invocations import MAX_SEQ
from wuzhao.objects.names import BUCKET_PATTERN, MAX_KEY_BYTES, MAX_LIST_LIMIT

# -- the answers, as structs only to describe them (the handlers build plain dicts) --

Timestamp = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date-time"})]  # UTC, ISO 8601


class Health(msgspec.Struct):
    status: str


class InstanceCounts(msgspec.Struct):
    idle: int
    busy: int


class FunctionSettings(msgspec.Struct):
    """The configuration fields a function and its published versions share (``config_view``)."""

    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    env: dict[str, str]
    secrets: dict[str, str]  # env var -> secret name, never a value
    layers: list[str]
    network: str
    max_concurrency: int | None
    min_instances: int
    idle_timeout_s: int | None
    max_retries: int
    retry_delay_s: float
    max_event_age_s: int
    on_success: str | None
    on_failure: str | None
    ordering_hold: bool
    max_chain_calls: int
    recursive_loop: Literal["terminate", "allow"]


class Function(FunctionSettings):
    """A function's $LATEST: configuration, code digest and live instances."""

    name: str
    code_sha256: str
    code_size: int
    revision: int
    created_at: Timestamp
    updated_at: Timestamp
    instances: InstanceCounts


class FunctionList(msgspec.Struct):
    functions: list[Function]


class LogLine(msgspec.Struct):
    seq: int
    timestamp: Timestamp
    invocation_id: str | None
    stream: str
    message: str


class LogPage(msgspec.Struct):
    """Log lines in order; pass ``next`` as ``after`` to read on."""

    logs: list[LogLine]
    next: int | None


class Invocation(msgspec.Struct):
    """One call's record (``init_duration_ms`` only once it has finished)."""

    id: str
    function: str
    version: str
    revision: int
    status: Literal["running", "succeeded", "failed"]
    started_at: Timestamp
    duration_ms: float | None
    cold_start: bool
    error: dict[str, Any] | None
    logs: list[LogLine]
    init_duration_ms: float | msgspec.UnsetType | None = msgspec.UNSET


class AsyncAccepted(msgspec.Struct):
    """An asynchronous call, durably queued (or the first call of its Idempotency-Key)."""

    invocation_id: str
    status: Literal["queued"]


class AsyncAttempt(msgspec.Struct):
    """One attempt of an asynchronous call; ``outcome`` is success or the error's code."""

    number: int
    started_at: Timestamp
    duration_ms: float
    outcome: str
    error: dict[str, Any] | None


class AsyncInvocation(msgspec.Struct):
    """An asynchronous call: where it is in the queue, every attempt, and its result or last error."""

    id: str
    namespace: str
    function: str
    qualifier: str | None
    status: Literal["queued", "running", "succeeded", "failed", "dead"]
    async_: Literal[True] = msgspec.field(name="async")
    enqueued_at: Timestamp
    updated_at: Timestamp
    ordering_key: str | None
    attempts: list[AsyncAttempt]
    result: Any  # the handler's JSON (null when too large to keep, or not succeeded)
    error: dict[str, Any] | None


class DeadLetterPage(msgspec.Struct):
    """Dead calls, oldest first; pass ``next`` as ``after`` to read on (null: the last page)."""

    dead_letters: list[AsyncInvocation]
    next: str | None


class Version(FunctionSettings):
    """A published, immutable version of a function."""

    function: str
    version: int
    description: str
    code_sha256: str
    code_size: int
    created_at: Timestamp


class VersionList(msgspec.Struct):
    versions: list[Version]


class Alias(msgspec.Struct):
    """A name for a version; ``routing`` sends a share of the calls to a second one."""

    function: str
    name: str
    version: int
    routing: dict[str, float] | None
    description: str
    updated_at: Timestamp


class AliasList(msgspec.Struct):
    aliases: list[Alias]


class Layer(msgspec.Struct):
    """One version of a layer; functions name it by ``reference``."""

    name: str
    version: int
    reference: str
    description: str
    code_sha256: str
    code_size: int
    created_at: Timestamp


class LayerList(msgspec.Struct):
    layers: list[Layer]


class LayerVersions(msgspec.Struct):
    name: str
    versions: list[Layer]


class Secret(msgspec.Struct):
    """A secret's name; its value is never returned."""

    name: str
    updated_at: Timestamp


class SecretList(msgspec.Struct):
    secrets: list[Secret]


class NamespaceUsage(msgspec.Struct):
    instances: int
    memory_mb: int


class Namespace(msgspec.Struct):
    name: str
    created_at: Timestamp
    max_instances: int | None
    max_memory_mb: int | None
    usage: NamespaceUsage


class NamespaceList(msgspec.Struct):
    namespaces: list[Namespace]


class Key(msgspec.Struct):
    key_id: str
    namespace: str
    role: str  # one of the roles: the builder adds the enum
    description: str
    created_at: Timestamp


class NewKey(msgspec.Struct):
    """A new key: the only answer that ever carries its secret ``key``."""

    key_id: str
    namespace: str
    role: str  # one of the roles: the builder adds the enum
    description: str
    created_at: Timestamp
    key: str


class KeyList(msgspec.Struct):
    keys: list[Key]


class Trigger(msgspec.Struct):
    """A trigger: its settings as given, and what a caller needs: an http trigger's ``url_path``
    (under this server's address), a cron trigger's next and last ticks."""

    name: str
    function: str
    qualifier: str | None
    type: Literal["http", "cron", "object", "topic"]
    created_at: Timestamp
    updated_at: Timestamp
    methods: list[str] | msgspec.UnsetType = msgspec.UNSET  # http
    path: str | msgspec.UnsetType = msgspec.UNSET
    auth: Literal["none", "key"] | msgspec.UnsetType = msgspec.UNSET
    url_path: str | msgspec.UnsetType = msgspec.UNSET
    schedule: str | msgspec.UnsetType = msgspec.UNSET  # cron
    timezone: str | msgspec.UnsetType = msgspec.UNSET
    missed_ticks: Literal["skip", "catch_up_one"] | msgspec.UnsetType | None = msgspec.UNSET
    next_tick: Timestamp | msgspec.UnsetType = msgspec.UNSET
    last_tick: Timestamp | msgspec.UnsetType | None = msgspec.UNSET
    bucket: str | msgspec.UnsetType = msgspec.UNSET  # object
    events: list[Literal["created", "deleted"]] | msgspec.UnsetType = msgspec.UNSET
    prefix: str | msgspec.UnsetType = msgspec.UNSET
    suffix: str | msgspec.UnsetType = msgspec.UNSET
    topic: str | msgspec.UnsetType = msgspec.UNSET  # topic
    filter: dict[str, list[str]] | msgspec.UnsetType = msgspec.UNSET


class TriggerList(msgspec.Struct):
    triggers: list[Trigger]


class Published(msgspec.Struct):
    """A message taken: one asynchronous call per subscriber whose filter passed it, all queued."""

    message_id: str
    deliveries: int


class Bucket(msgspec.Struct):
    name: str
    created_at: Timestamp


class BucketList(msgspec.Struct):
    buckets: list[Bucket]


class StoredObject(msgspec.Struct):
    """An object's metadata; its bytes are GET /v1/buckets/{bucket}/objects/{key}."""

    bucket: str
    key: str
    size: int
    etag: str  # hex SHA-256 of the bytes; the ETag header is it in quotes
    content_type: str
    created_at: Timestamp  # the key's first write
    modified_at: Timestamp  # this version's write
    metadata: dict[str, str]  # the X-Wuzhao-Meta-* headers of its PUT


class ObjectList(msgspec.Struct):
    """Objects in key order; pass ``next`` as ``after`` for the next page (null: the last page)."""

    objects: list[StoredObject]
    next: str | None


RESPONSE_STRUCTS: tuple[type, ...] = (
    Health,
    Function,
    FunctionList,
    LogPage,
    Invocation,
    AsyncAccepted,
    AsyncInvocation,
    DeadLetterPage,
    Version,
    VersionList,
    Alias,
    AliasList,
    Layer,
    LayerList,
    LayerVersions,
    Secret,
    SecretList,
    Namespace,
    NamespaceList,
    Key,
    NewKey,
    KeyList,
    Trigger,
    TriggerList,
    Published,
    Bucket,
    BucketList,
    StoredObject,
    ObjectList,
)
BODY_STRUCTS: tuple[type, ...] = (
    FunctionUpdate,
    PublishBody,
    AliasBody,
    LayerBody,
    SecretBody,
    NamespaceBody,
    QuotaBody,
    KeyBody,
    MessageBody,
)
# Request bodies that are tagged unions (no class name of their own): their component names.
BODY_UNIONS: dict[str, Any] = {"TriggerBody": TriggerSpec}

# -- the table of what the route table does not say --

ANY_JSON: dict[str, Any] = {"description": "Any JSON value."}
INVOKE_HEADERS = {
    "X-Wuzhao-Invocation-Id": ("string", "The invocation's id (GET /v1/invocations/{id})."),
    "X-Wuzhao-Executed-Version": ("string", "The version that ran: $LATEST or a version number."),
    "X-Wuzhao-Cold-Start": ("string", "true if the call started a new instance, else false."),
    "X-Wuzhao-Duration-Ms": ("string", "How long the handler ran, in milliseconds."),
}
FUNCTION_ERROR_HEADER = "X-Wuzhao-Function-Error"
ACCEPTED_HEADERS = {"X-Wuzhao-Invocation-Id": ("string", "The call's id (GET /v1/invocations/{id}).")}


@dataclass(frozen=True)
class Query:
    name: str
    schema: dict[str, Any]
    description: str
    location: str = "query"  # or "header"


@dataclass(frozen=True)
class Operation:
    """What one route does, beyond its path and method."""

    summary: str
    tag: str
    ok: tuple[int, ...] = (200,)
    response: str | None = None  # schema name of the success body; None: no body (204)
    body: Any = None  # the msgspec struct the request body decodes into, or a union of BODY_UNIONS
    body_required: bool = True
    errors: tuple[int, ...] = ()  # besides those of every /v1 route (401, 403, 404)
    query: tuple[Query, ...] = ()
    path_schemas: dict[str, dict[str, Any]] = field(default_factory=dict)
    namespaced: bool = True  # honours X-Wuzhao-Namespace
    media_type: str = "application/json"  # of the success body
    event: bool = False  # invoke: any JSON in, the handler's result and X-Wuzhao-* headers out
    # (and with 202 among ``ok``: an asynchronous call, AsyncAccepted and its id's header)
    blob: Literal["in", "out"] | None = None  # an object's bytes: the request body, or the answer


VERSION_NUMBER = {"type": "integer", "minimum": 1}
_CONVERTOR = re.compile(r"{(\w+):\w+}")  # Starlette's {key:path}
BUCKET_NAME = {"type": "string", "pattern": BUCKET_PATTERN.removesuffix(r"\Z") + "$"}  # ECMA 262's end
OBJECT_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_BYTES}  # bytes of UTF-8, in fact
OBJECT_HEADERS = {
    "ETag": ("string", "The quoted SHA-256 of the object's bytes."),
    "Last-Modified": ("string", "When this version was written (an HTTP date)."),
}
BODY = (400, 413)  # a route with a body can refuse it (invalid, too large)

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("GET", "/healthz"): Operation("Is the server up (no key needed)", "meta", response="Health"),
    ("GET", "/metrics"): Operation(
        "Prometheus metrics of every namespace (admin)", "meta", response="Metrics", media_type="text/plain"
    ),
    ("GET", "/v1/openapi.json"): Operation(
        "This document", "meta", response="OpenAPIDocument", namespaced=False
    ),
    ("GET", "/v1/functions"): Operation("List functions", "functions", response="FunctionList"),
    ("GET", "/v1/functions/{name}"): Operation("Get a function", "functions", response="Function"),
    ("PUT", "/v1/functions/{name}"): Operation(
        "Create or update a function ($LATEST); unset fields keep their value",
        "functions",
        ok=(200, 201),
        response="Function",
        body=FunctionUpdate,
        errors=(*BODY, 409),
    ),
    ("DELETE", "/v1/functions/{name}"): Operation(
        "Delete a function with its versions and aliases", "functions", ok=(204,)
    ),
    ("POST", "/v1/functions/{name}/invoke"): Operation(
        "Invoke a function: the body is the event, the answer the handler's result (200), or with "
        "X-Wuzhao-Invocation-Type: Event, the call queued to run later with retries (202)",
        "functions",
        ok=(200, 202),
        event=True,
        errors=(*BODY, 429, 500, 503, 504),
        query=(
            Query(
                "qualifier",
                {"type": "string"},
                "$LATEST (the default), a version number or an alias name.",
            ),
            Query(
                "X-Wuzhao-Invocation-Type",
                {"type": "string"},
                "RequestResponse (the default): run now and answer the result. Event (or async): store "
                "the call durably, answer 202 with its id, run it later with the function's retries.",
                location="header",
            ),
            Query(
                "Idempotency-Key",
                {"type": "string"},
                "Event calls: a repeat with the same key within 24 h answers the first call's id and "
                "queues nothing (1-256 printable characters).",
                location="header",
            ),
            Query(
                "X-Wuzhao-Ordering-Key",
                {"type": "string"},
                "Event calls: calls with the same key run one at a time, in the order they were "
                "accepted, a failing one holding the others back until it succeeds or goes dead.",
                location="header",
            ),
        ),
    ),
    ("GET", "/v1/functions/{name}/logs"): Operation(
        "Read a function's log lines",
        "invocations",
        response="LogPage",
        errors=(400,),
        query=(
            Query(
                "since",
                {"type": "string"},
                "From this time on: ISO 8601, unix seconds, or a duration ago (10m, 2h, 1d).",
            ),
            Query(
                "after",
                {"type": "integer", "minimum": 0, "maximum": MAX_SEQ},
                "Only lines after this sequence number (the previous page's next).",
            ),
            Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most this many lines."),
        ),
    ),
    ("GET", "/v1/functions/{name}/dead-letters"): Operation(
        "List a function's dead letters: asynchronous calls that failed every attempt",
        "invocations",
        response="DeadLetterPage",
        errors=(400,),
        query=(
            Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "At most this many."),
            Query("after", {"type": "string"}, "Only those after this id (the previous page's next)."),
        ),
    ),
    ("GET", "/v1/functions/{name}/dead-letters/{id}"): Operation(
        "Get a dead letter with every attempt", "invocations", response="AsyncInvocation"
    ),
    ("POST", "/v1/functions/{name}/dead-letters/{id}/redrive"): Operation(
        "Queue a dead letter again, its retries counted from zero (its attempts stay)",
        "invocations",
        ok=(202,),
        response="AsyncAccepted",
    ),
    ("DELETE", "/v1/functions/{name}/dead-letters/{id}"): Operation(
        "Delete a dead letter (a held ordering key goes on)", "invocations", ok=(204,)
    ),
    ("POST", "/v1/functions/{name}/versions"): Operation(
        "Publish $LATEST as a new version (or return the last one if nothing changed)",
        "versions",
        ok=(200, 201),
        response="Version",
        body=PublishBody,
        body_required=False,
        errors=(*BODY, 409),
    ),
    ("GET", "/v1/functions/{name}/versions"): Operation(
        "List a function's versions", "versions", response="VersionList"
    ),
    ("GET", "/v1/functions/{name}/versions/{version}"): Operation(
        "Get a version",
        "versions",
        response="Version",
        errors=(400,),
        path_schemas={"version": VERSION_NUMBER},
    ),
    ("DELETE", "/v1/functions/{name}/versions/{version}"): Operation(
        "Delete a version (409 while an alias points to it)",
        "versions",
        ok=(204,),
        errors=(400, 409),
        path_schemas={"version": VERSION_NUMBER},
    ),
    ("GET", "/v1/functions/{name}/aliases"): Operation(
        "List a function's aliases", "versions", response="AliasList"
    ),
    ("GET", "/v1/functions/{name}/aliases/{alias}"): Operation("Get an alias", "versions", response="Alias"),
    ("PUT", "/v1/functions/{name}/aliases/{alias}"): Operation(
        "Create or change an alias",
        "versions",
        ok=(200, 201),
        response="Alias",
        body=AliasBody,
        errors=BODY,
    ),
    ("DELETE", "/v1/functions/{name}/aliases/{alias}"): Operation("Delete an alias", "versions", ok=(204,)),
    ("GET", "/v1/invocations/{id}"): Operation(
        "Get an invocation's record and its last log lines, or an asynchronous call's state and attempts",
        "invocations",
        response="AnyInvocation",
    ),
    ("GET", "/v1/layers"): Operation("List every version of every layer", "layers", response="LayerList"),
    ("GET", "/v1/layers/{name}"): Operation("List a layer's versions", "layers", response="LayerVersions"),
    ("PUT", "/v1/layers/{name}"): Operation(
        "Upload a zip as the layer's next version",
        "layers",
        ok=(201,),
        response="Layer",
        body=LayerBody,
        errors=(*BODY, 409),
    ),
    ("DELETE", "/v1/layers/{name}/versions/{version}"): Operation(
        "Delete a layer version", "layers", ok=(204,), errors=(400,), path_schemas={"version": VERSION_NUMBER}
    ),
    ("GET", "/v1/secrets"): Operation("List secret names (never values)", "secrets", response="SecretList"),
    ("PUT", "/v1/secrets/{name}"): Operation(
        "Set a secret's value", "secrets", response="Secret", body=SecretBody, errors=BODY
    ),
    ("DELETE", "/v1/secrets/{name}"): Operation(
        "Delete a secret (409 while a function or version uses it)", "secrets", ok=(204,), errors=(409,)
    ),
    ("GET", "/v1/triggers"): Operation(
        "List triggers",
        "triggers",
        response="TriggerList",
        query=(Query("function", {"type": "string"}, "Only the triggers of this function."),),
    ),
    ("GET", "/v1/triggers/{name}"): Operation("Get a trigger", "triggers", response="Trigger"),
    ("PUT", "/v1/triggers/{name}"): Operation(
        "Create or change a trigger: the function it calls, its type (http, cron, object, topic) and "
        "settings",
        "triggers",
        ok=(200, 201),
        response="Trigger",
        body=TriggerSpec,
        errors=(*BODY, 409),
    ),
    ("DELETE", "/v1/triggers/{name}"): Operation("Delete a trigger", "triggers", ok=(204,)),
    ("POST", "/v1/topics/{topic}/messages"): Operation(
        "Publish a message: each topic trigger whose filter passes its attributes gets an asynchronous "
        "call, all queued before the answer",
        "triggers",
        ok=(202,),
        response="Published",
        body=MessageBody,
        errors=BODY,
        path_schemas={"topic": {"type": "string", "pattern": NAME_PATTERN.removesuffix(r"\Z") + "$"}},
    ),
    ("GET", "/v1/buckets"): Operation("List the namespace's buckets", "objects", response="BucketList"),
    ("PUT", "/v1/buckets/{bucket}"): Operation(
        "Create a bucket (no body); 200 if the namespace already has it",
        "objects",
        ok=(200, 201),
        response="Bucket",
        errors=BODY,
        path_schemas={"bucket": BUCKET_NAME},
    ),
    ("DELETE", "/v1/buckets/{bucket}"): Operation(
        "Delete an empty bucket (409 while it holds an object)",
        "objects",
        ok=(204,),
        errors=(400, 409),
        path_schemas={"bucket": BUCKET_NAME},
    ),
    ("GET", "/v1/buckets/{bucket}/objects"): Operation(
        "List a bucket's objects in key order, a page at a time",
        "objects",
        response="ObjectList",
        errors=(400,),
        path_schemas={"bucket": BUCKET_NAME},
        query=(
            Query("prefix", {"type": "string"}, "Only keys that start with this."),
            Query("after", {"type": "string"}, "Only keys after this one (the previous page's next)."),
            Query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT},
                f"At most this many objects (default {MAX_LIST_LIMIT}).",
            ),
        ),
    ),
    ("PUT", "/v1/buckets/{bucket}/objects/{key}"): Operation(
        "Store the body as the object (replacing any); Content-Type and X-Wuzhao-Meta-* headers are kept",
        "objects",
        ok=(200, 201),
        response="StoredObject",
        blob="in",
        errors=(*BODY, 500),
        path_schemas={"bucket": BUCKET_NAME, "key": OBJECT_KEY},
    ),
    ("GET", "/v1/buckets/{bucket}/objects/{key}"): Operation(
        "Read an object (HEAD: only its headers); If-None-Match and a single byte Range are honoured",
        "objects",
        ok=(200, 206, 304),
        blob="out",
        errors=(400, 416),
        path_schemas={"bucket": BUCKET_NAME, "key": OBJECT_KEY},
        query=(
            Query("If-None-Match", {"type": "string"}, "ETags: 304 if the object has one.", "header"),
            Query("Range", {"type": "string"}, "One range, bytes=first-last: 206 with it.", "header"),
            Query("If-Range", {"type": "string"}, "An ETag: the Range applies only if it matches.", "header"),
        ),
    ),
    ("DELETE", "/v1/buckets/{bucket}/objects/{key}"): Operation(
        "Delete an object",
        "objects",
        ok=(204,),
        errors=(400, 500),
        path_schemas={"bucket": BUCKET_NAME, "key": OBJECT_KEY},
    ),
    ("GET", "/v1/namespaces"): Operation("List namespaces (admin)", "tenancy", response="NamespaceList"),
    ("POST", "/v1/namespaces"): Operation(
        "Create a namespace (admin)",
        "tenancy",
        ok=(201,),
        response="Namespace",
        body=NamespaceBody,
        errors=(*BODY, 409),
    ),
    ("GET", "/v1/namespaces/{name}"): Operation("Get a namespace (admin)", "tenancy", response="Namespace"),
    ("PUT", "/v1/namespaces/{name}"): Operation(
        "Set a namespace's quotas (admin)", "tenancy", response="Namespace", body=QuotaBody, errors=BODY
    ),
    ("DELETE", "/v1/namespaces/{name}"): Operation(
        "Delete an empty namespace (admin)", "tenancy", ok=(204,), errors=(400, 409)
    ),
    ("GET", "/v1/keys"): Operation(
        "List API keys, never their secrets (admin)", "tenancy", response="KeyList"
    ),
    ("POST", "/v1/keys"): Operation(
        "Issue an API key (admin); the answer is the only time its secret is shown",
        "tenancy",
        ok=(201,),
        response="NewKey",
        body=KeyBody,
        errors=BODY,
    ),
    ("DELETE", "/v1/keys/{key_id}"): Operation("Revoke an API key at once (admin)", "tenancy", ok=(204,)),
}

PATH_PARAMETERS = {
    "name": "The name of the {resource}.",
    "version": "A version number (from 1).",
    "alias": "The alias name.",
    "id": "The invocation id (the X-Wuzhao-Invocation-Id of the call).",
    "key_id": "The key's public id (key_id).",
    "bucket": "The bucket's name: 3-63 of a-z, 0-9, '-' and '.'.",
    "key": "The object's key: 1-1024 bytes of UTF-8; '/' may be sent as it is or as %2F.",
    "topic": "The topic's name: 1-64 of a-z, 0-9, '-' and '_'.",
}
RESOURCES = {
    "functions": "function",
    "layers": "layer",
    "secrets": "secret",
    "namespaces": "namespace",
    "triggers": "trigger",
}

ERROR_RESPONSES = {
    400: "The request is invalid; field names the culprit when there is one.",
    401: "No valid API key.",
    403: "The key's role does not allow this.",
    404: "Not found, or in a namespace the key cannot see.",
    409: "Conflicts with the current state.",
    413: "The request (or, for invoke, the handler's result) is too large.",
    416: "The Range starts past the object's end (Content-Range: bytes */size).",
    429: "Throttled (concurrency) or over the namespace's quota.",
    500: "The function failed (FunctionError, InitError, OutOfMemory, RuntimeExited), or an object "
    "changed but its event hook failed (ObjectEventFailed).",
    503: "The server is shutting down.",
    504: "The function ran past its timeout.",
}


# -- the document --


def build_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (the app's route table)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            path = template(route.path)
            spec = OPERATIONS.get((method, path)) or _undocumented(route)
            paths.setdefault(path, {})[method.lower()] = _operation(route, spec)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wuzhao",
            "version": __version__,
            "description": "Deploy handler(event, context) functions and run them in Linux sandboxes.",
        },
        "paths": paths,
        "components": {
            "schemas": _schemas(),
            "responses": {_response_name(status): _error_response(status) for status in ERROR_RESPONSES},
            "parameters": {
                "Namespace": {
                    "name": NAMESPACE_HEADER.title(),
                    "in": "header",
                    "required": False,
                    "description": "Admin keys only: act in this namespace instead of the key's own.",
                    "schema": {"type": "string"},
                }
            },
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "description": "An API key."}},
        },
    }


def encode(document: dict[str, Any]) -> bytes:
    return msgspec.json.encode(document)


async def get_document(request: Request) -> Response:
    """``GET /v1/openapi.json``: the document built once when the app was created."""
    return Response(request.app.state.openapi, media_type="application/json")


def template(path: str) -> str:
    """A route's path as an OpenAPI path template: ``{key:path}`` is ``{key}`` there."""
    return _CONVERTOR.sub(r"{\1}", path)


def _undocumented(route: Route) -> Operation:
    # A route missing from OPERATIONS is still described (the unit test flags it).
    return Operation(route.name, "undocumented")


def _operation(route: Route, spec: Operation) -> dict[str, Any]:
    protected = needs_key(route.path)
    operation: dict[str, Any] = {
        "operationId": route.name,
        "summary": spec.summary,
        "tags": [spec.tag],
        "security": [{"bearer": []}] if protected else [],
    }
    parameters: list[dict[str, Any]] = [_path_parameter(route, name, spec) for name in route.param_convertors]
    parameters += [
        {"name": q.name, "in": q.location, "required": False, "description": q.description}
        | {"schema": q.schema}
        for q in spec.query
    ]
    if protected and spec.namespaced:
        parameters.append({"$ref": "#/components/parameters/Namespace"})
    if parameters:
        operation["parameters"] = parameters
    if spec.body is not None:
        operation["requestBody"] = {
            "required": spec.body_required,
            "content": {"application/json": {"schema": {"$ref": _ref(_body_name(spec.body))}}},
        }
    elif spec.event:
        operation["requestBody"] = {
            "required": False,
            "description": "The event, any JSON value; no body is the event {}.",
            "content": {"application/json": {"schema": ANY_JSON}},
        }
    elif spec.blob == "in":
        operation["requestBody"] = {
            "required": False,
            "description": "The object's bytes, streamed (no body: an empty object).",
            "content": {"application/octet-stream": {"schema": {}}},
        }
    operation["responses"] = _responses(spec, protected)
    return operation


def _path_parameter(route: Route, name: str, spec: Operation) -> dict[str, Any]:
    convertor = route.param_convertors[name]
    if isinstance(convertor, IntegerConvertor):
        schema: dict[str, Any] = {"type": "integer", "minimum": 0}
    elif isinstance(convertor, FloatConvertor):
        schema = {"type": "number", "minimum": 0}
    else:
        schema = {"type": "string"}
    resource = RESOURCES.get(route.path.split("/")[2] if route.path.count("/") > 1 else "", "resource")
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": PATH_PARAMETERS.get(name, name).format(resource=resource),
        "schema": spec.path_schemas.get(name, schema),
    }


def _responses(spec: Operation, protected: bool) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in spec.ok:
        if spec.blob == "out":
            responses[str(status)] = _object_answer(status)
        elif spec.event and status == 202:
            responses[str(status)] = {
                "description": "Queued: the call will run (GET /v1/invocations/{id} follows it).",
                "headers": {
                    name: {"required": True, "description": text, "schema": {"type": kind}}
                    for name, (kind, text) in ACCEPTED_HEADERS.items()
                },
                "content": {"application/json": {"schema": {"$ref": _ref("AsyncAccepted")}}},
            }
        elif spec.event:
            responses[str(status)] = {
                "description": "The handler's result.",
                "headers": {
                    name: {"required": True, "description": text, "schema": {"type": kind}}
                    for name, (kind, text) in INVOKE_HEADERS.items()
                },
                "content": {"application/json": {"schema": ANY_JSON}},
            }
        elif spec.response is None:
            responses[str(status)] = {"description": "Done."}
        else:
            description = {200: "OK.", 201: "Created.", 202: "Accepted."}.get(status, "OK.")
            responses[str(status)] = {
                "description": description,
                "content": {spec.media_type: {"schema": {"$ref": _ref(spec.response)}}},
            }
    errors = set(spec.errors)
    if protected:
        errors.add(401)
        if spec.namespaced:
            errors.update((403, 404))
    for status in sorted(errors):
        if spec.event and status in (413, 500, 504):
            responses[str(status)] = _invocation_failure(status)
        else:
            responses[str(status)] = {"$ref": f"#/components/responses/{_response_name(status)}"}
    return responses


def _object_answer(status: int) -> dict[str, Any]:
    """GET of an object: its bytes (200), a part of them (206), or nothing new (304)."""
    headers = {
        name: {"required": True, "description": text, "schema": {"type": kind}}
        for name, (kind, text) in OBJECT_HEADERS.items()
    }
    if status == 304:
        return {"description": "Not modified: the object has an If-None-Match ETag.", "headers": headers}
    if status == 206:
        headers["Content-Range"] = {
            "required": True,
            "description": "The part sent: bytes first-last/size.",
            "schema": {"type": "string"},
        }
    description = {200: "The object's bytes, with the Content-Type it was stored with."}
    return {
        "description": description.get(status, "The bytes of the Range."),
        "headers": headers,
        "content": {"*/*": {"schema": {}}},
    }


def _invocation_failure(status: int) -> dict[str, Any]:
    response = _error_response(status)
    headers = {
        name: {"description": text, "schema": {"type": kind}} for name, (kind, text) in INVOKE_HEADERS.items()
    }
    headers[FUNCTION_ERROR_HEADER] = {
        "description": "The failure's code, when the function ran and failed.",
        "schema": {"type": "string"},
    }
    response["headers"] = headers
    return response


def _error_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_RESPONSES[status],
        "content": {"application/json": {"schema": {"$ref": _ref("Error")}}},
    }
    if status == 401:
        response["headers"] = {
            "WWW-Authenticate": {"required": True, "schema": {"type": "string", "const": "Bearer"}}
        }
    elif status == 416:
        response["headers"] = {"Content-Range": {"required": True, "schema": {"type": "string"}}}
    return response


def _response_name(status: int) -> str:
    return f"Error{status}"


def _ref(name: str) -> str:
    return f"#/components/schemas/{name}"


def _body_name(body: Any) -> str:
    return next((name for name, union in BODY_UNIONS.items() if union == body), None) or body.__name__


def _schemas() -> dict[str, Any]:
    unions, components = msgspec.json.schema_components(
        (*BODY_UNIONS.values(), *BODY_STRUCTS, *RESPONSE_STRUCTS), ref_template="#/components/schemas/{name}"
    )
    components.update(zip(BODY_UNIONS, unions, strict=False))  # the first schemas are the unions'
    components["Error"] = {
        "title": "Error",
        "description": "Every error answer: a machine-readable code, a message, and the field at fault.",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "enum": sorted(ERRORS_BY_CODE)},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                },
            }
        },
    }
    for name in ("Key", "NewKey"):
        components[name]["properties"]["role"]["enum"] = [role.value for role in Role]
    components["AnyInvocation"] = {
        "description": "A synchronous call's record, or an asynchronous call's state (async: true).",
        "anyOf": [{"$ref": _ref("Invocation")}, {"$ref": _ref("AsyncInvocation")}],
    }
    components["OpenAPIDocument"] = {"type": "object", "description": "An OpenAPI 3.1 document."}
    components["Metrics"] = {"type": "string", "description": "The Prometheus text exposition format."}
    return _ecma_patterns(components)  # type: ignore[no-any-return]


_PYTHON_END = re.compile(r"\\Z$")


def _ecma_patterns(schema: Any) -> Any:
    r"""JSON Schema patterns are ECMA 262 regexes: Python's end anchor ``\Z`` is ``$`` there.

    The structs' patterns end in ``\Z`` (Python's ``$`` also matches before a final
    newline); ECMA's ``$`` without the multiline flag matches only at the very end.
    """
    if isinstance(schema, dict):
        return {
            key: _PYTHON_END.sub("$", value)
            if key == "pattern" and isinstance(value, str)
            else _ecma_patterns(value)
            for key, value in schema.items()
        }
    if isinstance(schema, list):
        return [_ecma_patterns(item) for item in schema]
    return schema
