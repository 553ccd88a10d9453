"""Deterministic, realistic seed data for the departments' databases.

Demos and tests need the same companies in every department, with codes that pass the
national standards (so the stream processors' validation is exercised for real) and a few
legacy quirks (15-digit ID numbers, already-deregistered companies). Everything is drawn
from one seeded random generator, so a seed always yields the same data.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from operator import attrgetter
from zoneinfo import ZoneInfo

import psycopg
import pymysql
from psycopg import sql
from pymysql.constants import CLIENT

from streams.config.settings import REPO_ROOT
from streams.model.standards import (
    USCC_CHARSET,
    legacy_resident_id,
    organization_code_check_character,
    resident_id_15_to_18,
    resident_id_check_digit,
    uscc_check_character,
)

SEED_SQL = REPO_ROOT / "deploy" / "local" / "seed"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")

# Data as of the demo's "today": deregistrations happened before it, reminders are due after.
_TODAY = date(2026, 11, 23)
_REMINDER_PERIOD = "2026-11"
_REMINDER_DUE = date(2026, 12, 15)
# Credit codes assigned since the 2015 reform carry organization codes starting with "MA".
_USCC_REFORM = date(2016, 1, 1)


@dataclass(frozen=True)
class Division:
    """A county-level administrative division (GB/T 2260): where a company registers."""

    code: str
    city: str
    district: str


DIVISIONS = (
    Division("110105", "北京市", "朝阳区"),
    Division("110108", "北京市", "海淀区"),
    Division("120101", "天津市", "和平区"),
    Division("310104", "上海市", "徐汇区"),
    Division("310115", "上海市", "浦东新区"),
    Division("320106", "南京市", "鼓楼区"),
    Division("320505", "苏州市", "虎丘区"),
    Division("330106", "杭州市", "西湖区"),
    Division("330108", "杭州市", "滨江区"),
    Division("350102", "福州市", "鼓楼区"),
    Division("350203", "厦门市", "思明区"),
    Division("370202", "青岛市", "市南区"),
    Division("410105", "郑州市", "金水区"),
    Division("420106", "武汉市", "武昌区"),
    Division("430104", "长沙市", "岳麓区"),
    Division("440106", "广州市", "天河区"),
    Division("440304", "深圳市", "福田区"),
    Division("440305", "深圳市", "南山区"),
    Division("500103", "重庆市", "渝中区"),
    Division("510107", "成都市", "武侯区"),
    Division("610113", "西安市", "雁塔区"),
)

_TRADE_NAME_FIRST = "华恒瑞鑫博创联宏盛天中金嘉立远安泰新汇德益通美晟启卓明正云海"
_TRADE_NAME_SECOND = "信达兴源科诚和丰辉邦腾拓智森光峰成润祥弘"
# The industry word of a company name -> its GB/T 4754-2017 section.
_INDUSTRIES = {
    "科技": "M",
    "信息技术": "I",
    "网络科技": "I",
    "贸易": "F",
    "商贸": "F",
    "餐饮管理": "H",
    "建筑工程": "E",
    "装饰工程": "E",
    "文化传媒": "R",
    "物流": "G",
    "供应链管理": "L",
    "医药": "C",
    "电子": "C",
    "机械设备": "C",
    "环保科技": "N",
    "教育咨询": "P",
    "企业管理咨询": "L",
    "食品": "C",
    "新能源科技": "D",
    "生物科技": "M",
    "房地产开发": "K",
    "矿业": "B",
}
# market_regulation.enterprise.ent_type: the register's legal-form codes (topology.yaml maps them).
ENT_TYPE_LIMITED, ENT_TYPE_JOINT_STOCK = "1", "2"
_ROADS = ("人民路", "中山路", "解放路", "建设路", "长江路", "学府路", "文化路", "新华路", "和平路")
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏"
    "魏吕丁沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江"
)
_MALE_GIVEN = (
    "伟",
    "强",
    "磊",
    "军",
    "勇",
    "杰",
    "涛",
    "明",
    "超",
    "刚",
    "建华",
    "志强",
    "晓东",
    "国庆",
    "建国",
    "文博",
    "浩然",
    "宇轩",
    "思远",
    "德明",
    "振华",
    "海波",
    "立新",
)
_FEMALE_GIVEN = (
    "芳",
    "娜",
    "敏",
    "静",
    "丽",
    "艳",
    "娟",
    "霞",
    "秀英",
    "秀兰",
    "海燕",
    "丽华",
    "红梅",
    "欣怡",
    "子涵",
    "玉兰",
    "雪梅",
    "晓玲",
    "春燕",
    "慧敏",
)
_TAX_TYPES = ("增值税", "企业所得税", "个人所得税(代扣代缴)", "印花税")
_TAX_STATUS = {"1": "active", "2": "suspended", "3": "revoked", "4": "deregistered"}
# The word lists give ~400,000 distinct company names; stay well below so drawing
# unique ones by rejection remains fast.
MAX_COUNT = 100_000


@dataclass(frozen=True)
class Enterprise:
    """A row of market_regulation.enterprise (field names are the column names)."""

    credit_code: str
    ent_name: str
    reg_status: str
    rep_name: str
    rep_id_no: str
    reg_capital: Decimal
    address: str
    established_on: date
    ent_type: str
    industry_code: str


@dataclass(frozen=True)
class Taxpayer:
    """A row of tax.taxpayer."""

    uscc: str
    name: str
    status: str
    tax_office: str
    registered_on: date
    deregistered_at: datetime | None


@dataclass(frozen=True)
class TaxReminder:
    """A row of tax.tax_reminder."""

    uscc: str
    tax_type: str
    period: str
    due_date: date
    state: str


@dataclass(frozen=True)
class EmployerAccount:
    """A row of social_security.employer_account."""

    account_no: str
    uscc: str
    name: str
    status: str
    opened_on: date
    closed_on: date | None


@dataclass(frozen=True)
class EnterpriseContact:
    """A row of district_services.enterprise_contact."""

    credit_code: str
    company_name: str
    address: str
    contact_phone: str


@dataclass(frozen=True)
class Household:
    """A row of public_security.household_registration (a living, registered person)."""

    id_no: str
    full_name: str
    birth_date: date
    domicile: str


@dataclass(frozen=True)
class InsuredPerson:
    """A row of social_security.insured_person, the legacy register (15-digit IDs)."""

    person_no: str
    id_no: str
    name: str
    birth_date: date
    pension_status: str


@dataclass(frozen=True)
class InsuredMember:
    """A row of medical_insurance.insured_member."""

    member_no: str
    id_no: str
    name: str
    enrolled_on: date


@dataclass(frozen=True)
class BirthCertificate:
    """A row of health.birth_certificate (MariaDB): times are China Standard Time wall
    clocks, the server's time zone."""

    certificate_no: str
    child_name: str
    sex: str
    born_at: datetime
    mother_id: str
    father_id: str
    hospital: str
    issued_at: datetime


