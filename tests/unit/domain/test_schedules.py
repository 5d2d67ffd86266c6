import datetime
import json

import pytest

from wuzhao.domain.schedules import (
    Due,
    MissedTicks,
    due,
    iso,
    next_tick,
    parse_schedule,
    parse_timezone,
    previous_tick,
    scheduled_event,
)
from wuzhao.errors import BadRequest

SKIP, CATCH_UP = MissedTicks.SKIP, MissedTicks.CATCH_UP_ONE


def at(text: str) -> int:
    """An instant from ISO 8601 (with its offset), as unix seconds."""
    return int(datetime.datetime.fromisoformat(text).timestamp())


def z(text: str) -> int:
    return at(text + "+00:00")


# -- parsing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "period"),
    [
        ("rate(1 second)", 1),
        ("rate(1 seconds)", 1),
        ("rate(5 minutes)", 300),
        ("rate( 2 hours )", 7200),
        ("rate(1 day)", 86_400),
        ("rate(366 days)", 366 * 86_400),
    ],
)
def test_rates(expression: str, period: int) -> None:
    schedule = parse_schedule(expression)
    assert (schedule.period_s, schedule.cron, schedule.is_rate) == (period, None, True)


@pytest.mark.parametrize(
    "expression",
    [
        "* * * * *",
        "0 3 * * mon-fri",
        "*/15 9-17 * * *",
        "0 0 L * *",
        "0 0 * * 5#3",
        "30 * * * * *",
        "@hourly",
    ],
)
def test_cron_expressions(expression: str) -> None:
    schedule = parse_schedule(expression, "Europe/Paris")
    assert (schedule.cron, schedule.period_s, str(schedule.zone)) == (expression, None, "Europe/Paris")


@pytest.mark.parametrize(
    ("expression", "timezone", "field", "message"),
    [
        ("rate(0 minutes)", "UTC", "schedule", "a rate is from 1 second to 366 days"),
        ("rate(367 days)", "UTC", "schedule", "a rate is from 1 second to 366 days"),
        ("rate(5 weeks)", "UTC", "schedule", "is not a rate"),
        ("rate(-1 minutes)", "UTC", "schedule", "is not a rate"),
        ("rate(1.5 hours)", "UTC", "schedule", "is not a rate"),
        ("0 3 * *", "UTC", "schedule", "has 4 fields"),
        ("0 0 3 * * * 2024", "UTC", "schedule", "has 7 fields"),
        ("61 * * * *", "UTC", "schedule", "is not a valid cron expression"),
        ("a b c d e", "UTC", "schedule", "is not a valid cron expression"),
        ("0 0 30 2 *", "UTC", "schedule", "is not a valid cron expression"),  # no 30 February, ever
        ("H * * * *", "UTC", "schedule", "is not a valid cron expression"),
        ("@sometimes", "UTC", "schedule", "is not a valid cron expression"),
        ("", "UTC", "schedule", "has 0 fields"),
        ("* * * * *", "Mars/Olympus", "timezone", "is unknown"),
        ("* * * * *", "../../etc/passwd", "timezone", "is not an IANA zone name"),
        ("* * * * *", "/etc/localtime", "timezone", "is not an IANA zone name"),
        ("* * * * *", "Europe", "timezone", "is unknown"),  # a directory of zones, not a zone
        ("* * * * *", "", "timezone", "is not an IANA zone name"),
    ],
)
def test_refused(expression: str, timezone: str, field: str, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_schedule(expression, timezone)
    assert caught.value.field == field
    assert message in caught.value.message


def test_zones() -> None:
    assert str(parse_timezone("UTC")) == "UTC"
    assert str(parse_timezone("America/Argentina/Buenos_Aires")) == "America/Argentina/Buenos_Aires"


# -- ticks ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("after", "anchor", "expected_next", "expected_previous"),
    [
        (1000, 1000, 1060, 1000),  # from the anchor, every 60 s
        (1000.5, 1000, 1060, 1000),
        (1059.9, 1000, 1060, 1000),
        (1060, 1000, 1120, 1060),  # a tick is not after itself, and is at or before itself
        (999, 1000, 1000, 940),  # before the anchor the arithmetic still holds
        (1000, 1000.7, 1060, 1000),  # the anchor counts in whole seconds
    ],
)
def test_rate_ticks(after: float, anchor: float, expected_next: int, expected_previous: int) -> None:
    schedule = parse_schedule("rate(1 minute)")
    assert next_tick(schedule, after, anchor) == expected_next
    assert previous_tick(schedule, after, anchor) == expected_previous


