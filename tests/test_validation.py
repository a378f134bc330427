"""The payment-method rules as tables: VPA, Luhn, card network, expiry, CVV."""
from datetime import date, datetime, timezone

import pytest

from app.validation import card_network, expiry_ok, luhn_ok, normalize_card_number, valid_card_number, valid_cvv, valid_vpa


@pytest.mark.parametrize("vpa,ok", [
    ("user@paytm", True),
    ("john.doe@okicici", True),
    ("a_b-c.d99@ybl", True),
    ("USER123@HDFC0", True),
    ("9876543210@upi", True),
    ("", False),
    ("user", False),
    ("@paytm", False),
    ("user@", False),
    ("user@@paytm", False),
    ("user@pay.tm", False),       # the bank part is alphanumeric only
    ("user@pay-tm", False),
    ("user name@paytm", False),
    ("user@paytm ", False),
    ("user@paytm\n", False),      # "$" alone would let a trailing newline through
    ("üser@paytm", False),
    ("user+tag@paytm", False),
    ("a@b@c", False),
    (None, False),
    (12345, False),
])
def test_vpa(vpa, ok):
    assert valid_vpa(vpa) is ok


@pytest.mark.parametrize("number,ok", [
    ("4111111111111111", True),         # the documented test cards
    ("5555555555554444", True),
    ("378282246310005", True),
    ("6011111111111117", True),
    ("1234567890123456", False),        # fails Luhn
    ("4111 1111 1111 1111", True),      # spaces and dashes are stripped
    ("4111-1111-1111-1111", True),
    (" 4111111111111111 ", True),
    ("4444444444448", True),            # 13 digits, the shortest
    ("6221260000000000001", True),      # 19 digits, the longest
    ("444444444444", False),            # 12 digits
    ("62212600000000000001", False),    # 20 digits
    ("4111111111111112", False),        # one digit off
    ("4111a11111111111", False),
    ("4111_1111_1111_1111", False),
    ("４１１１１１１１１１１１１１１１", False),  # full-width digits are not digits here
    ("", False),
    ("0000000000000", True),            # Luhn-valid zeros: the rule is the rule (network: unknown)
    (4111111111111111, False),          # a number, not a string
    (None, False),
])
def test_card_number(number, ok):
    assert valid_card_number(number) is ok


@pytest.mark.parametrize("digits,ok", [("0", True), ("18", True), ("79927398713", True), ("79927398710", False)])
def test_luhn(digits, ok):
    assert luhn_ok(digits) is ok


def test_normalize_strips_only_spaces_and_dashes():
    assert normalize_card_number("4111 1111-1111 1111") == "4111111111111111"
    assert normalize_card_number("4111.1111.1111.1111") is None


@pytest.mark.parametrize("number,network", [
    ("4111111111111111", "visa"),
    ("4444444444448", "visa"),
    ("5555555555554444", "mastercard"),
    ("5100000000000008", "mastercard"),     # 51
    ("5500000000000004", "mastercard"),     # 55
    ("5000000000000009", "unknown"),        # 50
    ("5600000000000003", "unknown"),        # 56
    ("2221000000000009", "mastercard"),     # 2-series: first
    ("2720990000000007", "mastercard"),     # 2-series: last
    ("2220990000000002", "unknown"),        # just below
    ("2721000000000004", "unknown"),        # just above
    ("378282246310005", "amex"),            # 37
    ("340000000000009", "amex"),            # 34
    ("36000000000008", "unknown"),          # 36 (Diners) is not in the list
    ("6011111111111117", "rupay"),          # 60
    ("6500000000000002", "rupay"),          # 65
    ("8100000000000002", "rupay"),          # 81
    ("8900000000000004", "rupay"),          # 89
    ("8000000000000003", "unknown"),        # 80
    ("3530111333300000", "unknown"),        # JCB
    ("6221260000000000001", "unknown"),     # 62
])
def test_card_network(number, network):
    assert card_network(normalize_card_number(number)) == network


TODAY = date(2026, 1, 15)


@pytest.mark.parametrize("month,year,ok", [
    (1, 2026, True),            # the current month is still valid
    (1, "26", True),            # YY means 20YY
    (1, 26, True),
    ("01", "2026", True),
    ("12", "2030", True),
    (12, 2025, False),          # last month
    (12, "25", False),
    (1, 2025, False),
    (2, 2026, True),
    (0, 2030, False),           # month 0
    (13, 2030, False),          # month 13
    (-1, 2030, False),
    ("1", "", False),
    ("ab", "2030", False),
    (1.0, 2030, False),         # no floats
    (True, 2030, False),        # no booleans
    (None, 2030, False),
    (1, None, False),
    (1, "2030.0", False),
    (1, 20300, False),
    (1, "030", False),          # neither YY nor YYYY
    (1, 10 ** 30, False),
])
def test_expiry(month, year, ok):
    assert expiry_ok(month, year, today=TODAY) is ok


def test_expiry_uses_the_current_month_by_default():
    now = datetime.now(timezone.utc)
    assert expiry_ok(now.month, now.year)
    assert expiry_ok(now.month, str(now.year)[2:])
    last_month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    assert not expiry_ok(last_month[1], last_month[0])


@pytest.mark.parametrize("cvv,ok", [
    ("123", True),
    ("1234", True),
    ("000", True),
    (123, True),
    (1234, True),
    ("12", False),
    ("12345", False),
    ("12a", False),
    (" 123", False),
    ("", False),
    (12, False),
    (12.0, False),
    (123.0, False),
    (True, False),
    (None, False),
    ("１２３", False),
    (["123"], False),
])
def test_cvv(cvv, ok):
    assert valid_cvv(cvv) is ok