@dataclass(frozen=True)
class PropertyTitle:
    """A row of real_estate.property_title (a title never transferred yet: version 1)."""

    title_no: str
    address: str
    area_m2: Decimal
    owner_id_no: str
    owner_name: str


@dataclass(frozen=True)
class SeedData:
    """The rows of every department, in load order; a department loads only its own."""

    enterprises: tuple[Enterprise, ...]
    taxpayers: tuple[Taxpayer, ...]
    tax_reminders: tuple[TaxReminder, ...]
    employer_accounts: tuple[EmployerAccount, ...]
    enterprise_contacts: tuple[EnterpriseContact, ...] = ()
    households: tuple[Household, ...] = ()
    insured_persons: tuple[InsuredPerson, ...] = ()
    insured_members: tuple[InsuredMember, ...] = ()
    birth_certificates: tuple[BirthCertificate, ...] = ()
    property_titles: tuple[PropertyTitle, ...] = ()


def _random_date(rng: random.Random, first: date, last: date) -> date:
    return first + timedelta(days=rng.randint(0, (last - first).days))


def _credit_code(rng: random.Random, division: Division, established_on: date) -> str:
    """Registration authority 9 (market regulation), category 1 (enterprise), the division,
    a GB 11714 organization code and the GB 32100 check character."""
    if established_on >= _USCC_REFORM:
        body = "MA" + "".join(rng.choices(USCC_CHARSET, k=6))
    else:
        body = f"{rng.randrange(10**8):08d}"
    first17 = f"91{division.code}{body}{organization_code_check_character(body)}"
    return first17 + uscc_check_character(first17)