@pytest.mark.parametrize(
    ("expression", "zone", "after", "expected"),
    [
        ("0 3 * * *", "UTC", z("2024-05-01T02:59:59"), z("2024-05-01T03:00:00")),
        ("0 3 * * *", "UTC", z("2024-05-01T03:00:00"), z("2024-05-02T03:00:00")),
        ("0 3 * * *", "UTC", z("2024-05-01T03:00:00") + 0.5, z("2024-05-02T03:00:00")),
        ("0 3 * * *", "Asia/Tokyo", z("2024-05-01T00:00:00"), z("2024-05-01T18:00:00")),
        ("*/10 * * * * *", "UTC", z("2024-05-01T00:00:05"), z("2024-05-01T00:00:10")),  # seconds first
        ("0 0 * * mon", "UTC", z("2024-05-01T00:00:00"), z("2024-05-06T00:00:00")),  # a Wednesday
        ("0 0 L * *", "UTC", z("2024-02-01T00:00:00"), z("2024-02-29T00:00:00")),
        # Europe/Paris, spring: 02:00 CET jumps to 03:00 CEST (01:00 UTC) on 2024-03-31.
        ("30 2 * * *", "Europe/Paris", z("2024-03-30T12:00:00"), z("2024-03-31T01:00:00")),  # at the jump
        ("30 2 * * *", "Europe/Paris", z("2024-03-31T01:00:00"), z("2024-04-01T00:30:00")),
        ("0 3 * * *", "Europe/Paris", z("2024-03-30T12:00:00"), z("2024-03-31T01:00:00")),
        # ... and autumn: 03:00 CEST goes back to 02:00 CET (01:00 UTC) on 2024-10-27.
        ("30 2 * * *", "Europe/Paris", z("2024-10-26T12:00:00"), z("2024-10-27T00:30:00")),  # first pass
        ("30 2 * * *", "Europe/Paris", z("2024-10-27T00:30:00"), z("2024-10-28T01:30:00")),  # not twice
        ("30 2 * * *", "Europe/Paris", z("2024-10-27T01:10:00"), z("2024-10-28T01:30:00")),  # from pass 2
        ("*/20 * * * *", "Europe/Paris", z("2024-10-27T00:40:00"), z("2024-10-27T02:00:00")),  # 03:00 CET
        # America/New_York, spring: 02:00 EST jumps to 03:00 EDT (07:00 UTC) on 2024-03-10.
        ("15 2 * * *", "America/New_York", z("2024-03-09T12:00:00"), z("2024-03-10T07:00:00")),
        # Australia/Lord_Howe moves by half an hour: 02:00 jumps to 02:30 (15:30 UTC) on 2024-10-06.
        ("10 2 * * *", "Australia/Lord_Howe", z("2024-10-05T12:00:00"), z("2024-10-05T15:30:00")),
        ("10 2 * * *", "Australia/Lord_Howe", z("2024-10-05T15:30:00"), z("2024-10-06T15:10:00")),
    ],
)
def test_cron_next_tick(expression: str, zone: str, after: float, expected: int) -> None:
    assert iso(next_tick(parse_schedule(expression, zone), after, 0)) == iso(expected)


@pytest.mark.parametrize(
    ("expression", "zone", "at_", "expected"),
    [
        ("0 3 * * *", "UTC", z("2024-05-01T03:00:00"), z("2024-05-01T03:00:00")),  # at or before
        ("0 3 * * *", "UTC", z("2024-05-01T02:59:59"), z("2024-04-30T03:00:00")),
        ("30 2 * * *", "Europe/Paris", z("2024-03-31T01:00:00"), z("2024-03-31T01:00:00")),  # the jump
        ("30 2 * * *", "Europe/Paris", z("2024-03-31T00:59:59"), z("2024-03-30T01:30:00")),
        ("30 2 * * *", "Europe/Paris", z("2024-10-27T00:45:00"), z("2024-10-27T00:30:00")),
        # In the second pass of the repeated hour, the wall time it shows again fired in the first.
        ("30 2 * * *", "Europe/Paris", z("2024-10-27T01:10:00"), z("2024-10-27T00:30:00")),
        ("30 2 * * *", "Europe/Paris", z("2024-10-27T01:40:00"), z("2024-10-27T00:30:00")),
        ("*/20 * * * *", "Europe/Paris", z("2024-10-27T01:59:59"), z("2024-10-27T00:40:00")),
    ],
)
def test_cron_previous_tick(expression: str, zone: str, at_: float, expected: int) -> None:
    assert iso(previous_tick(parse_schedule(expression, zone), at_, 0)) == iso(expected)


def walk(expression: str, zone: str, start: str, count: int) -> list[str]:
    schedule = parse_schedule(expression, zone)
    ticks, tick = [], z(start)
    for _ in range(count):
        tick = next_tick(schedule, tick, 0)
        ticks.append(iso(tick)[11:16])
    return ticks


def test_a_skipped_hour_fires_once_at_the_jump_and_a_repeated_hour_once() -> None:
    # Paris, spring: the wall clock skips 02:00-02:59; its four ticks are one, at 03:00 CEST.
    assert walk("*/15 * * * *", "Europe/Paris", "2024-03-31T00:30:00", 6) == [
        "00:45",
        "01:00",  # 03:00 CEST, for 02:00, 02:15, 02:30, 02:45 and 03:00 together
        "01:15",
        "01:30",
        "01:45",
        "02:00",
    ]
    # Paris, autumn: the wall clock shows 02:00-02:59 twice; it fires in the first pass only.
    assert walk("*/15 * * * *", "Europe/Paris", "2024-10-26T23:30:00", 8) == [
        "23:45",
        "00:00",  # 02:00 CEST
        "00:15",
        "00:30",
        "00:45",
        "02:00",  # 03:00 CET: nothing in between
        "02:15",
        "02:30",
    ]


