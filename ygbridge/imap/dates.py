"""IMAP dates (RFC 3501 9: ``date`` in SEARCH, ``date-time`` in APPEND and INTERNALDATE)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DATE = re.compile(rb'"?(\d{1,2})-([A-Za-z]{3})-(\d{4})"?')
_DATE_TIME = re.compile(rb"\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\s*")


def _month(name: bytes) -> int:
    try:
        return _MONTHS.index(name.decode("ascii").lower()) + 1
    except ValueError:
        raise ValueError(f"not a month: {name!r}") from None


def parse_date(text: bytes) -> date:
    """An IMAP date (``14-Nov-2023``, maybe quoted); ValueError if malformed."""
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an IMAP date: {text!r}")
    return date(int(match[3]), _month(match[2]), int(match[1]))


def parse_date_time(text: bytes) -> float:
    """POSIX time of an IMAP date-time (``17-Jul-1996 02:44:25 -0700``); ValueError if malformed."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not an IMAP date-time: {text!r}")
    day, month, year, hour, minute, second, sign, tz_hours, tz_minutes = match.groups()
    offset = (int(tz_hours) * 60 + int(tz_minutes)) * (-60 if sign == b"-" else 60)
    when = datetime(int(year), _month(month), int(day), int(hour), int(minute), int(second), tzinfo=UTC)
    return when.timestamp() - offset


def format_date_time(when: float) -> bytes:
    """An IMAP date-time in UTC, quoted (INTERNALDATE)."""
    moment = datetime.fromtimestamp(when, UTC)
    month = _MONTHS[moment.month - 1].title()
    return b'"%02d-%s-%d %02d:%02d:%02d +0000"' % (
        moment.day,
        month.encode("ascii"),
        moment.year,
        moment.hour,
        moment.minute,
        moment.second,
    )
