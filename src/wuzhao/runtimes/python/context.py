"""The ``context`` argument of a handler, shaped like AWS Lambda's Python context."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

ACCOUNT = "000000000000"  # Lambda-shaped ARNs need one; wuzhao has no accounts
REGION = "local"


class LambdaContext:
    """One invocation's context; Lambda code reads these names unchanged."""

    def __init__(
        self,
        *,
        request_id: str,
        deadline_ms: int,
        function_name: str,
        function_version: str,
        memory_limit_in_mb: int,
        log_stream_name: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.aws_request_id = request_id
        self.request_id = request_id
        self.function_name = function_name
        self.function_version = function_version
        self.memory_limit_in_mb = memory_limit_in_mb
        self.invoked_function_arn = f"arn:wuzhao:lambda:{REGION}:{ACCOUNT}:function:{function_name}"
        self.log_group_name = f"/wuzhao/functions/{function_name}"
        self.log_stream_name = log_stream_name
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline_ms = deadline_ms
        self._clock = clock

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(self._clock() * 1000))

    def __repr__(self) -> str:
        return (
            f"LambdaContext(request_id={self.aws_request_id!r}, "
            f"function_name={self.function_name!r}, function_version={self.function_version!r})"
        )


def log_stream_name(function_version: str, instance: str, now: float) -> str:
    """Lambda's ``2024/05/01/[$LATEST]<instance>`` shape: one stream per instance."""
    return f"{time.strftime('%Y/%m/%d', time.gmtime(now))}/[{function_version}]{instance}"
