"""The seed data obeys the national standards and tells a consistent story across departments
(no database needed)."""

from __future__ import annotations

from collections import Counter

import pytest

from govsync.stack.seed import (
    DIVISIONS,
    SeedData,
    generate,
    prepare_department,
    prepare_mariadb_department,
)
from streams.model.standards import (
    normalize_resident_id,
    normalize_uscc,
    organization_code_check_character,
    resident_id_15_to_18,
)


@pytest.fixture(scope="module")
def data() -> SeedData:
    return generate()


def test_default_size(data: SeedData) -> None:
    assert len(data.enterprises) == len(data.taxpayers) == 1000


def test_credit_codes_are_valid_and_unique(data: SeedData) -> None:
    codes = [company.credit_code for company in data.enterprises]
    assert len(set(codes)) == len(codes)
    divisions = {division.code for division in DIVISIONS}
    for code in codes:
        assert normalize_uscc(code) == code
        assert code[:2] == "91"
        assert code[2:8] in divisions
        assert organization_code_check_character(code[8:16]) == code[16]


def test_company_names_are_unique_and_well_formed(data: SeedData) -> None:
    names = [company.ent_name for company in data.enterprises]
    assert len(set(names)) == len(names)
    assert all(name.endswith("有限公司") for name in names)


def test_addresses_and_tax_offices_match_the_division(data: SeedData) -> None:
    by_code = {division.code: division for division in DIVISIONS}
    for company, taxpayer in zip(data.enterprises, data.taxpayers, strict=True):
        division = by_code[company.credit_code[2:8]]
        assert company.address.startswith(division.city + division.district)
        assert taxpayer.tax_office == f"国家税务总局{division.city}{division.district}税务局"


def test_representative_ids_are_valid_with_some_legacy_15_digit_ones(data: SeedData) -> None:
    legacy = [c.rep_id_no for c in data.enterprises if len(c.rep_id_no) == 15]
    assert len(legacy) >= 10
    for company in data.enterprises:
        number = normalize_resident_id(company.rep_id_no)
        assert "19550101" <= number[6:14] <= "19981231"
    for id15 in legacy:
        assert normalize_resident_id(resident_id_15_to_18(id15)) == resident_id_15_to_18(id15)


def test_status_mix(data: SeedData) -> None:
    statuses = Counter(company.reg_status for company in data.enterprises)
    assert statuses["1"] > 900
    assert statuses["2"] > 0
    assert statuses["3"] > 0
    assert statuses["4"] == 20


def test_taxpayers_mirror_enterprises(data: SeedData) -> None:
    expected_status = {"1": "active", "2": "suspended", "3": "revoked", "4": "deregistered"}
    for company, taxpayer in zip(data.enterprises, data.taxpayers, strict=True):
        assert (taxpayer.uscc, taxpayer.name) == (company.credit_code, company.ent_name)
        assert taxpayer.status == expected_status[company.reg_status]
        assert (taxpayer.deregistered_at is not None) == (company.reg_status == "4")
        assert taxpayer.registered_on >= company.established_on


def test_every_live_company_has_a_pending_reminder_and_deregistered_ones_none(
    data: SeedData,
) -> None:
    pending = {r.uscc for r in data.tax_reminders if r.state == "pending"}
    reminded = {r.uscc for r in data.tax_reminders}
    for company in data.enterprises:
        if company.reg_status == "4":
            assert company.credit_code not in reminded
        else:
            assert company.credit_code in pending
    assert any(r.state == "sent" for r in data.tax_reminders)
    assert {(r.period, r.due_date.isoformat()) for r in data.tax_reminders} == {
        ("2026-11", "2026-12-15")
    }


