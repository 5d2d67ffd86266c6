"""The handler's context object: Lambda's names, time left computed from the deadline."""

from __future__ import annotations

import calendar

from wuzhao.runtimes.python.context import LambdaContext, log_stream_name


def make(now: float = 1_000.0, deadline_ms: int = 1_003_000) -> LambdaContext:
    return LambdaContext(
        request_id="req-1",
        deadline_ms=deadline_ms,
        function_name="thumbs",
        function_version="7",
        memory_limit_in_mb=256,
        log_stream_name="2026/01/02/[7]abc",
        clock=lambda: now,
    )


def test_lambda_attribute_names() -> None:
    context = make()
    assert context.aws_request_id == context.request_id == "req-1"
    assert context.function_name == "thumbs"
    assert context.function_version == "7"
    assert context.memory_limit_in_mb == 256
    assert context.log_stream_name == "2026/01/02/[7]abc"
    assert context.log_group_name == "/wuzhao/functions/thumbs"
    assert context.identity is None
    assert context.client_context is None


def test_arn_has_lambdas_shape() -> None:
    parts = make().invoked_function_arn.split(":")
    assert parts[0] == "arn"
    assert parts[5:] == ["function", "thumbs"]
    assert len(parts) == 7


def test_remaining_time_counts_down_to_zero() -> None:
    assert make(now=1_000.0).get_remaining_time_in_millis() == 3_000
    assert make(now=1_002.5).get_remaining_time_in_millis() == 500
    assert make(now=1_004.0).get_remaining_time_in_millis() == 0


def test_log_stream_name_is_dated_and_names_version_and_instance() -> None:
    now = calendar.timegm((2026, 5, 1, 12, 0, 0))
    assert log_stream_name("$LATEST", "ab12", now) == "2026/05/01/[$LATEST]ab12"
