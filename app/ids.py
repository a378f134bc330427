"""Public ids: a prefix and 16 alphanumerics (order_…, pay_…, rfnd_…, evt_…): the minute the id
was made, then 11 random base-62 digits.

Time first, as in Razorpay's ids: a new row's key lands beside the keys of the last few minutes in
its primary-key index (and a payment's order_id beside the recent orders'), not on a random page
of the whole index. A random key changes a different page on nearly every insert, and after each
checkpoint the first change of a page writes all 8 KB of it to the WAL. Orders created and paid
right after a CHECKPOINT, beside 300,000 earlier ones: 7.8 KB of WAL per order and payment with
random ids, 1.7 KB with these (docs/decisions/001-benchmark-history.md).

The minute is 5 base-36 digits (0-9, a-z: one order under every collation, C or a language's)
counted from 2025-01-01 UTC, good until the year 2139. The 11 random digits carry 65 bits, so an
id stays unguessable even to someone who knows when it was made (the checkout's public views are
addressed by ids)."""
import re
import secrets
import time

from .errors import NotFound

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"
EPOCH = 1735689600  # 2025-01-01T00:00:00Z
MINUTE_DIGITS, RANDOM_DIGITS = 5, 11
_MINUTES = 36 ** MINUTE_DIGITS
_RANDOM = 62 ** RANDOM_DIGITS


def _digits(n, alphabet, width):
    base = len(alphabet)
    out = []
    for _ in range(width):
        n, r = divmod(n, base)
        out.append(alphabet[r])
    return "".join(reversed(out))


def new_id(prefix, now=None):
    minute = int(((time.time() if now is None else now) - EPOCH) // 60)
    minute = min(max(minute, 0), _MINUTES - 1)  # a clock before 2025 (or after 2139) still makes valid ids
    return prefix + _digits(minute, _BASE36, MINUTE_DIGITS) + _digits(secrets.randbelow(_RANDOM), BASE62, RANDOM_DIGITS)


_BODY = re.compile(r"[A-Za-z0-9]{16}")


def is_id(prefix, value):
    """Whether `value` has the shape of an id with this prefix."""
    return isinstance(value, str) and value.startswith(prefix) and _BODY.fullmatch(value, len(prefix)) is not None


def check(prefix, value, what, field=None):
    """404 unless `value` has the shape of an id with this prefix: nothing else can exist, and a NUL
    byte in a path or body would make PostgreSQL raise (a 500, not a 404)."""
    if not is_id(prefix, value):
        raise NotFound(f"{what} not found.", field=field)
