"""The official Razorpay Node SDK (npm razorpay 2.9.8, tests/node) against a live gateway: the
routes it calls, its error handling, and polling on a keep-alive connection every 2 s."""
import json
import subprocess

import pytest

from helpers import NODE_DIR, create_payment_over_http, node_modules, settle


@pytest.fixture(scope="session")
def node_sdk():
    """tests/node with its locked dependencies installed (npm ci, once)."""
    try:
        node_modules()
    except RuntimeError as e:
        pytest.fail(str(e))
    return NODE_DIR / "sdk_flow.js"


def test_the_node_sdk_works_against_the_gateway(node_sdk, live_api, make_merchant, db, worker):
    merchant = make_merchant()
    payment = create_payment_over_http(live_api.url, merchant, 30000, vpa="node@okaxis")
    assert settle(worker, db, payment["id"]) == "success"

    run = subprocess.run(["node", str(node_sdk), live_api.url, merchant["api_key"], merchant["api_secret"],
                          payment["id"]], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)

    assert out["order"]["id"].startswith("order_") and out["fetchedOrder"]["notes"] == {"sdk": "node"}
    assert out["orders"]["data"][0]["id"] == out["order"]["id"]
    # Every poll answered: none lost to a connection the server closed as the client reused it.
    assert out["polls"] == ["success"] * 6
    assert out["captured"]["captured"] is True
    refund = out["refund"]
    assert (refund["amount"], refund["notes"], refund["receipt"]) == (100, {"why": "node"}, "node_r1")
    assert out["refundById"]["id"] == out["refundFetched"]["id"] == refund["id"]
    assert refund["id"] in [r["id"] for r in out["refunds"]["data"]]
    assert [r["id"] for r in out["paymentRefunds"]["data"]] == [refund["id"]]
    assert [p["id"] for p in out["orderPayments"]["data"]] == [payment["id"]]
    assert out["overRefund"]["status"] == 400
    assert out["overRefund"]["error"]["description"] == "Refund amount exceeds available amount"
    assert payment["id"] in [p["id"] for p in out["payments"]["data"]]
    assert out["badSecret"]["status"] == 401
