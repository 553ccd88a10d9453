"""税种认定: a registering company's tax types follow from its legal form and industry."""

from __future__ import annotations

from connectors.sinks.tax import EVERY_BUSINESS, tax_types


def test_a_company_pays_corporate_income_tax_and_a_partnership_its_owners_income_tax() -> None:
    company = dict(tax_types("limited_company", "F"))
    assert set(company) == {*EVERY_BUSINESS, "企业所得税"}
    assert company["企业所得税"] == "legal form limited_company"
    partnership = dict(tax_types("partnership", "F"))
    assert set(partnership) == {*EVERY_BUSINESS, "个人所得税(经营所得)"}


def test_real_estate_and_mining_add_their_own_taxes() -> None:
    developer = dict(tax_types("joint_stock_company", "K"))
    assert {"土地增值税", "房产税", "城镇土地使用税"} <= set(developer)
    assert developer["土地增值税"] == "industry K"
    assert "资源税" in dict(tax_types("limited_company", "B"))


def test_an_unknown_form_or_industry_still_gets_what_every_business_files() -> None:
    assert [tax for tax, _ in tax_types(None, None)] == list(EVERY_BUSINESS)
