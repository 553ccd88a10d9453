"""Conversions to the Chinese national standards that every department must agree on.

Sources disagree on formats (15- vs 18-digit resident ID numbers, lower-case or padded
credit codes, local times vs UTC). Canonical events carry exactly one form, so each
function here either returns that form or raises :class:`StandardViolation`, whose
``code`` lets the dead-letter queue group failures by cause.
"""

from __future__ import annotations

import functools
import operator
import re
from datetime import UTC, date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

ViolationCode = Literal[
    "bad_length",
    "bad_charset",
    "bad_check_character",
    "bad_check_digit",
    "bad_birth_date",
    "bad_timestamp",
]


class StandardViolation(ValueError):
    """A value that cannot be converted to its standard form.

    ``code`` is stable and machine-readable (for grouping and alerting); the message is
    for the operator who has to fix the source record, so it names the offending value.
    """

    def __init__(self, code: ViolationCode, message: str) -> None:
        super().__init__(message)
        self.code: ViolationCode = code


DIGITS = "0123456789"

# GB 32100-2015: the 31 characters of a unified social credit code. I, O, Z, S and V are
# left out because they are easily mistaken for 1, 0, 2, 5 and U.
USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)

# GB 11714: the organization code body allows digits and upper-case letters (A=10 .. Z=35).
_ORGANIZATION_CODE_CHARSET = DIGITS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ORGANIZATION_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)

# GB 11643-1999: weights are 2**(17 - i) mod 11, check digits range over 0-9 and X (=10).
_RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_ID_CHECK_CHARSET = DIGITS + "X"

_EPOCH = date(1970, 1, 1)
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_BASIC_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")


# Each character's value in a check-character sum (its position in the charset).
_USCC_VALUE = {char: value for value, char in enumerate(USCC_CHARSET)}
_ORGANIZATION_CODE_VALUE = {char: value for value, char in enumerate(_ORGANIZATION_CODE_CHARSET)}
_DIGIT_VALUE = {char: value for value, char in enumerate(DIGITS)}
# Codes and numbers recur (before and after images, every change of an entity): the
# canonical form of the most recent ones is kept, never more than this many.
RECENT_CODES = 1 << 16


@functools.cache
def _allowed(charset: str) -> frozenset[str]:
    return frozenset(charset)


def _weighted_sum(value: str, values: dict[str, int], weights: tuple[int, ...]) -> int:
    return sum(map(operator.mul, map(values.__getitem__, value), weights))


def _require(value: str, *, length: int, charset: str, what: str) -> None:
    """Reject wrong lengths and foreign characters before any arithmetic runs.

    Checking against an explicit charset (not ``str.isdigit``) matters: full-width and
    other Unicode digits pass ``isdigit`` but are not valid in any of these standards.
    """
    if len(value) == length and _allowed(charset).issuperset(value):
        return
    if len(value) != length:
        raise StandardViolation(
            "bad_length", f"{what} {value!r} must have {length} characters, not {len(value)}"
        )
    foreign = sorted({char for char in value if char not in charset})
    if foreign:
        raise StandardViolation(
            "bad_charset", f"{what} {value!r} contains characters not allowed: {''.join(foreign)}"
        )


def uscc_check_character(first17: str) -> str:
    """The GB 32100 check character for the first 17 characters of a credit code."""
    _require(first17, length=17, charset=USCC_CHARSET, what="credit code prefix")
    total = _weighted_sum(first17, _USCC_VALUE, _USCC_WEIGHTS)
    return USCC_CHARSET[(31 - total % 31) % 31]


def organization_code_check_character(first8: str) -> str:
    """The GB 11714 check character of the organization code embedded in a credit code."""
    _require(first8, length=8, charset=_ORGANIZATION_CODE_CHARSET, what="organization code body")
    total = _weighted_sum(first8, _ORGANIZATION_CODE_VALUE, _ORGANIZATION_CODE_WEIGHTS)
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


@functools.lru_cache(maxsize=RECENT_CODES)
def normalize_uscc(value: str) -> str:
    """The canonical 18-character unified social credit code (GB 32100-2015).

    Padding and lower case are clerical noise and are repaired; anything else (a wrong
    length, a forbidden letter, a check character that does not match) means the code
    was mistyped at the source and must be fixed there.
    """
    candidate = value.strip().upper()
    _require(candidate, length=18, charset=USCC_CHARSET, what="credit code")
    expected = uscc_check_character(candidate[:17])
    if candidate[17] != expected:
        raise StandardViolation(
            "bad_check_character",
            f"credit code {value!r} ends in {candidate[17]!r} but its check character is "
            f"{expected!r}",
        )
    return candidate


def resident_id_check_digit(first17: str) -> str:
    """The GB 11643-1999 check digit ('0'-'9' or 'X') for the first 17 digits."""
    _require(first17, length=17, charset=DIGITS, what="resident ID number prefix")
    total = _weighted_sum(first17, _DIGIT_VALUE, _RESIDENT_ID_WEIGHTS)
    return _RESIDENT_ID_CHECK_CHARSET[(12 - total % 11) % 11]


def _require_birth_date(yyyymmdd: str, value: str) -> None:
    try:
        date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))
    except ValueError:
        raise StandardViolation(
            "bad_birth_date",
            f"resident ID number {value!r} embeds {yyyymmdd}, which is not a calendar date",
        ) from None


