"""Amounts as the checkout and the dashboard show them: integer minor units by ISO 4217 exponent."""
import pytest

from app.money import money, money_whole


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
