"""Public ids: a prefix and 16 random alphanumerics (order_…, pay_…, rfnd_…, evt_…)."""
import secrets

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_id(prefix):
    # 96 random bits rendered as 16 base-62 digits (62**16 > 2**95): unguessable, fixed length.
    n = secrets.randbits(95)
    out = []
    for _ in range(16):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return prefix + "".join(out)
