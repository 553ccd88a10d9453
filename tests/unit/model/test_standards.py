"""GB 32100, GB 11714, GB 11643 and time conversions: published examples, every error code,
and the error-detecting properties the check characters are designed to have."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.model.standards import (
    DIGITS,
    USCC_CHARSET,
    StandardViolation,
    local_day,
    normalize_resident_id,
    normalize_uscc,
    organization_code_check_character,
    resident_id_15_to_18,
    resident_id_check_digit,
    to_iso_date,
    to_utc_iso,
    uscc_check_character,
)

# Credit codes in public circulation, each confirmed valid by the algorithm (including the
# GB 11714 check character of the embedded organization code).
PUBLISHED_USCCS = [
    "91350100M000100Y43",
    "914403001922038216",
    "9144030071526726XG",
    "91330100716105852F",
    "91110000802100433B",
]


def violation(call: Callable[..., object], *args: object) -> StandardViolation:
    with pytest.raises(StandardViolation) as caught:
        call(*args)
    return caught.value


# --- GB 32100: unified social credit code ---------------------------------------------------


@pytest.mark.parametrize("code", PUBLISHED_USCCS)
def test_published_credit_codes_are_valid(code: str) -> None:
    assert normalize_uscc(code) == code
    assert uscc_check_character(code[:17]) == code[17]
    assert organization_code_check_character(code[8:16]) == code[16]


def test_credit_code_padding_and_case_are_repaired() -> None:
    assert normalize_uscc(" 91350100m000100y43\u3000") == "91350100M000100Y43"


def test_check_character_31_maps_to_zero() -> None:
    # Weighted sum 0 gives 31 - 0 = 31, which the standard writes as '0'.
    assert uscc_check_character("0" * 17) == "0"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("91350100M000100Y4", "bad_length"),
        ("91350100M000100Y433", "bad_length"),
        ("", "bad_length"),
        ("91350100M000100I43", "bad_charset"),  # I is excluded (looks like 1)
        ("91350100O000100Y43", "bad_charset"),  # O is excluded (looks like 0)
        ("9135010０M000100Y43", "bad_charset"),  # full-width digit
        ("91350100M000100Y44", "bad_check_character"),
    ],
)
def test_bad_credit_codes(value: str, code: str) -> None:
    error = violation(normalize_uscc, value)
    assert error.code == code
    assert repr(value.strip().upper()) in str(error)


def test_check_character_input_is_validated() -> None:
    assert violation(uscc_check_character, "1" * 16).code == "bad_length"
    assert violation(uscc_check_character, "S" * 17).code == "bad_charset"


def test_organization_code_check_character_special_values() -> None:
    # GB 11714: 11 - (sum mod 11) is written 'X' for 10 and '0' for 11.
    assert organization_code_check_character("00000000") == "0"
    assert organization_code_check_character("00000006") == "X"  # sum 12, 11 - 1 = 10
    assert violation(organization_code_check_character, "0000000a").code == "bad_charset"


uscc_prefixes = st.text(alphabet=USCC_CHARSET, min_size=17, max_size=17)


@st.composite
def valid_usccs(draw: st.DrawFn) -> str:
    prefix = draw(uscc_prefixes)
    return prefix + uscc_check_character(prefix)


@given(valid_usccs())
def test_any_prefix_with_its_check_character_normalizes_to_itself(code: str) -> None:
    assert normalize_uscc(code) == code
    assert normalize_uscc(f"  {code.lower()} ") == code


@given(valid_usccs(), st.integers(0, 17), st.integers(1, 30))
def test_any_single_character_substitution_in_a_credit_code_is_detected(
    code: str, position: int, shift: int
) -> None:
    # 31 is prime and no weight is a multiple of it, so every substitution moves the sum.
    replacement = USCC_CHARSET[(USCC_CHARSET.index(code[position]) + shift) % 31]
    changed = code[:position] + replacement + code[position + 1 :]
    assert violation(normalize_uscc, changed).code == "bad_check_character"


@given(valid_usccs(), st.integers(0, 15))
def test_any_adjacent_transposition_in_a_credit_code_prefix_is_detected(
    code: str, position: int
) -> None:
    # The weights are distinct powers of 3 mod 31, so swapping two different characters in
    # the first 17 always changes the sum. (A swap involving the check character may not.)
    a, b = code[position], code[position + 1]
    swapped = code[:position] + b + a + code[position + 2 :]
    if a == b:
        assert normalize_uscc(swapped) == code
    else:
        assert violation(normalize_uscc, swapped).code == "bad_check_character"


# --- GB 11643: resident ID number ------------------------------------------------------------


def test_published_resident_id_is_valid() -> None:
    assert normalize_resident_id("11010519491231002X") == "11010519491231002X"
    assert resident_id_check_digit("11010519491231002") == "X"


def test_lower_case_check_x_is_upper_cased() -> None:
    assert normalize_resident_id(" 11010519491231002x ") == "11010519491231002X"


def test_published_15_to_18_example() -> None:
    assert resident_id_15_to_18("130503670401001") == "130503196704010016"
    assert normalize_resident_id("130503670401001") == "130503196704010016"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("1101051949123100", "bad_length"),
        ("1101051949123100211", "bad_length"),
        ("11010519491231002Y", "bad_charset"),
        ("1101051949123100X2", "bad_charset"),
        ("1101051949123１002X", "bad_charset"),  # full-width digit
        ("13050367040100X", "bad_charset"),
        ("110105194912310021", "bad_check_digit"),
        # Valid check digits, impossible dates: 1949-02-30 and 1967-13-01.
        ("110105194902300020", "bad_birth_date"),
        ("130503671301001", "bad_birth_date"),
    ],
)
def test_bad_resident_ids(value: str, code: str) -> None:
    error = violation(normalize_resident_id, value)
    assert error.code == code
    assert value.strip() in str(error)


def test_bad_birth_date_example_has_a_valid_check_digit() -> None:
    assert resident_id_check_digit("11010519490230002") == "0"


def test_resident_id_conversion_input_is_validated() -> None:
    assert violation(resident_id_15_to_18, "13050367040100").code == "bad_length"
    assert violation(resident_id_check_digit, "1101051949123100X").code == "bad_charset"


@st.composite
def first17s(draw: st.DrawFn) -> str:
    division = draw(st.text(alphabet=DIGITS, min_size=6, max_size=6))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(2099, 12, 31)))
    sequence = draw(st.text(alphabet=DIGITS, min_size=3, max_size=3))
    return f"{division}{born:%Y%m%d}{sequence}"


@given(first17s())
def test_any_valid_resident_id_normalizes_to_itself(first17: str) -> None:
    number = first17 + resident_id_check_digit(first17)
    assert normalize_resident_id(number) == number
    assert normalize_resident_id(number.lower()) == number


@given(first17s(), st.integers(0, 17), st.data())
def test_any_single_character_substitution_in_a_resident_id_is_detected(
    first17: str, position: int, data: st.DataObject
) -> None:
    # 11 is prime and no weight is a multiple of it, so every substitution moves the sum;
    # the check digit is verified before the (possibly now impossible) birth date.
    number = first17 + resident_id_check_digit(first17)
    alphabet = DIGITS + "X" if position == 17 else DIGITS
    replacement = data.draw(st.sampled_from([c for c in alphabet if c != number[position]]))
    changed = number[:position] + replacement + number[position + 1 :]
    assert violation(normalize_resident_id, changed).code == "bad_check_digit"


@st.composite
def legacy_ids(draw: st.DrawFn) -> str:
    division = draw(st.text(alphabet=DIGITS, min_size=6, max_size=6))
    born = draw(st.dates(min_value=date(1900, 1, 1), max_value=date(1999, 12, 31)))
    sequence = draw(st.text(alphabet=DIGITS, min_size=3, max_size=3))
    return f"{division}{born:%y%m%d}{sequence}"


@given(legacy_ids())
def test_15_to_18_is_valid_and_keeps_division_birth_date_and_sequence(id15: str) -> None:
    id18 = resident_id_15_to_18(id15)
    assert normalize_resident_id(id18) == id18
    assert normalize_resident_id(id15) == id18
    assert id18[:6] == id15[:6]
    assert id18[6:14] == f"19{id15[6:12]}"
    assert id18[14:17] == id15[12:15]


# --- times and dates ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 11, 23, 10, 3, 4, 123456), "2026-11-23T02:03:04.123456Z"),
        (datetime(2026, 11, 23, 10, 3, 4), "2026-11-23T02:03:04Z"),
        (datetime(2026, 11, 23, 2, 3, 4, tzinfo=UTC), "2026-11-23T02:03:04Z"),
        ("2026-11-23T10:03:04.123456", "2026-11-23T02:03:04.123456Z"),
        ("2026-11-23 10:03:04", "2026-11-23T02:03:04Z"),
        ("2026-11-23T02:03:04Z", "2026-11-23T02:03:04Z"),
        ("2026-11-23T10:03:04.5+08:00", "2026-11-23T02:03:04.500000Z"),
        ("2026-11-23T00:30:00-05:00", "2026-11-23T05:30:00Z"),
        ("2026-11-23T00:00:00.000000Z", "2026-11-23T00:00:00Z"),
    ],
)
def test_to_utc_iso(value: datetime | str, expected: str) -> None:
    assert to_utc_iso(value) == expected


def test_naive_times_use_the_assumed_zone() -> None:
    assert to_utc_iso("2026-07-01T12:00:00", assume_tz="Europe/Berlin") == "2026-07-01T10:00:00Z"
    assert to_utc_iso(datetime(2026, 1, 1), assume_tz="UTC") == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "value", ["", "yesterday", "2026-11-23T25:00:00", datetime.min, 1_790_000_000]
)
def test_bad_timestamps(value: object) -> None:
    assert violation(to_utc_iso, value).code == "bad_timestamp"


@given(st.datetimes(timezones=st.just(timezone(timedelta(hours=8)))))
def test_utc_iso_keeps_the_instant(moment: datetime) -> None:
    try:
        rendered = to_utc_iso(moment)
    except StandardViolation as error:
        assert error.code == "bad_timestamp"  # only at the very edges of the calendar
        return
    assert rendered.endswith("Z")
    assert datetime.fromisoformat(rendered) == moment


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (date(2026, 11, 23), "2026-11-23"),
        ("2026-11-23", "2026-11-23"),
        (" 20261123 ", "2026-11-23"),
        (20780, "2026-11-23"),
        (0, "1970-01-01"),
        (-1, "1969-12-31"),
    ],
)
def test_to_iso_date(value: date | str | int, expected: str) -> None:
    assert to_iso_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2026-02-30",
        "20261301",
        "2026-W48-1",  # accepted by date.fromisoformat, not a form any source uses
        "2026-11-23T00:00:00",
        "2026/11/23",
        datetime(2026, 11, 23, 1, 0),
        True,
        10**9,
        2026.5,
    ],
)
def test_bad_dates(value: object) -> None:
    assert violation(to_iso_date, value).code == "bad_timestamp"


@given(st.dates())
def test_every_date_form_agrees(day: date) -> None:
    expected = day.isoformat()
    assert to_iso_date(day) == expected
    assert to_iso_date(expected) == expected
    assert to_iso_date(day.strftime("%Y%m%d").zfill(8)) == expected
    assert to_iso_date((day - date(1970, 1, 1)).days) == expected


def test_local_day_is_the_calendar_day_in_china_standard_time() -> None:
    assert local_day("2026-12-01T16:30:00.250000Z") == date(2026, 12, 2)
    assert local_day("2026-12-01T15:59:59Z") == date(2026, 12, 1)
    with pytest.raises(StandardViolation, match="has no zone"):
        local_day("2026-12-01T16:30:00")