def resident_id_15_to_18(id15: str) -> str:
    """Convert a legacy 15-digit resident ID number to its 18-digit form.

    15-digit numbers were issued before 2000, so the two-digit birth year is always 19xx;
    the 18-digit form spells out the century and appends the check digit.
    """
    _require(id15, length=15, charset=DIGITS, what="15-digit resident ID number")
    first17 = f"{id15[:6]}19{id15[6:]}"
    _require_birth_date(first17[6:14], id15)
    return first17 + resident_id_check_digit(first17)


def legacy_resident_id(id18: str) -> str | None:
    """The 15-digit number a legacy system files this (valid, 18-digit) person under, or
    None for people born outside 19xx, who never had one. The inverse of
    ``resident_id_15_to_18``: lets a department look up its old records by the canonical key.
    """
    if id18[6:8] != "19":
        return None
    return id18[:6] + id18[8:17]


@functools.lru_cache(maxsize=RECENT_CODES)
def normalize_resident_id(value: str) -> str:
    """The canonical 18-digit resident ID number (GB 11643-1999).

    Legacy 15-digit numbers are converted so records from old systems can be joined with
    public security's; a lower-case check 'x' is upper-cased. The check digit is verified
    before the birth date, so a transcription error is reported as such.
    """
    candidate = value.strip().upper()
    if len(candidate) == 15:
        return resident_id_15_to_18(candidate)
    if len(candidate) != 18:
        raise StandardViolation(
            "bad_length",
            f"resident ID number {value!r} must have 15 or 18 characters, not {len(candidate)}",
        )
    if not _allowed(DIGITS).issuperset(candidate[:17]) or (
        candidate[17] not in _RESIDENT_ID_CHECK_CHARSET
    ):
        raise StandardViolation(
            "bad_charset",
            f"resident ID number {value!r} must be 17 digits followed by a digit or X",
        )
    expected = resident_id_check_digit(candidate[:17])
    if candidate[17] != expected:
        raise StandardViolation(
            "bad_check_digit",
            f"resident ID number {value!r} ends in {candidate[17]!r} but its check digit is "
            f"{expected!r}",
        )
    _require_birth_date(candidate[6:14], value)
    return candidate


def to_utc_iso(value: datetime | str, *, assume_tz: str = "Asia/Shanghai") -> str:
    """An instant as ISO 8601 in UTC with a 'Z' suffix, e.g. ``2026-11-23T02:03:04Z``.

    Departments store local wall-clock times, often without a zone; ``assume_tz`` says
    which zone such a naive value was recorded in. Microseconds are kept only when
    present so equal instants always render identically.
    """
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise StandardViolation(
                "bad_timestamp", f"{value!r} is not an ISO 8601 timestamp"
            ) from None
    elif isinstance(value, datetime):
        moment = value
    else:
        raise StandardViolation(
            "bad_timestamp", f"{value!r} is a {type(value).__name__}, not a datetime or string"
        )
    if moment.utcoffset() is None:
        moment = moment.replace(tzinfo=ZoneInfo(assume_tz))
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise StandardViolation(
            "bad_timestamp", f"{value!r} falls outside the representable range in UTC"
        ) from None
    timespec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def local_day(utc_iso: str, tz: str = "Asia/Shanghai") -> date:
    """The calendar day an instant (as :func:`to_utc_iso` writes it) falls on in ``tz``: a
    birth at 23:30 in Beijing is on that day, not on the UTC one."""
    try:
        moment = datetime.fromisoformat(utc_iso.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StandardViolation(
            "bad_timestamp", f"{utc_iso!r} is not an ISO 8601 timestamp"
        ) from None
    if moment.utcoffset() is None:
        raise StandardViolation("bad_timestamp", f"{utc_iso!r} has no zone")
    return moment.astimezone(ZoneInfo(tz)).date()


def to_iso_date(value: date | str | int) -> str:
    """A calendar date as ``YYYY-MM-DD``.

    Accepts a ``date``, ``YYYY-MM-DD``, ``YYYYMMDD`` or Debezium's days since 1970-01-01.
    A ``datetime`` is refused: which calendar day an instant falls on depends on the time
    zone, so the caller must decide that explicitly.
    """
    if isinstance(value, datetime):
        raise StandardViolation(
            "bad_timestamp", f"{value!r} is a datetime; pick its date in a time zone first"
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return (_EPOCH + timedelta(days=value)).isoformat()
        except OverflowError:
            raise StandardViolation(
                "bad_timestamp", f"{value} days since 1970-01-01 is outside the calendar"
            ) from None
    if isinstance(value, str):
        text = value.strip()
        match = _ISO_DATE.fullmatch(text) or _BASIC_DATE.fullmatch(text)
        if match:
            try:
                return date(*(int(part) for part in match.groups())).isoformat()
            except ValueError:
                pass
        raise StandardViolation(
            "bad_timestamp", f"{value!r} is not a calendar date (YYYY-MM-DD or YYYYMMDD)"
        )
    raise StandardViolation(
        "bad_timestamp", f"{value!r} is a {type(value).__name__}, not a date, string or day count"
    )
