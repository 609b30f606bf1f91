"""APScheduler triggers of a schedule: a standard crontab line (UTC) or a fixed interval (the manager's cron runner
and, for on_agent schedules, the agent build the same ones)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
"""Standard cron weekday numbers: 0 (and 7) is Sunday."""


def _weekday(token: str) -> int:
    if token.isdigit():
        number = int(token)
        if number > 7:
            raise ValueError(f"day of week {number} is not between 0 and 7")
        return number
    if token in DAY_NAMES:
        return DAY_NAMES.index(token)
    raise ValueError(f"unknown day of week {token!r}")


def standard_weekdays(field: str) -> str:
    """A standard cron day-of-week field as APScheduler day names.

    APScheduler 3's from_crontab counts weekdays from Monday = 0, unlike cron (Sunday = 0), so
    "1-5" would mean Tuesday to Saturday there; spelling the days out keeps cron's meaning.
    """
    if field in ("*", "?"):
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        part, slash, step_text = item.partition("/")
        if slash and not (step_text.isdigit() and int(step_text) > 0):
            raise ValueError(f"bad step in day of week {item!r}")
        step = int(step_text) if slash else 1
        if part == "*":
            low, high = 0, 6
        elif "-" in part:
            first, last = part.split("-", 1)
            low, high = _weekday(first), _weekday(last)
        else:
            low = _weekday(part)
            high = 6 if slash else low
        if low > high:
            raise ValueError(f"day of week range {part!r} runs backwards")
        days.update(day % 7 for day in range(low, high + 1, step))
    return ",".join(DAY_NAMES[day] for day in sorted(days))


def crontab_trigger(expr: str) -> CronTrigger:
    """A CronTrigger in UTC for a five-field crontab line (raises ValueError when malformed)."""
    values = expr.split()
    if len(values) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got {len(values)}")
    values[4] = standard_weekdays(values[4])
    return CronTrigger.from_crontab(" ".join(values), timezone=UTC)


def aware(value: datetime) -> datetime:
    """A naive UTC datetime from the database as an aware one."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def naive(value: datetime | None) -> datetime | None:
    """An aware datetime as the naive UTC one the database stores."""
    return None if value is None else value.astimezone(UTC).replace(tzinfo=None)


def trigger_of(cron: str | None, interval: int | None, created_at: datetime) -> BaseTrigger:
    """The trigger of a schedule; intervals count from its creation, so a restart keeps their phase."""
    if cron:
        return crontab_trigger(cron)
    if not interval:
        raise ValueError("a schedule needs cron or interval")
    start = aware(created_at) + timedelta(seconds=interval)
    return IntervalTrigger(seconds=interval, start_date=start, timezone=UTC)


def next_fire(trigger: BaseTrigger, after: datetime) -> datetime | None:
    """The first fire time of ``trigger`` at or after ``after`` (aware UTC), or None when there is none."""
    result: datetime | None = trigger.get_next_fire_time(None, aware(after))
    return result