def test_previous_and_next_agree() -> None:
    for expression, zone in [("*/7 * * * *", "Europe/Paris"), ("0 */5 * * * *", "America/New_York")]:
        schedule = parse_schedule(expression, zone)
        tick = z("2024-10-26T23:00:00")
        for _ in range(40):
            following = next_tick(schedule, tick, 0)
            assert previous_tick(schedule, following - 1, 0) == tick
            assert previous_tick(schedule, following, 0) == following
            tick = following


# -- what is due ------------------------------------------------------------------


MINUTE = parse_schedule("rate(1 minute)")  # ticks at 1060, 1120, ... from the anchor 1000


@pytest.mark.parametrize(
    ("last", "now", "policy", "expected"),
    [
        (None, 1030, SKIP, Due((), None, 1060)),  # nothing yet
        (None, 1060, SKIP, Due((1060,), 1060, 1120)),  # on time
        (None, 1060.2, SKIP, Due((1060,), 1060, 1120)),
        (1060, 1060.5, SKIP, Due((), None, 1120)),  # fired already
        (1060, 1125, SKIP, Due((1120,), 1120, 1180)),  # late, within the grace (10 s)
        (1060, 1130, SKIP, Due((1120,), 1120, 1180)),  # exactly at the grace
        (1060, 1131, SKIP, Due((), 1120, 1180)),  # missed: skipped, and recorded as handled
        (1060, 1131, CATCH_UP, Due((1120,), 1120, 1180, catch_up=1120)),
        (1060, 1425, SKIP, Due((1420,), 1420, 1480)),  # down 5 minutes: only the tick on time
        (1060, 1425, CATCH_UP, Due((1360, 1420), 1420, 1480, catch_up=1360)),  # one for all missed
        (1060, 1435, CATCH_UP, Due((1420,), 1420, 1480, catch_up=1420)),
        (None, 100_030, CATCH_UP, Due((100_000,), 100_000, 100_060, catch_up=100_000)),  # never fired
        (500, 1030, CATCH_UP, Due((), None, 1060)),  # a tick before the anchor is an old schedule's
        (2000, 1030, SKIP, Due((), None, 1060)),  # a clock set back fires nothing twice
    ],
)
def test_due(last: int | None, now: float, policy: MissedTicks, expected: Due) -> None:
    assert due(MINUTE, anchor=1000, last=last, now=now, policy=policy, grace=10) == expected


def test_due_fires_every_late_tick_within_the_grace_once() -> None:
    second = parse_schedule("rate(1 second)")
    decision = due(second, anchor=1000, last=1002, now=1006.5, policy=SKIP, grace=3)
    assert decision == Due((1004, 1005, 1006), 1006, 1007)
    decision = due(second, anchor=1000, last=1002, now=1006.5, policy=CATCH_UP, grace=3)
    assert decision == Due((1003, 1004, 1005, 1006), 1006, 1007, catch_up=1003)


def test_due_with_a_zero_grace_fires_only_a_tick_of_this_very_second() -> None:
    second = parse_schedule("rate(1 second)")
    assert due(second, anchor=1000, last=1001, now=1002, policy=SKIP, grace=0).fire == (1002,)
    assert due(second, anchor=1000, last=1001, now=1002.5, policy=SKIP, grace=0).fire == ()


def test_due_across_a_dst_change() -> None:
    daily = parse_schedule("30 2 * * *", "Europe/Paris")
    first_pass = z("2024-10-27T00:30:00")
    decision = due(daily, anchor=0, last=None, now=first_pass + 1, policy=SKIP, grace=10)
    assert decision.fire == (first_pass,)
    # In the second pass of 02:30 nothing is due again.
    again = due(daily, anchor=0, last=first_pass, now=z("2024-10-27T01:30:05"), policy=SKIP, grace=10)
    assert again == Due((), None, z("2024-10-28T01:30:00"))


# -- the event ----------------------------------------------------------------------


def test_scheduled_event_is_shaped_like_eventbridges() -> None:
    event = json.loads(scheduled_event("team", "nightly", z("2024-05-01T03:00:00")))
    assert event == {
        "version": "0",
        "id": event["id"],
        "detail-type": "Scheduled Event",
        "source": "wuzhao.scheduler",
        "account": "team",
        "time": "2024-05-01T03:00:00Z",
        "region": "local",
        "resources": ["wuzhao:trigger:team:nightly"],
        "detail": {},
    }
    same = json.loads(scheduled_event("team", "nightly", z("2024-05-01T03:00:00")))
    other = json.loads(scheduled_event("team", "nightly", z("2024-05-02T03:00:00")))
    assert same["id"] == event["id"] != other["id"]  # one id per tick
    caught_up = json.loads(scheduled_event("team", "nightly", z("2024-05-01T03:00:00"), catch_up=True))
    assert caught_up["detail"] == {"catchUp": True}
