"""Hypothesis properties: the payment validators (Luhn, network prefixes, expiry, VPA)
against independent reference definitions, and refund arithmetic over the real API: however the
refunds of a payment are split, they never add up to more than its amount, and a refund is
accepted (201) exactly when its amount is at most what remains."""
import string
from datetime import date, datetime, timezone

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from helpers import MerchantApi, connect, new_merchant, paid_payment

from app import validation as v

PURE = settings(max_examples=300, deadline=None, database=None)
API = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

digits = st.text(alphabet="0123456789", min_size=1)


def check_digit(body):
    """The Luhn check digit that completes `body` (the textbook definition, written independently)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)  # doubled from the digit left of the check digit
        total += d // 10 + d % 10
    return str((10 - total % 10) % 10)


@st.composite
def valid_numbers(draw, min_len=13, max_len=19):
    length = draw(st.integers(min_len, max_len))
    body = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    return body + check_digit(body)


# ---- Luhn -------------------------------------------------------------------------------------

@PURE
@given(valid_numbers())
def test_luhn_accepts_every_completed_number(number):
    assert v.luhn_ok(number) and v.valid_card_number(number)


@PURE
@given(valid_numbers(), st.data())
def test_changing_one_digit_breaks_luhn(number, data):
    i = data.draw(st.integers(0, len(number) - 1), label="position")
    new = data.draw(st.sampled_from([d for d in "0123456789" if d != number[i]]), label="digit")
    mutated = number[:i] + new + number[i + 1:]
    assert not v.luhn_ok(mutated)
    assert not v.valid_card_number(mutated)


@PURE
@given(valid_numbers(), st.data())
def test_spaces_and_dashes_are_ignored(number, data):
    out = []
    for ch in number:
        out.append(data.draw(st.sampled_from(["", " ", "-", " - "]), label="separator"))
        out.append(ch)
    assert v.valid_card_number("".join(out))
    assert v.normalize_card_number("".join(out)) == number


@PURE
@given(st.one_of(valid_numbers(1, 12), valid_numbers(20, 30)))
def test_lengths_outside_13_to_19_fail_even_with_a_good_checksum(number):
    assert v.luhn_ok(number)
    assert not v.valid_card_number(number)


@PURE
@given(valid_numbers(), st.sampled_from(list("abcxyz+./_") + ["\u0663", "\uff11", "\n"]), st.data())
def test_any_other_character_fails(number, junk, data):
    i = data.draw(st.integers(0, len(number)), label="position")
    assert not v.valid_card_number(number[:i] + junk + number[i:])


# ---- network prefixes -------------------------------------------------------------------------

# The card networks, as (first, last, prefix length, network) ranges.
NETWORK_RANGES = [(4, 4, 1, "visa"), (51, 55, 2, "mastercard"), (2221, 2720, 4, "mastercard"),
                  (34, 34, 2, "amex"), (37, 37, 2, "amex"), (60, 60, 2, "rupay"), (65, 65, 2, "rupay"),
                  (81, 89, 2, "rupay")]


def expected_network(number):
    for first, last, n, network in NETWORK_RANGES:
        if first <= int(number[:n]) <= last:
            return network
    return "unknown"


@st.composite
def numbers_with_prefix(draw):
    first, last, n, network = draw(st.sampled_from(NETWORK_RANGES))
    prefix = str(draw(st.integers(first, last))).zfill(n)
    rest = draw(st.text(alphabet="0123456789", min_size=12 - n + 1, max_size=18 - n))
    body = prefix + rest
    return body + check_digit(body), network


@PURE
@given(numbers_with_prefix())
def test_every_spec_prefix_gives_its_network(pair):
    number, network = pair
    assert v.card_network(number) == network


@PURE
@given(st.text(alphabet="0123456789", min_size=13, max_size=19))
def test_network_of_any_number_matches_the_table(number):
    assert v.card_network(number) == expected_network(number)


@pytest.mark.parametrize("number,network", [
    ("4111111111111111", "visa"), ("5555555555554444", "mastercard"), ("2221000000000009", "mastercard"),
    ("2720999999999996", "mastercard"), ("2220999999999999", "unknown"), ("2721000000000004", "unknown"),
    ("378282246310005", "amex"), ("6011111111111117", "rupay"), ("6500000000000002", "rupay"),
    ("8100000000000000", "rupay"), ("8999999999999999", "rupay"), ("9000000000000000", "unknown"),
    ("5000000000000009", "unknown"), ("5600000000000000", "unknown"),
])
def test_network_boundaries(number, network):
    assert v.card_network(number) == network


# ---- expiry -------------------------------------------------------------------------------------

@PURE
@given(st.dates(date(2001, 1, 1), date(2198, 12, 31)), st.integers(1, 12), st.integers(2000, 2199),
       st.sampled_from(["int", "str", "yy-int", "yy-str"]))
def test_expiry_is_valid_from_the_current_month_on(today, month, year, form):
    if form.startswith("yy"):
        assume(2000 <= year <= 2099)
    given_year = {"int": year, "str": str(year), "yy-int": year - 2000, "yy-str": f"{year - 2000:02d}"}[form]
    given_month = month if form.endswith("int") else f"{month:02d}"
    assert v.expiry_ok(given_month, given_year, today=today) == ((year, month) >= (today.year, today.month))


@PURE
@given(st.one_of(st.integers(max_value=0), st.integers(min_value=13), st.just("13"), st.just("0"), st.just(""),
                 st.just("ab"), st.just(None), st.just(True), st.floats()), st.integers(2030, 2099))
def test_expiry_month_outside_1_to_12_fails(month, year):
    assert not v.expiry_ok(month, year)


def test_expiry_against_the_real_clock():
    now = datetime.now(timezone.utc)
    last_month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    assert v.expiry_ok(now.month, now.year)
    assert v.expiry_ok(f"{now.month:02d}", f"{now.year % 100:02d}")
    assert not v.expiry_ok(last_month[1], last_month[0])


# ---- VPA ----------------------------------------------------------------------------------------

LOCAL = string.ascii_letters + string.digits + "._-"
BANK = string.ascii_letters + string.digits


def expected_vpa(s):
    local, at, bank = s.partition("@")
    return bool(at) and local != "" and bank != "" and all(c in LOCAL for c in local) and all(c in BANK for c in bank)


@PURE
@given(st.text(alphabet=LOCAL, min_size=1), st.text(alphabet=BANK, min_size=1))
def test_well_formed_vpas_pass(local, bank):
    assert v.valid_vpa(f"{local}@{bank}")


@PURE
@given(st.text(alphabet=LOCAL + "@ +!\n\u00e9\u0663", max_size=20))
def test_vpa_matches_the_spec_pattern(s):
    assert v.valid_vpa(s) == expected_vpa(s)


@PURE
@given(st.text(alphabet=LOCAL, min_size=1), st.text(alphabet=BANK, min_size=1), st.sampled_from(["\n", " ", "@x"]))
def test_vpa_with_anything_after_the_bank_fails(local, bank, tail):
    assert not v.valid_vpa(f"{local}@{bank}{tail}")


# ---- refund arithmetic over the API --------------------------------------------------------------

@pytest.fixture(scope="module")
def shop(app):
    """A merchant of this module's own (its API over the test client) and a database connection,
    module-scoped: Hypothesis runs all examples of a test within one setup of its fixtures."""
    with connect(app) as db:
        yield MerchantApi(app.test_client(), new_merchant(db)), db


@API
@given(st.integers(100, 100_000), st.lists(st.one_of(st.none(), st.integers(1, 120_000)), min_size=1, max_size=8),
       st.data())
def test_refunds_never_exceed_the_payment(shop, worker, amount, requests, data):
    api, db = shop
    payment_id = paid_payment(api.client, db, worker, api.merchant, amount)[1]["id"]
    remaining = amount
    for i, wanted in enumerate(requests):
        if wanted is not None and data.draw(st.booleans(), label=f"within remaining #{i}") and remaining > 0:
            wanted = 1 + wanted % remaining  # aim inside the remaining amount too, not only at random
        path = data.draw(st.sampled_from(["refunds", "refund"]), label=f"path #{i}")
        r = api.post(f"/api/v1/payments/{payment_id}/{path}", json={} if wanted is None else {"amount": wanted})
        expected_ok = remaining > 0 and (wanted is None or wanted <= remaining)
        assert (r.status_code == 201) == expected_ok, (amount, remaining, wanted, r.status_code, r.get_json())
        if expected_ok:
            refund = r.get_json()
            assert refund["amount"] == (remaining if wanted is None else wanted)
            remaining -= refund["amount"]
        else:
            assert r.status_code == 400 and r.get_json()["error"]["code"] == "BAD_REQUEST_ERROR"
        if i % 3 == 2:
            worker.step()  # some refunds get processed on the way: processed ones count as well

    listed = api.get(f"/api/v1/payments/{payment_id}/refunds?limit=100").get_json()
    assert sum(r["amount"] for r in listed["data"]) == amount - remaining <= amount
    stored = db.value("SELECT COALESCE(sum(amount), 0) FROM refunds WHERE payment_id = %(p)s", {"p": payment_id})
    assert stored == amount - remaining


# ---- response schemas: the shortcut dump is marshmallow's dump ---------------------------------

def _out_schemas():
    from marshmallow import Schema

    from app import schemas

    found = [cls for cls in vars(schemas).values()
             if isinstance(cls, type) and issubclass(cls, schemas.Out) and cls is not schemas.Out]
    found += [schemas.list_of(schemas.PaymentOut)]
    return [(cls(), Schema._serialize) for cls in found]


values = st.one_of(
    st.none(), st.text(max_size=8), st.integers(-2**40, 2**40), st.booleans(), st.floats(allow_nan=False),
    st.datetimes(timezones=st.just(timezone.utc)), st.uuids(), st.dictionaries(st.text(max_size=4), st.integers()),
    st.lists(st.dictionaries(st.sampled_from(["id", "amount", "status"]), st.text(max_size=4)), max_size=2))


def _outcome(fn):
    try:
        return "ok", fn()
    except Exception as e:  # noqa: BLE001 - the same failure on both sides is what is compared
        return "raises", type(e)


@PURE
@given(data=st.data())
def test_every_response_schema_dumps_a_row_exactly_as_marshmallow_does(data):
    for schema, marshmallow_serialize in _out_schemas():
        names = [field.attribute or name for name, field in schema.dump_fields.items()]  # the row's keys
        row = data.draw(st.dictionaries(st.sampled_from(names + ["extra"]), values))
        assert _outcome(lambda: schema.dump(row)) == _outcome(lambda: marshmallow_serialize(schema, row)), \
            (type(schema).__name__, row)
        assert _outcome(lambda: schema.dump([row, row], many=True)) == \
            _outcome(lambda: [marshmallow_serialize(schema, row)] * 2)