def _person(rng: random.Random, *, legacy: bool) -> tuple[str, str, date]:
    """A legal representative's name, resident ID number and birth date.

    The sequence number's last digit is odd for men and even for women, as in real
    numbers. Legacy 15-digit numbers belong to people old enough to have been issued one.
    """
    male = rng.random() < 0.7
    name = rng.choice(_SURNAMES) + rng.choice(_MALE_GIVEN if male else _FEMALE_GIVEN)
    born = _random_date(rng, date(1955, 1, 1), date(1980 if legacy else 1998, 12, 31))
    sequence = f"{rng.randrange(500) * 2 + int(male):03d}"
    division = rng.choice(DIVISIONS).code
    if legacy:
        return name, f"{division}{born:%y%m%d}{sequence}", born
    first17 = f"{division}{born:%Y%m%d}{sequence}"
    return name, first17 + resident_id_check_digit(first17), born


def _shuffled_statuses(rng: random.Random, count: int) -> list[str]:
    """Exact proportions rather than independent draws, so every seed has some of each."""
    rare = ["4"] * round(count * 0.02) + ["2"] * round(count * 0.03) + ["3"] * round(count * 0.02)
    statuses = rare + ["1"] * (count - len(rare))
    rng.shuffle(statuses)
    return statuses


def _company_name(rng: random.Random, division: Division, industry: str, *, shares: bool) -> str:
    """City + trade name + industry + legal form, as the naming regulations prescribe."""
    trade = rng.choice(_TRADE_NAME_FIRST) + rng.choice(_TRADE_NAME_SECOND)
    form = "股份有限公司" if shares else "有限公司"
    return f"{division.city.removesuffix('市')}{trade}{industry}{form}"


def _enterprise(
    rng: random.Random, division: Division, status: str, *, legacy_id: bool, taken: set[str]
) -> Enterprise:
    """A company whose credit code and name are not in ``taken`` (and are added to it)."""
    rep_name, rep_id_no, born = _person(rng, legacy=legacy_id)
    # Legal representatives are adults when the company is founded.
    established_on = _random_date(
        rng, max(date(1995, 1, 1), date(born.year + 22, 1, 1)), date(2025, 12, 31)
    )
    code = _credit_code(rng, division, established_on)
    while code in taken:
        code = _credit_code(rng, division, established_on)
    shares = rng.random() < 0.1
    industry = rng.choice(list(_INDUSTRIES))
    name = _company_name(rng, division, industry, shares=shares)
    while name in taken:
        name = _company_name(rng, division, industry, shares=shares)
    taken.update((code, name))
    capital = rng.choice((1000, 3000, 5000, 10000, 20000) if shares else (10, 50, 100, 500, 1000))
    street = f"{rng.choice(_ROADS)}{rng.randint(1, 999)}号"
    return Enterprise(
        credit_code=code,
        ent_name=name,
        reg_status=status,
        rep_name=rep_name,
        rep_id_no=rep_id_no,
        reg_capital=Decimal(capital * 10_000).quantize(Decimal("0.01")),  # 万元 → 元
        address=f"{division.city}{division.district}{street}",
        established_on=established_on,
        ent_type=ENT_TYPE_JOINT_STOCK if shares else ENT_TYPE_LIMITED,
        industry_code=_INDUSTRIES[industry],
    )


