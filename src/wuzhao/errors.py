"""The one error hierarchy of wuzhao.

Every error the platform reports to a caller is a :class:`WuzhaoError`. Each
subclass fixes the HTTP status and the machine-readable ``code`` that appear in
the API's error body ``{"error": {"code": ..., "message": ...}}``; the SDK maps
the body back to the same class, so a caller can ``except NotFound``.

    WuzhaoError                      (500 InternalError)
    ├── BadRequest                   (400 BadRequest; ``field`` names the culprit)
    │   ├── InvalidJSON              (400 InvalidJSON)
    │   └── InvalidCode              (400 InvalidCode: bad zip, missing handler file)
    ├── Unauthorized                 (401 Unauthorized)
    ├── Forbidden                    (403 Forbidden: the key's role does not allow it)
    ├── NotFound                     (404 NotFound)
    ├── MethodNotAllowed             (405 MethodNotAllowed)
    ├── Conflict                     (409 Conflict)
    │   └── LeaseLost                (409 LeaseLost: an async call's lease expired before its ack)
    ├── PayloadTooLarge              (413 PayloadTooLarge)
    ├── RangeNotSatisfiable          (416 RangeNotSatisfiable: a Range outside the object)
    ├── Throttled                    (429 Throttled)
    ├── QuotaExceeded                (429 QuotaExceeded: the namespace's quota is used up)
    ├── ServiceUnavailable           (503 ServiceUnavailable: shutting down)
    ├── RecursiveLoop                (508 RecursiveLoop: one chain of calls called a function too often)
    ├── ObjectEventFailed            (500 ObjectEventFailed: the object changed; its event hook failed)
    └── InvocationError              an invocation failed; carries X-Wuzhao-Function-Error
        ├── FunctionError            (500: the handler raised)
        ├── InitError                (500: the handler could not be imported)
        ├── OutOfMemory              (500: the instance went over its memory)
        ├── RuntimeExited            (500: the runtime died or broke the protocol)
        ├── ResponseTooLarge         (413: the handler's result is over the size cap)
        ├── Timeout                  (504: the call ran past timeout_s)
        └── LeaseExpired             (500: an async attempt never answered: its worker died or hung)
    SandboxUnavailable               not an API error: the host cannot make sandboxes
"""

from __future__ import annotations

from typing import Any, ClassVar


class WuzhaoError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "InternalError"
    invocation_id: str | None = None  # set by the SDK when the failure belongs to a call

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details

    def to_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        error.update(self.details)
        return {"error": error}


class BadRequest(WuzhaoError):
    status = 400
    code = "BadRequest"


class InvalidJSON(BadRequest):
    code = "InvalidJSON"


class InvalidCode(BadRequest):
    code = "InvalidCode"


class Unauthorized(WuzhaoError):
    status = 401
    code = "Unauthorized"


class Forbidden(WuzhaoError):
    status = 403
    code = "Forbidden"


class NotFound(WuzhaoError):
    status = 404
    code = "NotFound"


class MethodNotAllowed(WuzhaoError):
    status = 405
    code = "MethodNotAllowed"


class Conflict(WuzhaoError):
    status = 409
    code = "Conflict"


class LeaseLost(Conflict):
    """An ack for an async call whose lease expired or was given back: it changed nothing."""

    code = "LeaseLost"


class PayloadTooLarge(WuzhaoError):
    status = 413
    code = "PayloadTooLarge"


class RangeNotSatisfiable(WuzhaoError):
    status = 416
    code = "RangeNotSatisfiable"


class Throttled(WuzhaoError):
    status = 429
    code = "Throttled"


class QuotaExceeded(WuzhaoError):
    status = 429
    code = "QuotaExceeded"


class ServiceUnavailable(WuzhaoError):
    status = 503
    code = "ServiceUnavailable"


class RecursiveLoop(WuzhaoError):
    """A chain of calls reached a function's ``max_chain_calls``: the call was not made."""

    status = 508
    code = "RecursiveLoop"


class ObjectEventFailed(WuzhaoError):
    """An object was written or deleted (that stands), but the hook told of it failed."""

    code = "ObjectEventFailed"


class InvocationError(WuzhaoError):
    """A call reached an instance (or tried to) and did not return a result."""


class FunctionError(InvocationError):
    code = "FunctionError"


class InitError(InvocationError):
    code = "InitError"


class OutOfMemory(InvocationError):
    code = "OutOfMemory"


class RuntimeExited(InvocationError):
    code = "RuntimeExited"


class ResponseTooLarge(InvocationError):
    status = 413
    code = "ResponseTooLarge"


class Timeout(InvocationError):
    status = 504
    code = "Timeout"


class LeaseExpired(InvocationError):
    """An asynchronous call's attempt ended without an ack: the process running it died (a kill,
    a crash of the server) or hung past its lease. Only ever recorded as an attempt's outcome."""

    code = "LeaseExpired"


class SandboxUnavailable(Exception):
    """The host cannot create sandboxes (no namespaces, no cgroups, not root)."""


def _all_subclasses(cls: type[WuzhaoError]) -> list[type[WuzhaoError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


# Only classes that declare their own code: InvocationError inherits "InternalError"
# and must not take that code over from WuzhaoError.
_ALL_ERRORS: list[type[WuzhaoError]] = [WuzhaoError, *_all_subclasses(WuzhaoError)]
ERRORS_BY_CODE: dict[str, type[WuzhaoError]] = {cls.code: cls for cls in _ALL_ERRORS if "code" in vars(cls)}


def error_from_body(status: int, body: Any) -> WuzhaoError:
    """Rebuild the typed error from an API error body (used by the SDK)."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return WuzhaoError(f"HTTP {status}: {body!r}"[:500])
    details = {k: v for k, v in error.items() if k not in ("code", "message", "field")}
    cls = ERRORS_BY_CODE.get(str(error.get("code")), WuzhaoError)
    return cls(str(error.get("message", "")), field=error.get("field"), **details)
