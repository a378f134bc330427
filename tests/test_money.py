"""Amounts as the checkout and the dashboard show them: integer minor units by ISO 4217 exponent."""
import pytest

from app.money import money, money_whole, parse_plain, plain


@pytest.mark.parametrize("minor,currency,exact,whole", [
    (50000, "INR", "₹500.00", "₹500"),
    (150000, "JPY", "¥150,000", "¥150,000"),    # no minor unit: 150000 yen, not 1,500.00
    (1500, "KWD", "KWD 1.500", "KWD 2"),         # three decimals
    (123456, "USD", "USD 1,234.56", "USD 1,235"),
    (100, "KRW", "KRW 100", "KRW 100"),
    (12345, "CLF", "CLF 1.2345", "CLF 1"),       # four decimals (a unit of account)
])
def test_amounts_use_the_currency_exponent(minor, currency, exact, whole):
    assert money(minor, currency) == exact and money_whole(minor, currency) == whole


@pytest.mark.parametrize("minor,currency,text", [
    (12345, "INR", "123.45"), (10000, "INR", "100.00"), (5, "INR", "0.05"),
    (150000, "JPY", "150000"), (1500, "KWD", "1.500"),
])
def test_plain_amounts_for_forms_and_csv_and_back(minor, currency, text):
    assert plain(minor, currency) == text and parse_plain(text, currency) == minor


@pytest.mark.parametrize("text,currency,minor", [
    ("100", "INR", 10000), ("1.5", "INR", 150), ("1.234", "INR", None), ("1.5", "JPY", None),
    ("1.25", "KWD", 1250), ("", "INR", None), ("-5", "INR", None), ("1e3", "INR", None), ("١٢", "INR", None),
    ("9" * 13, "INR", None),
])
def test_parse_plain_takes_at_most_the_currency_decimals(text, currency, minor):
    assert parse_plain(text, currency) == minor
