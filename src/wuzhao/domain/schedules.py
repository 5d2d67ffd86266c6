"""Timer schedules: when a ``cron`` trigger fires, and which of its ticks are due now.

A schedule is one of:

- ``rate(N unit)``: every N seconds, minutes, hours or days, counted from the
  schedule's *anchor* (the time the trigger was created or last changed), so
  ``rate(1 hour)`` set at 10:20:00 fires at 11:20:00, 12:20:00, ...
- a cron expression of 5 fields (``minute hour day-of-month month day-of-week``)
  or 6 fields with the seconds first (``second minute hour ...``), as croniter
  reads them (ranges, steps, names, ``L``, ``#``, ``@hourly``...), in an IANA
  time zone (``UTC`` by default).

A tick is an instant, in whole unix seconds. Cron expressions speak of wall-clock
times, and a wall clock with daylight saving time skips an hour in spring and
shows one twice in autumn. The rules here, so that a tick is never fired twice
and a daily job is never silently dropped:

- a wall time the clocks skip fires at the first instant after the jump
  (``30 2 * * *`` in Europe/Paris fires at 03:00 CEST on the spring day; all
  the skipped minutes of ``*/15 * * * *`` fire once, together, at 03:00);
- a wall time the clocks show twice fires once, at its first occurrence (the
  repeated hour of ``*/15 * * * *`` has no ticks the second time round).

Croniter walks the wall clock here as naive times; the mapping to instants is
ours (croniter's own would fire a repeated wall time twice).

:func:`due` decides what the scheduler fires, given the last tick it fired:
ticks up to ``grace`` seconds late are fired, each once; older ones were
missed (the server was down), and the missed-ticks policy says whether they
are skipped or stand for one catch-up call (the most recent of them).
:func:`scheduled_event` is what each tick sends: EventBridge's scheduled event.

Zones come from the IANA database through ``zoneinfo`` (the system's, else the
pinned ``tzdata`` package): static data, read once per zone, like an import.
"""

from __future__ import annotations

import datetime
import enum
import math
import re
import uuid
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from croniter import CroniterError, croniter

from wuzhao.errors import BadRequest


class MissedTicks(enum.StrEnum):
    SKIP = "skip"  # a tick missed while the server was down is not fired
    CATCH_UP_ONE = "catch_up_one"  # any missed ticks make one call, for the most recent of them


