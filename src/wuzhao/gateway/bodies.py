"""Request bodies of the management API, as msgspec structs.

Decoding a body into one of these validates it (types, ranges, unknown fields)
and the OpenAPI document takes its schemas from the same structs, so the
description cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

Description = Annotated[str, msgspec.Meta(max_length=256)]
Quota = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Weight = Annotated[float, msgspec.Meta(gt=0, lt=1)]


class MessageBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/topics/{topic}/messages``: a message for every subscriber of the topic whose
    filter passes its attributes."""

    message: Any  # text, or any other JSON value (subscribers get its JSON as the text)
    attributes: dict[str, str] = msgspec.field(default_factory=dict)  # name -> value, at most 10


class PublishBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/functions/{name}/versions``: snapshot $LATEST as a new version."""

    description: Description = ""


class AliasBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/functions/{name}/aliases/{alias}``: ``routing`` sends a share to a second version."""

    version: Annotated[int, msgspec.Meta(ge=1)]
    routing: dict[str, Weight] | None = None  # {"4": 0.1}: 10 % of calls run version 4
    description: Description = ""


class LayerBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/layers/{name}``: upload a zip as the layer's next version."""

    code: str  # base64 of a zip
    description: Description = ""


class SecretBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/secrets/{name}``: set a secret's value (write-only)."""

    value: str


class NamespaceBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/namespaces``: a new tenant, with optional quotas."""

    name: str
    max_instances: Quota | None = None
    max_memory_mb: Quota | None = None


class QuotaBody(msgspec.Struct, forbid_unknown_fields=True):
    """``PUT /v1/namespaces/{name}``: change a namespace's quotas (null: no limit)."""

    max_instances: Quota | None = None
    max_memory_mb: Quota | None = None


class KeyBody(msgspec.Struct, forbid_unknown_fields=True):
    """``POST /v1/keys``: issue a key bound to one namespace with one role."""

    role: str
    namespace: str = "default"
    description: Description = ""