def new_enterprise(rng: random.Random) -> Enterprise:
    """An active company founded today, as a registration would add it (company
    registration in `govsync demo registration`)."""
    company = _enterprise(rng, rng.choice(DIVISIONS), "1", legacy_id=False, taken=set())
    return replace(company, established_on=date.today())


def _reminders(rng: random.Random, uscc: str) -> list[TaxReminder]:
    """This period's reminders; the first stays pending so every live company has one that
    a deregistration must cancel."""
    return [
        TaxReminder(
            uscc=uscc,
            tax_type=tax_type,
            period=_REMINDER_PERIOD,
            due_date=_REMINDER_DUE,
            state="sent" if position and rng.random() < 0.1 else "pending",
        )
        for position, tax_type in enumerate(rng.sample(_TAX_TYPES, rng.randint(1, 3)))
    ]


def generate(count: int = 1000, seed: int = 20261123) -> SeedData:
    """``count`` companies registered at market regulation, mirrored in tax and social
    security the way a consistent exchange would have left them."""
    if not 0 <= count <= MAX_COUNT:
        raise ValueError(f"count must be between 0 and {MAX_COUNT}, not {count}")
    rng = random.Random(seed)
    statuses = _shuffled_statuses(rng, count)
    legacy_ids = set(rng.sample(range(count), round(count * 0.03)))
    with_account = set(rng.sample(range(count), round(count * 0.85)))
    taken: set[str] = set()
    enterprises: list[Enterprise] = []
    taxpayers: list[Taxpayer] = []
    reminders: list[TaxReminder] = []
    accounts: list[EmployerAccount] = []
    for index, status in enumerate(statuses):
        division = rng.choice(DIVISIONS)
        company = _enterprise(rng, division, status, legacy_id=index in legacy_ids, taken=taken)
        enterprises.append(company)
        deregistered_on = None
        deregistered_at = None
        if status == "4":
            deregistered_on = _random_date(
                rng, company.established_on + timedelta(days=180), _TODAY - timedelta(days=7)
            )
            office_hours = time(rng.randint(9, 16), rng.randrange(60))
            deregistered_at = datetime.combine(deregistered_on, office_hours, LOCAL_TZ)
        else:
            reminders.extend(_reminders(rng, company.credit_code))
        taxpayers.append(
            Taxpayer(
                uscc=company.credit_code,
                name=company.ent_name,
                status=_TAX_STATUS[status],
                tax_office=f"国家税务总局{division.city}{division.district}税务局",
                registered_on=company.established_on + timedelta(days=rng.randint(0, 30)),
                deregistered_at=deregistered_at,
            )
        )
        if index in with_account:
            account_no = f"SB{rng.randrange(10**10):010d}"
            while account_no in taken:
                account_no = f"SB{rng.randrange(10**10):010d}"
            taken.add(account_no)
            accounts.append(
                EmployerAccount(
                    account_no=account_no,
                    uscc=company.credit_code,
                    name=company.ent_name,
                    status="open" if deregistered_on is None else "closed",
                    opened_on=company.established_on + timedelta(days=rng.randint(5, 90)),
                    closed_on=deregistered_on,
                )
            )
    people = _people(random.Random(seed + 1), enterprises)
    return SeedData(
        tuple(enterprises),
        tuple(taxpayers),
        tuple(reminders),
        tuple(accounts),
        enterprise_contacts=_district_contacts(random.Random(seed + 2), enterprises),
        households=people,
        insured_persons=_insured_persons(random.Random(seed + 3), people),
        insured_members=_insured_members(random.Random(seed + 4), people),
        birth_certificates=_birth_certificates(random.Random(seed + 5), people),
        property_titles=_property_titles(random.Random(seed + 6), people),
    )