MISSED_TICKS = tuple(policy.value for policy in MissedTicks)
SOURCE = "wuzhao.scheduler"  # the event's source, as EventBridge's is aws.events
REGION = "local"
TRIGGER_REF = "wuzhao:trigger:{namespace}:{trigger}"  # in the event's resources, as a rule's ARN there
_EVENT_IDS = uuid.UUID("5e0f1b8c-6d1e-4c55-9d1a-8f3b2a7c9e10")  # the uuid5 namespace of event ids
UTC = "UTC"
MAX_RATE_S = 366 * 86_400
_RATE = re.compile(r"^rate\(\s*([0-9]{1,9})\s+(second|minute|hour|day)s?\s*\)\Z")
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
_ZONE_NAME = re.compile(r"^[A-Za-z0-9_+-]+(/[A-Za-z0-9_+-]+){0,2}\Z")  # keeps paths out of ZoneInfo
_MAX_STEPS = 100_000  # candidates one look-up may pass over (a repeated hour of a per-second cron: 3600)
_SECOND = datetime.timedelta(seconds=1)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: either ``period_s`` (a rate) or ``cron`` (an expression) in ``zone``."""

    expression: str  # as given
    zone: ZoneInfo
    period_s: int | None = None
    cron: str | None = None

    @property
    def is_rate(self) -> bool:
        return self.period_s is not None


def parse_schedule(expression: str, timezone: str = UTC) -> Schedule:
    """Check a schedule and its time zone; BadRequest naming ``schedule`` or ``timezone``."""
    zone = parse_timezone(timezone)
    text = expression.strip()
    rate = _RATE.match(text)
    if rate is not None:
        period = int(rate.group(1)) * _UNIT_S[rate.group(2)]
        if not 1 <= period <= MAX_RATE_S:
            raise BadRequest(
                f"schedule {expression!r}: a rate is from 1 second to 366 days", field="schedule"
            )
        return Schedule(expression, zone, period_s=period)
    if text.startswith("rate"):
        raise BadRequest(
            f"schedule {expression!r} is not a rate: write rate(N seconds|minutes|hours|days), "
            "e.g. rate(5 minutes)",
            field="schedule",
        )
    fields = len(text.split())
    if not text.startswith("@") and fields not in (5, 6):
        raise BadRequest(
            f"schedule {expression!r} has {fields} fields: a cron expression has 5 "
            "(minute hour day-of-month month day-of-week) or 6 (second first)",
            field="schedule",
        )
    try:
        walker = croniter(text, datetime.datetime(2000, 1, 1), second_at_beginning=True)
        walker.get_next(datetime.datetime)  # an expression no date satisfies (30 February) fails here
    except (CroniterError, ValueError, KeyError, TypeError) as error:  # some parse errors are not its own
        raise BadRequest(
            f"schedule {expression!r} is not a valid cron expression: {error}", field="schedule"
        ) from None
    return Schedule(expression, zone, cron=text)


def parse_timezone(name: str) -> ZoneInfo:
    if name != UTC and not _ZONE_NAME.match(name):
        raise BadRequest(f"time zone {name!r} is not an IANA zone name like Europe/Paris", field="timezone")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadRequest(
            f"time zone {name!r} is unknown: use an IANA zone name like Europe/Paris or UTC", field="timezone"
        ) from None


def next_tick(schedule: Schedule, after: float, anchor: float) -> int:
    """The first tick strictly after ``after``."""
    if schedule.period_s is not None:
        base, period = int(anchor), schedule.period_s
        return base + (math.floor((after - base) / period) + 1) * period
    start = math.floor(after)
    walker = _walker(schedule, _wall(start, schedule.zone))
    for _ in range(_MAX_STEPS):
        tick = _instant(walker.get_next(datetime.datetime), schedule.zone)
        if tick > after:
            return tick
    raise RuntimeError(f"no tick of {schedule.expression!r} found after {after}")  # pragma: no cover


def previous_tick(schedule: Schedule, at: float, anchor: float) -> int:
    """The last tick at or before ``at``."""
    if schedule.period_s is not None:
        base, period = int(anchor), schedule.period_s
        return base + math.floor((at - base) / period) * period
    instant = math.floor(at)
    wall = _wall(instant, schedule.zone)
    first = _instant(wall, schedule.zone)
    if first < instant:
        # ``at`` is in the second pass of a repeated hour: the wall times after this one, up
        # to the end of that hour, fired in the first pass, before ``at``. Start past them.
        wall += datetime.timedelta(seconds=instant - first)
    walker = _walker(schedule, wall + _SECOND)
    for _ in range(_MAX_STEPS):
        tick = _instant(walker.get_prev(datetime.datetime), schedule.zone)
        if tick <= at:
            return tick
    raise RuntimeError(f"no tick of {schedule.expression!r} found before {at}")  # pragma: no cover


@dataclass(frozen=True)
class Due:
    """What to do now for one schedule."""

    fire: tuple[int, ...]  # ticks to fire, oldest first
    last: int | None  # the tick to record as the last one handled (None: nothing was due)
    next: int  # the first tick after now
    catch_up: int | None = None  # the one of ``fire`` that stands for missed ticks (catch_up_one)


def due(
    schedule: Schedule,
    *,
    anchor: float,
    last: int | None,
    now: float,
    policy: MissedTicks,
    grace: float,
) -> Due:
    """The ticks to fire now: those after ``last`` (or after ``anchor`` if none was ever
    handled) and up to ``now``; those more than ``grace`` late were missed, and ``policy``
    decides about them."""
    start = int(anchor) if last is None else max(last, int(anchor))
    upcoming = next_tick(schedule, now, anchor)
    latest = previous_tick(schedule, now, anchor)
    if latest <= start:
        return Due((), None, upcoming)
    cutoff = now - grace  # a tick at or after this is on time
    on_time: list[int] = []
    tick = next_tick(schedule, max(start, math.ceil(cutoff) - 1), anchor)
    while tick <= now:
        on_time.append(tick)
        tick = next_tick(schedule, tick, anchor)
    if policy is MissedTicks.CATCH_UP_ONE:
        missed = previous_tick(schedule, math.ceil(cutoff) - 1, anchor)
        if missed > start:
            return Due((missed, *on_time), latest, upcoming, catch_up=missed)
    return Due(tuple(on_time), latest, upcoming)


def scheduled_event(namespace: str, trigger: str, tick: int, *, catch_up: bool = False) -> bytes:
    """The event of one tick, shaped like EventBridge's scheduled event. Its ``id`` is the
    same for the same tick, so a handler can tell a repeat (a call run again after a crash).
    ``detail`` is empty, but says ``{"catchUp": true}`` on the call for missed ticks."""
    event = {
        "version": "0",
        "id": str(uuid.uuid5(_EVENT_IDS, f"{namespace}/{trigger}/{tick}")),
        "detail-type": "Scheduled Event",
        "source": SOURCE,
        "account": namespace,
        "time": iso(tick),
        "region": REGION,
        "resources": [TRIGGER_REF.format(namespace=namespace, trigger=trigger)],
        "detail": {"catchUp": True} if catch_up else {},
    }
    return msgspec.json.encode(event)


def iso(tick: int) -> str:
    """A tick as EventBridge writes times: ``2024-03-31T01:00:00Z``."""
    return datetime.datetime.fromtimestamp(tick, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- the wall clock -------------------------------------------------------


def _walker(schedule: Schedule, start: datetime.datetime) -> croniter:
    assert schedule.cron is not None
    return croniter(schedule.cron, start, second_at_beginning=True)


def _wall(instant: int, zone: ZoneInfo) -> datetime.datetime:
    """The wall-clock time (naive) that ``instant`` shows in ``zone``."""
    return datetime.datetime.fromtimestamp(instant, zone).replace(tzinfo=None)


def _instant(wall: datetime.datetime, zone: ZoneInfo) -> int:
    """When ``wall`` happens in ``zone``: its first occurrence if the clocks show it twice,
    the end of the jump if they skip it."""
    first = int(wall.replace(tzinfo=zone, fold=0).timestamp())
    if _wall(first, zone) == wall:
        return first
    # Skipped: fold=1 reads it with the offset after the jump (an instant before the jump),
    # fold=0 with the one before (an instant after it). The jump is between: find it.
    low, high = int(wall.replace(tzinfo=zone, fold=1).timestamp()), first
    after = _offset(high, zone)
    while high - low > 1:
        middle = (low + high) // 2
        if _offset(middle, zone) == after:
            high = middle
        else:
            low = middle
    return high


def _offset(instant: int, zone: ZoneInfo) -> datetime.timedelta | None:
    return datetime.datetime.fromtimestamp(instant, zone).utcoffset()
