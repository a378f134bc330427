"""Payment-method rules (VPA, card number, network, expiry, CVV) as pure functions, table-tested in
tests/test_validation.py."""
import re
from datetime import datetime, timezone

VPA_RE = re.compile(r"^[a-zA-Z0-9._-]+@[a-zA-Z0-9]+$")
_SEPARATORS = re.compile(r"[ -]")


def valid_vpa(vpa):
    """True for name@bank style UPI addresses."""
    return isinstance(vpa, str) and VPA_RE.fullmatch(vpa) is not None


def normalize_card_number(number):
    """Digits only (spaces and dashes stripped), or None when anything else is present."""
    if not isinstance(number, str):
        return None
    digits = _SEPARATORS.sub("", number)
    return digits if digits.isascii() and digits.isdigit() else None


def luhn_ok(digits):
    """The Luhn checksum over a string of digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def valid_card_number(number):
    """13–19 digits after stripping spaces/dashes, passing Luhn."""
    digits = normalize_card_number(number)
    return digits is not None and 13 <= len(digits) <= 19 and luhn_ok(digits)


def card_network(digits):
    """visa, mastercard (51–55, 2221–2720), amex, rupay (60, 65, 81–89) or unknown."""
    if digits.startswith("4"):
        return "visa"
    two, four = int(digits[:2]), int(digits[:4])
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return "mastercard"
    if two in (34, 37):
        return "amex"
    if two in (60, 65) or 81 <= two <= 89:
        return "rupay"
    return "unknown"


MAX_DATE_DIGITS = 4  # YYYY; int() of a string over 4,300 digits raises (a 500, not a 400)


def _as_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = value.strip()
        if value.isascii() and value.isdigit() and len(value) <= MAX_DATE_DIGITS:
            return int(value)
    return None


def expiry_ok(month, year, today=None):
    """Month 1–12 and year YY (20YY) or YYYY, not before the current month."""
    m, y = _as_int(month), _as_int(year)
    if m is None or y is None or not 1 <= m <= 12:
        return False
    if isinstance(year, str) and len(year.strip()) == 2 or isinstance(year, int) and 0 <= y <= 99:
        y += 2000
    if not 2000 <= y <= 2199:
        return False
    today = today or datetime.now(timezone.utc).date()
    return (y, m) >= (today.year, today.month)


def valid_cvv(cvv):
    """3 or 4 digits (a string; an integer is accepted when it has 3–4 digits)."""
    if isinstance(cvv, int) and not isinstance(cvv, bool):
        cvv = str(cvv)
    return isinstance(cvv, str) and cvv.isascii() and cvv.isdigit() and 3 <= len(cvv) <= 4
