"""Public ids: the contract's shape (prefix + 16 alphanumerics), creation order first, unguessable rest."""
import random
import re
import time

import pytest

from app import ids
from app.errors import NotFound
from app.ids import BASE62, EPOCH, new_id
from helpers import create_order, pay

SHAPE = re.compile(r"^(order|pay|rfnd|evt)_[0-9a-z]{5}[A-Za-z0-9]{11}$")


@pytest.mark.parametrize("prefix", ["order_", "pay_", "rfnd_", "evt_"])
def test_ids_have_the_spec_shape(prefix):
    ids = [new_id(prefix) for _ in range(200)]
    assert all(SHAPE.match(i) and i.startswith(prefix) and len(i) == len(prefix) + 16 for i in ids)


def test_ids_made_in_one_minute_are_distinct_and_random_after_the_minute():
    now = EPOCH + 86400 * 400 + 7
    ids = [new_id("pay_", now) for _ in range(20000)]
    assert len(set(ids)) == len(ids)
    assert len({i[4:9] for i in ids}) == 1  # the minute
    tails = "".join(i[9:] for i in ids)
    assert set(tails) == set(BASE62)


def test_ids_sort_in_creation_order_across_minutes_in_python_and_postgresql(db):
    """A later minute sorts after every earlier one, in Python and under the database's collation
    and "C": new keys go to the right end of an index, and listing by id is listing by time."""
    made = [new_id("order_", EPOCH + minute * 60 + 30) for minute in range(0, 36 ** 3, 97)]
    assert made == sorted(made)
    shuffled = made[:]
    random.Random(3).shuffle(shuffled)
    for collate in ("", ' COLLATE "C"'):
        got = db.values(f"SELECT id FROM unnest(CAST(%(ids)s AS text[])) AS t(id) ORDER BY id{collate}", {"ids": shuffled})
        assert got == made


def test_a_clock_outside_the_id_range_still_makes_valid_ids():
    assert new_id("pay_", EPOCH - 3600)[4:9] == "00000"
    assert new_id("pay_", EPOCH + 200 * 365 * 86400)[4:9] == "zzzzz"
    assert new_id("pay_", EPOCH + 60)[4:9] == "00001"


def test_ids_are_made_with_the_current_minute():
    before, now, after = new_id("pay_", time.time() - 60), new_id("pay_"), new_id("pay_", time.time() + 60)
    assert before[:9] < now[:9] < after[:9]


def test_orders_and_payments_created_through_the_api_carry_their_minute(client, merchant):
    """What a merchant sees: a later order's id sorts after an earlier one's, and an object's id
    starts with the minute it was created in (or the one before, if a minute ended meanwhile)."""
    earlier = new_id("order_", time.time() - 60)
    order = create_order(client, merchant)
    payment = pay(client, merchant, order["id"])
    now = time.time()
    assert earlier < order["id"]
    for obj, prefix in ((order, "order_"), (payment, "pay_")):
        head = len(prefix) + 5
        assert obj["id"][:head] in (new_id(prefix, now - 60)[:head], new_id(prefix, now)[:head])


@pytest.mark.parametrize("value", ["pay_", "pay_0ls1n1Ut0kp1pfV", "pay_0ls1n1Ut0kp1pfVhh", "order_0ls1n1Ut0kp1pfVh",
                                   "pay_0ls1n1Ut0kp1pf\x00h", "pay_0ls1n1Ut0kp1pf-h", None, 12, "pay_0ls1n1Ut0kp1pfV\n"])
def test_anything_but_an_id_of_the_kind_is_not_found(value):
    with pytest.raises(NotFound) as refused:
        ids.check("pay_", value, "Payment", field="payment_id")
    assert (refused.value.description, refused.value.field) == ("Payment not found.", "payment_id")
    ids.check("pay_", new_id("pay_"), "Payment")  # a real one passes
