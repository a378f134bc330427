"""Money as text, for the templates only: amounts are integer minor units (paise) everywhere else."""


def indian_digits(n):
    """1234567 -> '12,34,567': the last three digits, then groups of two."""
    s = str(abs(int(n)))
    head, tail = s[:-3], s[-3:]
    groups = []
    while len(head) > 2:
        groups.insert(0, head[-2:])
        head = head[:-2]
    return ("-" if n < 0 else "") + ",".join(([head] if head else []) + groups + [tail])


def money(paise, currency="INR"):
    """Integer paise -> '₹5,00,000.00' (Indian grouping); other currencies: 'USD 1,000.50'."""
    units, rest = divmod(int(paise), 100)
    amount = f"{indian_digits(units)}.{rest:02d}" if currency == "INR" else f"{units:,}.{rest:02d}"
    return f"₹{amount}" if currency == "INR" else f"{currency} {amount}"


def money_whole(paise, currency="INR"):
    """Integer paise -> '₹5,00,000' (rounded to the rupee, for headline totals)."""
    units = (int(paise) + 50) // 100
    return f"₹{indian_digits(units)}" if currency == "INR" else f"{currency} {units:,}"


def init_app(app):
    """The template filters money, money_whole and indian_digits, for the checkout and the dashboard."""
    for f in (money, money_whole, indian_digits):
        app.add_template_filter(f)