def test_employer_accounts(data: SeedData) -> None:
    accounts = data.employer_accounts
    assert 800 <= len(accounts) <= 900
    assert len({a.account_no for a in accounts}) == len({a.uscc for a in accounts}) == len(accounts)
    status = {company.credit_code: company.reg_status for company in data.enterprises}
    for account in accounts:
        assert account.account_no.startswith("SB")
        assert len(account.account_no) == 12
        assert account.account_no[2:].isdigit()
        closed = status[account.uscc] == "4"
        assert account.status == ("closed" if closed else "open")
        assert (account.closed_on is not None) == closed


def test_same_seed_same_data_other_seed_other_data(data: SeedData) -> None:
    assert generate() == data
    assert generate(seed=1) != data
    assert generate(50, seed=7) == generate(50, seed=7)


def test_small_counts() -> None:
    empty = generate(0)
    assert empty.enterprises == empty.tax_reminders == ()
    assert len(generate(1).enterprises) == 1


def test_out_of_range_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="count"):
        generate(-1)
    with pytest.raises(ValueError, match="count"):
        generate(10**6)


def test_unknown_department_is_refused_before_connecting(data: SeedData) -> None:
    known = (
        "disease_control, district_services, education, market_regulation, medical_insurance, "
        "public_security, real_estate, social_security, tax"
    )
    with pytest.raises(ValueError, match=known):
        prepare_department("civil_affairs", "host=invalid.invalid", data)


def test_birth_certificates_name_registered_parents(data: SeedData) -> None:
    births = data.birth_certificates
    assert len(births) == 12
    assert len({b.certificate_no for b in births}) == len(births)
    households = {person.id_no for person in data.households}
    for birth in births:
        assert {birth.mother_id, birth.father_id} <= households
        assert normalize_resident_id(birth.mother_id) == birth.mother_id
        assert int(birth.mother_id[16]) % 2 == 0  # GB 11643: even for women
        assert int(birth.father_id[16]) % 2 == 1
        assert birth.sex in ("1", "2")
        assert birth.born_at < birth.issued_at
        assert birth.born_at.tzinfo is None and birth.issued_at.tzinfo is None  # CST clocks


def test_unknown_mariadb_department_is_refused_before_connecting(data: SeedData) -> None:
    with pytest.raises(ValueError, match="known: health"):
        prepare_mariadb_department("tax", {"host": "invalid.invalid"}, data)


def test_households_have_valid_unique_18_digit_ids(data: SeedData) -> None:
    ids = [person.id_no for person in data.households]
    assert ids
    assert len(set(ids)) == len(ids)
    for id_no in ids:
        assert len(id_no) == 18
        assert normalize_resident_id(id_no) == id_no


def test_legacy_register_converts_to_the_household_of_the_same_person(data: SeedData) -> None:
    households = {person.id_no: person for person in data.households}
    assert data.insured_persons
    assert len({p.person_no for p in data.insured_persons}) == len(data.insured_persons)
    for insured in data.insured_persons:
        assert len(insured.id_no) == 15
        assert insured.id_no.isdigit()
        household = households[resident_id_15_to_18(insured.id_no)]
        assert (insured.name, insured.birth_date) == (household.full_name, household.birth_date)


def test_insured_members_reference_households(data: SeedData) -> None:
    households = {person.id_no: person for person in data.households}
    assert data.insured_members
    assert len({m.member_no for m in data.insured_members}) == len(data.insured_members)
    for member in data.insured_members:
        assert member.id_no in households
        assert member.name == households[member.id_no].full_name


def test_district_contacts_are_the_districts_companies_two_names_stale(data: SeedData) -> None:
    names = {company.credit_code: company.ent_name for company in data.enterprises}
    local = {code for code in names if code[2:8] == "110108"}
    contacts = data.enterprise_contacts
    assert contacts
    assert all(contact.credit_code[2:8] == "110108" for contact in contacts)
    assert {contact.credit_code for contact in contacts} == local
    assert len({contact.credit_code for contact in contacts}) == len(contacts)
    stale = [c for c in contacts if c.company_name != names[c.credit_code]]
    assert len(stale) == 2