# The district whose service centre is a source (海淀区), and how many of its records
# carry a stale company name (a 一数一源 finding from the first snapshot on).
_DISTRICT = "110108"
_STALE_NAMES = 2
_PENSION_AGE_BORN_BEFORE = date(1966, 1, 1)


def _district_contacts(
    rng: random.Random, enterprises: Sequence[Enterprise]
) -> tuple[EnterpriseContact, ...]:
    """The district's copy of the companies registered in it, a couple of names out of date."""
    local = [c for c in enterprises if c.credit_code[2:8] == _DISTRICT]
    stale = set(rng.sample(range(len(local)), min(_STALE_NAMES, len(local))))
    return tuple(
        EnterpriseContact(
            credit_code=company.credit_code,
            company_name=company.ent_name.replace("有限公司", "有限责任公司")
            if index in stale
            else company.ent_name,
            address=company.address,
            contact_phone=f"1{rng.choice('3589')}{rng.randrange(10**9):09d}",
        )
        for index, company in enumerate(local)
    )


def _people(rng: random.Random, enterprises: Sequence[Enterprise]) -> tuple[Household, ...]:
    """The companies' legal representatives as registered residents (18-digit IDs: public
    security converted the legacy numbers long ago)."""
    people: dict[str, Household] = {}
    for company in enterprises:
        id_no = (
            resident_id_15_to_18(company.rep_id_no)
            if len(company.rep_id_no) == 15
            else company.rep_id_no
        )
        if id_no in people:
            continue
        born = date(int(id_no[6:10]), int(id_no[10:12]), int(id_no[12:14]))
        division = next(d for d in DIVISIONS if d.code == id_no[:6])
        street = f"{rng.choice(_ROADS)}{rng.randint(1, 999)}号"
        people[id_no] = Household(
            id_no=id_no,
            full_name=company.rep_name,
            birth_date=born,
            domicile=f"{division.city}{division.district}{street}",
        )
    return tuple(people.values())


def _insured_persons(rng: random.Random, people: Sequence[Household]) -> tuple[InsuredPerson, ...]:
    """Most people in the legacy pension register, under their 15-digit numbers."""
    return tuple(
        InsuredPerson(
            person_no=f"P{index:09d}",
            id_no=legacy,
            name=person.full_name,
            birth_date=person.birth_date,
            pension_status="receiving"
            if person.birth_date < _PENSION_AGE_BORN_BEFORE
            else "contributing",
        )
        for index, person in enumerate(people)
        if rng.random() < 0.8 and (legacy := legacy_resident_id(person.id_no))
    )


def _insured_members(rng: random.Random, people: Sequence[Household]) -> tuple[InsuredMember, ...]:
    return tuple(
        InsuredMember(
            member_no=f"M{index:09d}",
            id_no=person.id_no,
            name=person.full_name,
            enrolled_on=_random_date(rng, date(2000, 1, 1), date(2020, 12, 31)),
        )
        for index, person in enumerate(people)
        if rng.random() < 0.9
    )


_HOSPITALS = (
    "北京大学第三医院",
    "首都医科大学附属北京妇产医院",
    "上海市第一妇婴保健院",
    "广州市妇女儿童医疗中心",
    "深圳市妇幼保健院",
    "杭州市妇产科医院",
    "四川大学华西第二医院",
)
_BIRTHS = 12
# Parents of this year's newborns: among the registered residents born then.
_PARENTS_BORN = (date(1980, 1, 1), date(1998, 12, 31))


