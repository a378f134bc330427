"""Money as text, for the templates, the dashboard's forms and its CSV: amounts are integer minor
units (paise) everywhere else."""
import re

# ISO 4217 minor units where they are not 2: an amount is counted in the currency's smallest unit,
# so 150000 JPY is ¥150,000 and 1500 KWD is KWD 1.500.
EXPONENTS = {
    **dict.fromkeys(["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                     "VND", "VUV", "XAF", "XOF", "XPF"], 0),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
    **dict.fromkeys(["CLF", "UYW"], 4),
}
SYMBOLS = {"INR": "₹", "JPY": "¥"}


def exponent(currency):
    """Digits after the decimal point in `currency` (2 unless ISO 4217 says otherwise)."""
    return EXPONENTS.get(currency, 2)


def indian_digits(n):
    """1234567 -> '12,34,567': the last three digits, then groups of two."""
    s = str(abs(int(n)))
    head, tail = s[:-3], s[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    return ("-" if n < 0 else "") + ",".join(([head] if head else []) + groups + [tail])


def _with_symbol(currency, amount):
    return f"{SYMBOLS[currency]}{amount}" if currency in SYMBOLS else f"{currency} {amount}"


def money(minor, currency="INR"):
    """Integer minor units -> '₹5,00,000.00' (Indian grouping), '¥150,000', 'USD 1,000.50'."""
    digits = exponent(currency)
    units, rest = divmod(int(minor), 10 ** digits)
    whole = indian_digits(units) if currency == "INR" else f"{units:,}"
    return _with_symbol(currency, f"{whole}.{rest:0{digits}d}" if digits else whole)


def money_whole(minor, currency="INR"):
    """Integer minor units -> '₹5,00,000' (rounded to the whole unit, for headline totals)."""
    scale = 10 ** exponent(currency)
    units = (int(minor) + scale // 2) // scale
    return _with_symbol(currency, indian_digits(units) if currency == "INR" else f"{units:,}")


def plain(minor, currency="INR"):
    """Integer minor units -> '1234.56' in the major unit, without grouping or symbol (a form's value,
    a CSV cell): '150000' for 150000 JPY, '1.500' for 1500 KWD."""
    digits = exponent(currency)
    units, rest = divmod(int(minor), 10 ** digits)
    return f"{units}.{rest:0{digits}d}" if digits else str(units)


_PLAIN = re.compile(r"(\d{1,12})(?:\.(\d+))?", re.ASCII)


def parse_plain(text, currency="INR"):
    """plain's inverse: '123.4' -> 12340 paise; None unless `text` is such an amount with at most the
    currency's decimals (none for JPY)."""
    found = _PLAIN.fullmatch(text)
    digits = exponent(currency)
    if not found or len(found[2] or "") > digits:
        return None
    return int(found[1]) * 10 ** digits + int((found[2] or "").ljust(digits, "0") or 0)


def init_app(app):
    """The template filters money, money_whole and indian_digits, for the checkout and the dashboard."""
    for f in (money, money_whole, indian_digits):
        app.add_template_filter(f)
