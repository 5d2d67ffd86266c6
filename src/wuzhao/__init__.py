"""wuzhao: a self-hosted serverless function platform."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wuzhao.client import Client

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]


def __getattr__(name: str) -> Any:
    # Client is imported on first use, not with the package: the Python runtime
    # imports wuzhao.runtimes and wuzhao.fn inside every sandbox, where httpx is
    # not even there (only the standard library and this package are), and
    # loading it would add to each cold start. Import nothing else here.
    if name == "Client":
        from wuzhao.client import Client

        return Client
    raise AttributeError(f"module 'wuzhao' has no attribute {name!r}")