_TITLED_SHARE = 0.6  # residents who own their home
# The province's abbreviation that opens a title number (京(2020)朝阳区不动产权第…号).
_PROVINCE_ABBREVIATION = {
    "北京市": "京",
    "上海市": "沪",
    "天津市": "津",
    "重庆市": "渝",
    "南京市": "苏",
    "苏州市": "苏",
    "杭州市": "浙",
    "福州市": "闽",
    "厦门市": "闽",
    "广州市": "粤",
    "深圳市": "粤",
    "成都市": "川",
    "武汉市": "鄂",
    "西安市": "陕",
    "郑州市": "豫",
    "长沙市": "湘",
    "青岛市": "鲁",
}


def _property_titles(rng: random.Random, people: Sequence[Household]) -> tuple[PropertyTitle, ...]:
    """Homes of most residents, at their domicile, numbered as the registries print them."""
    titles = []
    for number, owner in enumerate(p for p in people if rng.random() < _TITLED_SHARE):
        division = next(d for d in DIVISIONS if d.code == owner.id_no[:6])
        year = rng.randint(2016, 2025)
        province = _PROVINCE_ABBREVIATION[division.city]
        titles.append(
            PropertyTitle(
                title_no=f"{province}({year}){division.district}不动产权第{number + 1:07d}号",
                address=owner.domicile,
                area_m2=Decimal(rng.randint(4500, 16000)) / 100,
                owner_id_no=owner.id_no,
                owner_name=owner.full_name,
            )
        )
    return tuple(titles)


def _birth_certificates(
    rng: random.Random, people: Sequence[Household]
) -> tuple[BirthCertificate, ...]:
    """This year's birth certificates, both parents registered residents (18-digit IDs
    that public security holds), so a birth joins master.person on either."""
    parents = [p for p in people if _PARENTS_BORN[0] <= p.birth_date <= _PARENTS_BORN[1]]
    # GB 11643: the sequence number's last digit is odd for men, even for women.
    mothers = [p for p in parents if int(p.id_no[16]) % 2 == 0]
    fathers = [p for p in parents if int(p.id_no[16]) % 2 == 1]
    count = min(_BIRTHS, len(mothers), len(fathers))
    births = []
    for mother, father, number in zip(
        rng.sample(mothers, count),
        rng.sample(fathers, count),
        rng.sample(range(10**9), count),
        strict=True,
    ):
        male = rng.random() < 0.5
        day = _random_date(rng, date(_TODAY.year, 1, 1), _TODAY - timedelta(days=14))
        born_at = datetime.combine(day, time(rng.randrange(24), rng.randrange(60)))
        born_at += timedelta(milliseconds=rng.randrange(60_000))
        issued_at = datetime.combine(
            day + timedelta(days=rng.randint(1, 10)),
            time(rng.randint(9, 16), rng.randrange(60), rng.randrange(60), rng.randrange(10**6)),
        )
        given = rng.choice(_MALE_GIVEN if male else _FEMALE_GIVEN)
        births.append(
            BirthCertificate(
                certificate_no=f"Q{number:09d}",
                child_name=father.full_name[0] + given,
                sex="1" if male else "2",
                born_at=born_at,
                mother_id=mother.id_no,
                father_id=father.id_no,
                hospital=rng.choice(_HOSPITALS),
                issued_at=issued_at,
            )
        )
    return tuple(births)


@dataclass(frozen=True)
class _Table:
    name: str
    row_type: type
    rows: Callable[[SeedData], Sequence[object]]


# Load order matters (foreign keys); each table is loaded only while it is empty.
_DEPARTMENTS: dict[str, tuple[_Table, ...]] = {
    "market_regulation": (_Table("enterprise", Enterprise, attrgetter("enterprises")),),
    "tax": (
        _Table("taxpayer", Taxpayer, attrgetter("taxpayers")),
        _Table("tax_reminder", TaxReminder, attrgetter("tax_reminders")),
    ),
    "social_security": (
        _Table("employer_account", EmployerAccount, attrgetter("employer_accounts")),
        _Table("insured_person", InsuredPerson, attrgetter("insured_persons")),
    ),
    "district_services": (
        _Table("enterprise_contact", EnterpriseContact, attrgetter("enterprise_contacts")),
    ),
    "public_security": (_Table("household_registration", Household, attrgetter("households")),),
    "medical_insurance": (_Table("insured_member", InsuredMember, attrgetter("insured_members")),),
    "disease_control": (),  # its tables fill from births (connectors/sinks/disease_control.py)
    "education": (),  # likewise (connectors/sinks/education.py)
    "real_estate": (_Table("property_title", PropertyTitle, attrgetter("property_titles")),),
}


