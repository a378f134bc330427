"""The test merchant: receives webhooks, verifies both signatures, dedupes by webhook-id,
and runs a demo shop that creates orders server-side and pays with checkout.js."""
import hashlib
import hmac
import json
import logging
import os
import threading
import time

import requests
from flask import Flask, jsonify, render_template, request
from standardwebhooks import Webhook, WebhookVerificationError
from standardwebhooks.webhooks import EmptyWebhookSecretError

log = logging.getLogger("test_merchant")

PRICE = 50000  # the demo shop's one product, a cup of coffee (paise): its server names the price


def create_app(config=None):
    app = Flask(__name__, template_folder="templates")
    app.config.update(
        WEBHOOK_SECRET=os.environ.get("TEST_MERCHANT_WEBHOOK_SECRET", "whsec_test_abc123"),
        GATEWAY_URL=os.environ.get("GATEWAY_URL", f"http://localhost:{os.environ.get('PORT', '8000')}"),
        API_KEY=os.environ.get("TEST_MERCHANT_API_KEY", "key_test_abc123"),
        API_SECRET=os.environ.get("TEST_MERCHANT_API_SECRET", "secret_test_xyz789"),
        PORT=os.environ.get("TEST_MERCHANT_PORT", "3002"),
        STATUS=None,  # tests may force an answer status (e.g. 500) through POST /control
    )
    app.config.update(config or {})
    lock = threading.Lock()
    deliveries = []      # every request received, verified or not
    seen = set()         # webhook-ids already processed (deduplication)
    shop_orders = set()  # ids of the orders this shop created: only their payments are its sales

    @app.post("/webhook")
    def webhook():
        body = request.get_data()
        secret = app.config["WEBHOOK_SECRET"]
        expected_hex = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        hex_ok = hmac.compare_digest(expected_hex, request.headers.get("X-Webhook-Signature", ""))
        try:
            Webhook(secret).verify(body, dict(request.headers))
            std_ok = True
        except (WebhookVerificationError, ValueError, EmptyWebhookSecretError):  # ValueError: undecodable secret
            std_ok = False
        event_id = request.headers.get("webhook-id")
        with lock:
            duplicate = event_id in seen
            forced = app.config["STATUS"]
            status = 401 if not (hex_ok and std_ok) else forced or 200
            if status == 200:
                seen.add(event_id)
            try:
                event = json.loads(body).get("event")
            except ValueError:
                event = None
            deliveries.append({"webhook_id": event_id, "event": event, "received_at": time.time(),
                               "hex_signature_valid": hex_ok, "standard_signature_valid": std_ok,
                               "duplicate": duplicate, "status": status, "body": body.decode(errors="replace")})
        if status == 401:
            return jsonify(error="invalid signature"), 401
        if status != 200:
            return jsonify(error="forced failure"), status
        return jsonify(received=True, duplicate=duplicate)

    @app.get("/logs")
    def logs():
        with lock:
            return jsonify(deliveries=list(deliveries), count=len(deliveries))

    @app.post("/control")
    def control():
        """Test hook: {"status": 500} makes /webhook answer 500; {"status": null} restores; {"clear": true}."""
        data = request.get_json(force=True, silent=True) or {}
        with lock:
            if "status" in data:
                app.config["STATUS"] = data["status"]
            if data.get("clear"):
                deliveries.clear()
                seen.clear()
        return jsonify(status=app.config["STATUS"])

    @app.get("/")
    def shop():
        return render_template("shop.html", gateway=app.config["GATEWAY_URL"], key=app.config["API_KEY"])

    @app.post("/create-order")
    def create_order():
        """The shop's server creates the order with its secret (never exposed to the browser), at
        its own price: an amount the browser sends is not trusted."""
        r = requests.post(f"{app.config['GATEWAY_URL']}/api/v1/orders", json={"amount": PRICE, "currency": "INR"},
                          auth=(app.config["API_KEY"], app.config["API_SECRET"]), timeout=10)
        if r.ok:
            with lock:
                shop_orders.add(r.json()["id"])
        return jsonify(r.json()), r.status_code

    @app.post("/verify")
    def verify():
        """The shop trusts a success only once its signature checks out with its own API secret
        (HMAC-SHA256 of "order_id|payment_id", Razorpay's scheme) for an order it created itself:
        the browser could be lying, or showing a signed payment of another, cheaper order."""
        data = request.get_json(silent=True) or {}
        order_id, payment_id, signature = (data.get(k) for k in ("orderId", "paymentId", "signature"))
        if not all(isinstance(v, str) for v in (order_id, payment_id, signature)):
            return jsonify(verified=False, error="orderId, paymentId and signature are required"), 400
        with lock:
            ours = order_id in shop_orders
        if not ours:
            return jsonify(verified=False, error="not an order of this shop"), 400
        expected = hmac.new(app.config["API_SECRET"].encode(), f"{order_id}|{payment_id}".encode(),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return jsonify(verified=False, error="signature does not match"), 400
        return jsonify(verified=True, paymentId=payment_id, orderId=order_id)

    print(f"test merchant: webhook URL http://localhost:{app.config['PORT']}/webhook, "
          f"secret {app.config['WEBHOOK_SECRET'][:8]}… (TEST_MERCHANT_WEBHOOK_SECRET)", flush=True)
    return app