# Departments whose database is MariaDB (deploy/local/seed/<department>.sql in its dialect).
_MARIADB_DEPARTMENTS: dict[str, tuple[_Table, ...]] = {
    "health": (_Table("birth_certificate", BirthCertificate, attrgetter("birth_certificates")),),
}


def seeded_departments() -> list[str]:
    """Departments this module has PostgreSQL demo data for."""
    return sorted(_DEPARTMENTS)


def seeded_mariadb_departments() -> list[str]:
    """Departments this module has MariaDB demo data for."""
    return sorted(_MARIADB_DEPARTMENTS)


def prepare_department(department: str, conninfo: str, data: SeedData) -> int:
    """Create the department's tables and load its seed rows; returns the rows loaded.

    Safe to call on every start: the DDL is idempotent, and rows are loaded only into an
    empty table, so changes made during a demo survive a restart (and a table added in a
    later version is filled on the next start). DDL and data commit together, so a
    failed load leaves nothing half-seeded.
    """
    tables = _DEPARTMENTS.get(department)
    if tables is None:
        raise ValueError(
            f"unknown department {department!r}; known: {', '.join(sorted(_DEPARTMENTS))}"
        )
    ddl = (SEED_SQL / f"{department}.sql").read_bytes()
    loaded = 0
    with psycopg.connect(conninfo) as conn, conn.cursor() as cursor:
        cursor.execute(ddl)
        for table in tables:
            cursor.execute(
                sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(table.name))
            )
            row = cursor.fetchone()
            if row is not None and row[0]:
                continue
            columns = [field.name for field in fields(table.row_type)]
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table.name), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            rows = table.rows(data)
            with cursor.copy(statement) as copy:
                for record in rows:
                    copy.write_row(astuple(record))
            loaded += len(rows)
    return loaded


def prepare_mariadb_department(
    department: str, connection_args: Mapping[str, object], data: SeedData
) -> int:
    """``prepare_department`` for a MariaDB database (``connection_args`` for
    ``pymysql.connect``, the department's database selected): the same idempotent DDL and
    load into empty tables only. MariaDB commits each DDL statement by itself, so only
    the rows of a table load all or nothing."""
    tables = _MARIADB_DEPARTMENTS.get(department)
    if tables is None:
        raise ValueError(
            f"unknown MariaDB department {department!r}; known: "
            f"{', '.join(sorted(_MARIADB_DEPARTMENTS))}"
        )
    ddl = (SEED_SQL / f"{department}.sql").read_text(encoding="utf-8")
    loaded = 0
    with (
        pymysql.connect(**connection_args, client_flag=CLIENT.MULTI_STATEMENTS) as conn,
        conn.cursor() as cursor,
    ):
        cursor.execute(ddl)
        while cursor.nextset():
            pass
        for table in tables:
            cursor.execute(f"SELECT EXISTS (SELECT 1 FROM `{table.name}`)")
            row = cursor.fetchone()
            if row is not None and row[0]:
                continue
            columns = [field.name for field in fields(table.row_type)]
            rows = table.rows(data)
            cursor.executemany(
                f"INSERT INTO `{table.name}` ({', '.join(f'`{c}`' for c in columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})",
                [astuple(record) for record in rows],
            )
            conn.commit()
            loaded += len(rows)
    return loaded
