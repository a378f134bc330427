"""GET /openapi.json: the OpenAPI 3.1 description of the JSON API and of the webhooks it sends.

Generated with apispec from the marshmallow schemas the views load and dump with (app/schemas.py),
so field names, types, limits, enums and nullability cannot drift from the code. What the schemas
cannot say (paths, auth, status codes, the error envelope) is the declarative OPERATIONS table.
The `webhooks` section (OpenAPI 3.1; apispec has no helper for it, so its operations go through
the plugin's resolver by hand) is one entry per event of app/events.py's CATALOG."""
import copy
import functools

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, jsonify
from marshmallow import fields

from . import events
from . import schemas as s
from .idempotency import MAX_KEY_LENGTH
from .outbound import TIMEOUT_SECONDS
from .validation import VPA_RE
from .webhooks import MAX_ATTEMPTS as WEBHOOK_ATTEMPTS

OPENAPI_VERSION = "3.1.0"
TIME_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$"

# ---- building blocks of the table --------------------------------------------------------------

AUTH = [{"ApiKey": [], "ApiSecret": []}, {"BasicAuth": []}]
NO_AUTH = []

ERRORS = {
    400: "Invalid request: `BAD_REQUEST_ERROR`, or `INVALID_VPA`, `INVALID_CARD`, `EXPIRED_CARD` for payment "
         "details. `error.field` names the field at fault, when there is one.",
    401: "`AUTHENTICATION_ERROR`: missing or wrong API key/secret.",
    404: "`NOT_FOUND_ERROR`: no such object for this merchant (another merchant's objects are not found either).",
    409: "`BAD_REQUEST_ERROR`: the conflict is described (idempotency key reused with another body, or still in "
         "flight; a payment of the order in progress; a webhook delivery in progress).",
    413: "`BAD_REQUEST_ERROR`: the request body is larger than 64 KB.",
    415: "`BAD_REQUEST_ERROR`: the body is not `application/json` (a form content type is refused on every "
         "write, body-less ones included).",
    429: "`TOO_MANY_REQUESTS`: the API key used up `API_RATE_LIMIT`; `Retry-After` says in how many seconds "
         "to retry (every answer to a limited key carries `RateLimit-Limit`, `RateLimit-Remaining` and "
         "`RateLimit-Reset`).",
    503: "`SERVER_ERROR`: the database is unavailable; retry shortly.",
}

ERROR_CODES = ["AUTHENTICATION_ERROR", "BAD_REQUEST_ERROR", "NOT_FOUND_ERROR", "INVALID_VPA", "INVALID_CARD",
               "EXPIRED_CARD", "TOO_MANY_REQUESTS", "SERVER_ERROR", "PAYMENT_FAILED"]


def _path_param(name, what):
    return {"in": "path", "name": name, "required": True, "schema": {"type": "string"},
            "description": f"The {what} id."}


def _header(name, description):
    # No control characters (idempotency.once refuses them), at most MAX_KEY_LENGTH characters.
    return {"in": "header", "name": name, "required": False, "description": description,
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH,
                       "pattern": r"^[^\u0000-\u001f\u007f]+$"}}


IDEMPOTENCY_KEY = _header(
    "Idempotency-Key", "Replays the stored response (status and body) of a successful request with the same key "
                       "for 24 h; the same key with a different body is a 409.")
REFUND_IDEMPOTENCY = _header("X-Refund-Idempotency", "Accepted instead of `Idempotency-Key` for refunds.")
# The list query, from the views' own ListQuery schema (expanded to one parameter per field).
PAGING = {"in": "query", "schema": s.ListQuery}
PAGING_WITH_STATUS = {"in": "query", "schema": s.PaymentListQuery}
ORDER_ID = _path_param("order_id", "order (`order_…`)")
PAYMENT_ID = _path_param("payment_id", "payment (`pay_…`)")
REFUND_ID = _path_param("refund_id", "refund (`rfnd_…`)")
LOG_ID = _path_param("log_id", "webhook log (UUID)")
ENDPOINT_ID = _path_param("endpoint_id", "webhook endpoint (`we_…`)")
EVENT_ID = _path_param("event_id", "event (`evt_…`)")
EVENT_PAGING = {"in": "query", "schema": s.EventListQuery}

QUERY_DESCRIPTIONS = {
    "limit": "Page size: 10 by default, values above 100 are capped to 100.",
    "count": "Alias of `limit`.",
    "offset": "Objects to skip: 0 by default.",
    "skip": "Alias of `offset`.",
    "from": "Only objects created at or after this time (unix seconds; whole seconds, inclusive).",
    "to": "Only objects created at or before this time (unix seconds; the whole second is included).",
    "status": "Only payments with this status.",
    "event": "Only events of this name (see the `webhooks` section).",
}


def _link(operation_id, description, body=None, **parameters):
    """An OpenAPI link: how a response's fields feed a following call (clients and stateful fuzzers)."""
    link = {"operationId": operation_id, "description": description}
    if parameters:
        link["parameters"] = parameters
    if body:
        link["requestBody"] = body
    return link


NEW_ID = "$response.body#/id"
PAY_BY_UPI = {"order_id": NEW_ID, "amount": "$response.body#/amount", "currency": "$response.body#/currency",
              "method": "upi"}
ORDER_LINKS = {
    "GetOrder": _link("getOrder", "Fetch the new order.", order_id=NEW_ID),
    "GetOrderPublic": _link("getOrderPublic", "The checkout's view of the order.", order_id=NEW_ID),
    "PayOrder": _link("createPayment", "Pay the order (by UPI here; any method works).", body=PAY_BY_UPI),
    "PayOrderAtCheckout": _link("createPaymentPublic", "Pay the order from the checkout.", body=PAY_BY_UPI),
    "ListOrderPayments": _link("listOrderPayments", "The order's payments.", order_id=NEW_ID),
}
PAYMENT_LINKS = {
    "GetPayment": _link("getPayment", "Fetch the payment.", payment_id=NEW_ID),
    "GetPaymentPublic": _link("getPaymentPublic", "Poll the payment's status.", payment_id=NEW_ID),
    "CapturePayment": _link("capturePayment", "Capture the payment once it succeeded.",
                            body={"amount": "$response.body#/amount"}, payment_id=NEW_ID),
    "RefundPayment": _link("createRefund", "Refund the payment once it succeeded.", payment_id=NEW_ID),
    "RefundPaymentAlias": _link("createRefundAlias", "Refund the payment (alias).", payment_id=NEW_ID),
    "RefundPaymentByBody": _link("createRefundForPayment", "Refund the payment, named in the body.",
                                 body={"payment_id": NEW_ID}),
    "ListRefunds": _link("listRefunds", "The payment's refunds.", payment_id=NEW_ID),
}
REFUND_LINKS = {
    "GetRefund": _link("getRefund", "Fetch the refund.", refund_id=NEW_ID),
    "GetPayment": _link("getPayment", "The refunded payment.", payment_id="$response.body#/payment_id"),
    "GetPaymentRefund": _link("getPaymentRefund", "Fetch the refund through its payment.", refund_id=NEW_ID,
                              payment_id="$response.body#/payment_id"),
}
LOG_LINKS = {
    "RetryWebhook": _link("retryWebhook", "Deliver the newest webhook again.", log_id="$response.body#/data/0/id"),
}

REFUND_RULES = ("Without `amount`, the rest of the payment is refunded (an empty body is allowed). 400 "
                "`Refund amount exceeds available amount` when the amount is more than the payment's amount less "
                "its pending and processed refunds (a fully refunded payment included).")
LIST = ("Newest first. `limit` defaults to 10; values above 100 are capped to 100. `from` and `to` bound "
        "`created_at` (unix seconds, both inclusive at whole seconds). Any other query parameter is a 400 "
        "naming it.")

# Every operation of the API. `ok` maps the success status (and, for /health, 503) to its schema;
# `errors` lists the error statuses, each answered with the ErrorOut envelope; `links` says which
# later calls take ids from a success response. 401 is implied by
# auth, 503 (database down) by every operation but /health, which reports it in its own body.
OPERATIONS = [
    dict(method="get", path="/health", id="getHealth", tag="Health", auth=NO_AUTH,
         summary="Service health: database and worker.",
         ok={200: (s.HealthOut, "Healthy."), 503: (s.HealthOut, "The database is unreachable.")}, errors=[]),
    dict(method="get", path="/api/v1/test/merchant", id="getTestMerchant", tag="Test", auth=NO_AUTH,
         summary="The seeded test merchant.", ok={200: s.SeededMerchantOut}, errors=[404]),
    dict(method="get", path="/api/v1/test/jobs/status", id="getJobsStatus", tag="Test", auth=NO_AUTH,
         summary="Job queue counts and the worker's heartbeat status.", ok={200: s.JobsStatusOut}, errors=[]),

    dict(method="post", path="/api/v1/orders", id="createOrder", tag="Orders", auth=AUTH,
         summary="Create an order.", body=s.OrderCreate, params=[IDEMPOTENCY_KEY],
         ok={201: s.OrderOut}, errors=[400, 409, 413, 415], links={201: ORDER_LINKS}),
    dict(method="get", path="/api/v1/orders", id="listOrders", tag="Orders", auth=AUTH,
         summary="List the merchant's orders.", description=LIST, params=[PAGING],
         ok={200: s.list_of(s.OrderOut)}, errors=[400]),
    dict(method="get", path="/api/v1/orders/{order_id}", id="getOrder", tag="Orders", auth=AUTH,
         summary="Fetch an order.", params=[ORDER_ID], ok={200: s.OrderOut}, errors=[404]),
    dict(method="get", path="/api/v1/orders/{order_id}/payments", id="listOrderPayments", tag="Orders", auth=AUTH,
         summary="List the payments of one of the merchant's orders.", description=LIST,
         params=[ORDER_ID, PAGING], ok={200: s.list_of(s.PaymentOut)}, errors=[400, 404]),
    dict(method="get", path="/api/v1/orders/{order_id}/public", id="getOrderPublic", tag="Checkout", auth=NO_AUTH,
         summary="What the checkout page shows of an order.", params=[ORDER_ID],
         ok={200: s.OrderPublicOut}, errors=[404]),

    dict(method="post", path="/api/v1/payments", id="createPayment", tag="Payments", auth=AUTH,
         summary="Pay an order by UPI (`vpa`) or card (`card`); answered at once with status `pending`.",
         description="Amount and currency come from the order; an `amount` or `currency` that differs is a 400. "
                     "`vpa` is required for `upi`, `card` for `card`. One payment of an order may be pending or "
                     "processing at a time (409 otherwise); an order takes at most 20 payments (400).",
         body=s.PaymentCreate, params=[IDEMPOTENCY_KEY], ok={201: s.PaymentOut}, errors=[400, 404, 409, 413, 415],
         links={201: PAYMENT_LINKS}),
    dict(method="post", path="/api/v1/payments/public", id="createPaymentPublic", tag="Checkout", auth=NO_AUTH,
         summary="The checkout page's payment: the merchant is the order's.", body=s.PaymentCreate,
         description="An `Idempotency-Key` is scoped to the order. The rules of `createPayment` apply.",
         params=[IDEMPOTENCY_KEY],
         ok={201: s.PaymentPublicOut}, errors=[400, 404, 409, 413, 415],
         links={201: {"GetPaymentPublic": PAYMENT_LINKS["GetPaymentPublic"]}}),
    dict(method="get", path="/api/v1/payments", id="listPayments", tag="Payments", auth=AUTH,
         summary="List the merchant's payments.", description=LIST + " `status` filters by payment status.",
         params=[PAGING_WITH_STATUS], ok={200: s.list_of(s.PaymentOut)}, errors=[400]),
    dict(method="get", path="/api/v1/payments/{payment_id}", id="getPayment", tag="Payments", auth=AUTH,
         summary="Fetch a payment.", params=[PAYMENT_ID], ok={200: s.PaymentOut}, errors=[404]),
    dict(method="get", path="/api/v1/payments/{payment_id}/public", id="getPaymentPublic", tag="Checkout",
         auth=NO_AUTH, summary="A payment's status, for the checkout page's polling.", params=[PAYMENT_ID],
         ok={200: s.PaymentPublicOut}, errors=[404]),
    dict(method="post", path="/api/v1/payments/{payment_id}/capture", id="capturePayment", tag="Payments",
         auth=AUTH, summary="Capture a successful payment (the amount must be the payment's).",
         description="400 `Payment not in capturable state` unless the payment's status is `success`.",
         params=[PAYMENT_ID], body=s.CaptureIn, ok={200: s.PaymentOut}, errors=[400, 404, 413, 415],
         links={200: {"RefundPayment": PAYMENT_LINKS["RefundPayment"]}}),

    dict(method="post", path="/api/v1/payments/{payment_id}/refunds", id="createRefund", tag="Refunds", auth=AUTH,
         summary="Refund a successful payment, wholly or in part.",
         description=REFUND_RULES,
         params=[PAYMENT_ID, IDEMPOTENCY_KEY, REFUND_IDEMPOTENCY], body=s.RefundCreate, body_required=False,
         ok={201: s.RefundOut}, errors=[400, 404, 409, 413, 415], links={201: REFUND_LINKS}),
    dict(method="post", path="/api/v1/payments/{payment_id}/refund", id="createRefundAlias", tag="Refunds",
         auth=AUTH, summary="Alias of `POST /api/v1/payments/{payment_id}/refunds`.",
         params=[PAYMENT_ID, IDEMPOTENCY_KEY, REFUND_IDEMPOTENCY], body=s.RefundCreate, body_required=False,
         ok={201: s.RefundOut}, errors=[400, 404, 409, 413, 415], links={201: REFUND_LINKS}),
    dict(method="get", path="/api/v1/payments/{payment_id}/refunds", id="listRefunds", tag="Refunds", auth=AUTH,
         summary="List a payment's refunds.", description=LIST, params=[PAYMENT_ID, PAGING],
         ok={200: s.list_of(s.RefundOut)}, errors=[400, 404]),
    dict(method="get", path="/api/v1/payments/{payment_id}/refunds/{refund_id}", id="getPaymentRefund",
         tag="Refunds", auth=AUTH, summary="Fetch one refund of a payment (404 if it is another payment's).",
         params=[PAYMENT_ID, REFUND_ID], ok={200: s.RefundOut}, errors=[404]),
    dict(method="post", path="/api/v1/refunds", id="createRefundForPayment", tag="Refunds", auth=AUTH,
         summary="Refund a successful payment named in the body; otherwise as "
                 "`POST /api/v1/payments/{payment_id}/refunds`.",
         description=REFUND_RULES.replace(" (an empty body is allowed)", ""),
         params=[IDEMPOTENCY_KEY, REFUND_IDEMPOTENCY], body=s.RefundCreateForPayment,
         ok={201: s.RefundOut}, errors=[400, 404, 409, 413, 415], links={201: REFUND_LINKS}),
    dict(method="get", path="/api/v1/refunds", id="listAllRefunds", tag="Refunds", auth=AUTH,
         summary="List the merchant's refunds.", description=LIST, params=[PAGING],
         ok={200: s.list_of(s.RefundOut)}, errors=[400]),
    dict(method="get", path="/api/v1/refunds/{refund_id}", id="getRefund", tag="Refunds", auth=AUTH,
         summary="Fetch a refund.", params=[REFUND_ID], ok={200: s.RefundOut}, errors=[404]),

    dict(method="get", path="/api/v1/webhooks", id="listWebhookLogs", tag="Webhooks", auth=AUTH,
         summary="The merchant's webhook deliveries.", description=LIST, params=[PAGING],
         ok={200: s.list_of(s.WebhookLogOut)}, errors=[400], links={200: LOG_LINKS}),
    dict(method="post", path="/api/v1/webhooks/{log_id}/retry", id="retryWebhook", tag="Webhooks", auth=AUTH,
         summary="Deliver a webhook again now, with attempts reset to 0.", params=[LOG_ID],
         ok={200: s.WebhookRetryOut}, errors=[404, 409, 415]),
    dict(method="get", path="/api/v1/webhooks/config", id="getWebhookConfig", tag="Webhooks", auth=AUTH,
         summary="The webhook URL and signing secret.", ok={200: s.WebhookConfigOut}, errors=[]),
    dict(method="put", path="/api/v1/webhooks/config", id="setWebhookConfig", tag="Webhooks", auth=AUTH,
         summary="Set the webhook URL (`null` or `\"\"` clears it); http(s) only.", body=s.WebhookConfigIn,
         ok={200: s.WebhookConfigOut}, errors=[400, 413, 415]),
    dict(method="post", path="/api/v1/webhooks/config", id="setWebhookConfigPost", tag="Webhooks", auth=AUTH,
         summary="Alias of `PUT /api/v1/webhooks/config` for HTML forms and simple clients.",
         body=s.WebhookConfigIn, ok={200: s.WebhookConfigOut}, errors=[400, 413, 415]),
    dict(method="post", path="/api/v1/webhooks/config/secret", id="regenerateWebhookSecret", tag="Webhooks",
         auth=AUTH, summary="Replace the webhook signing secret (the first endpoint's); returns the new one.",
         description="At once, unless the body gives `expire_previous_in`: then as "
                     "`POST /api/v1/webhooks/endpoints/{endpoint_id}/secret`.",
         body=s.SecretRotation, body_required=False, ok={200: s.WebhookConfigOut}, errors=[400, 413, 415]),
    dict(method="get", path="/api/v1/webhooks/endpoints", id="listWebhookEndpoints", tag="Webhooks", auth=AUTH,
         summary="The merchant's webhook endpoints; secrets left out. The first one (`/webhooks/config`'s) is "
                 "the oldest.",
         description=LIST, params=[PAGING], ok={200: s.list_of(s.EndpointOut)}, errors=[400]),
    dict(method="post", path="/api/v1/webhooks/endpoints", id="createWebhookEndpoint", tag="Webhooks", auth=AUTH,
         summary="Add an endpoint with its own signing secret; it gets the events it lists (`[\"*\"]`: all).",
         description="A merchant with no endpoint gets it as its first one, the URL of `/webhooks/config`. "
                     "The URL is checked like `/webhooks/config`'s. A merchant has 20 endpoints at most.",
         body=s.EndpointCreate, ok={201: s.EndpointWithSecretOut}, errors=[400, 413, 415]),
    dict(method="get", path="/api/v1/webhooks/endpoints/{endpoint_id}", id="getWebhookEndpoint", tag="Webhooks",
         auth=AUTH, summary="One endpoint, with its secret.", params=[ENDPOINT_ID],
         ok={200: s.EndpointWithSecretOut}, errors=[404]),
    dict(method="patch", path="/api/v1/webhooks/endpoints/{endpoint_id}", id="updateWebhookEndpoint", tag="Webhooks",
         auth=AUTH, summary="Change an endpoint's URL, events, description or `enabled`.",
         description="Events raised while an endpoint is disabled are not queued for it.",
         params=[ENDPOINT_ID], body=s.EndpointUpdate, ok={200: s.EndpointWithSecretOut}, errors=[400, 404, 413, 415]),
    dict(method="delete", path="/api/v1/webhooks/endpoints/{endpoint_id}", id="deleteWebhookEndpoint",
         tag="Webhooks", auth=AUTH, summary="Remove an endpoint; its pending deliveries are cancelled.",
         description="Removing the first endpoint makes the next one first (its URL and secret become "
                     "`/webhooks/config`'s).", params=[ENDPOINT_ID], ok={204: None}, errors=[404, 415]),
    dict(method="post", path="/api/v1/webhooks/endpoints/{endpoint_id}/secret", id="rotateWebhookEndpointSecret",
         tag="Webhooks", auth=AUTH, summary="Rotate the endpoint's signing secret.",
         description="Until `expire_previous_in` seconds have passed (default 86400) every delivery carries both "
                     "signatures: `webhook-signature: v1,<new> v1,<old>`, `X-Webhook-Signature` with the new secret "
                     "and `X-Webhook-Signature-Previous` with the old one.",
         params=[ENDPOINT_ID], body=s.SecretRotation, body_required=False, ok={200: s.EndpointWithSecretOut},
         errors=[400, 404, 413, 415]),
    dict(method="post", path="/api/v1/webhooks/endpoints/{endpoint_id}/replay", id="replayWebhookEndpoint",
         tag="Webhooks", auth=AUTH, summary="Deliver again to this endpoint the events raised since a time.",
         description="Every event of the merchant raised at or after `since` that the endpoint subscribes to now "
                     "(with `status: failed`, only those whose delivery to it used up its attempts), through the "
                     "normal delivery path: the same event id and body, signed with the endpoint's current "
                     "secret(s). Events are kept `WEBHOOK_LOG_RETENTION_DAYS` days.",
         params=[ENDPOINT_ID], body=s.Replay, ok={202: s.ReplayOut}, errors=[400, 404, 413, 415]),
    dict(method="get", path="/api/v1/events", id="listEvents", tag="Webhooks", auth=AUTH,
         summary="The merchant's events, newest first: one per event whatever the endpoints it went to.",
         description=LIST + " Kept `WEBHOOK_LOG_RETENTION_DAYS` days; recorded while the merchant has a webhook "
                            "endpoint.", params=[EVENT_PAGING], ok={200: s.list_of(s.EventOut)}, errors=[400]),
    dict(method="get", path="/api/v1/events/{event_id}", id="getEvent", tag="Webhooks", auth=AUTH,
         summary="One event.", params=[EVENT_ID], ok={200: s.EventOut}, errors=[404]),
    dict(method="post", path="/api/v1/webhooks/test", id="sendTestWebhook", tag="Webhooks", auth=AUTH,
         summary=f"Queue a `{events.WEBHOOK_TEST}` event to the configured URL.",
         description="400 when no webhook URL is configured.",
         ok={202: s.WebhookTestOut}, errors=[400, 415]),
]

# Response objects always carry every documented field (the schemas dump all of them), except these.
OPTIONAL_IN_RESPONSES = {"ErrorDetail": {"field"}}
# What the schemas' code says but their fields cannot: validators in @validates_schema or in the
# field classes of app/schemas.py.
REFINEMENTS = {
    ("OrderCreate", "partial_payment"): {"enum": [False]},
    ("ErrorDetail", "code"): {"enum": ERROR_CODES},
    ("PaymentOut", "card_network"): {"enum": ["visa", "mastercard", "amex", "rupay", "unknown", None]},
    ("PaymentPublicOut", "method"): {"enum": list(s.PAYMENT_METHODS)},
    ("WebhookRetryOut", "status"): {"enum": ["pending"]},
    ("PaymentCreate", "vpa"): {"pattern": VPA_RE.pattern,
                               "description": "The UPI address, for `upi`; else 400 `INVALID_VPA`."},
}
# PaymentCreate's @validates_schema: the method decides which details are required.
SCHEMA_REFINEMENTS = {
    "PaymentCreate": {"allOf": [
        {"if": {"properties": {"method": {"const": method}}, "required": ["method"]}, "then": {"required": [details]}}
        for method, details in (("upi", "vpa"), ("card", "card"))]},
}


# ---- webhooks -----------------------------------------------------------------------------------

def _delivery_header(name, description, required=True):
    return {"in": "header", "name": name, "required": required, "description": description,
            "schema": {"type": "string"}}


# What app/webhooks.py's headers_for() sends with every attempt.
WEBHOOK_HEADERS = [
    _delivery_header("X-Webhook-Signature", "Hex HMAC-SHA256 of the raw body, keyed with the webhook secret "
                                            "string (Razorpay's `verify_webhook_signature` scheme)."),
    _delivery_header("webhook-id", "The event id (`evt_…`), the same on every attempt: handle each id once."),
    _delivery_header("webhook-timestamp", "When this attempt was signed (unix seconds)."),
    _delivery_header("webhook-signature", "Standard Webhooks: `v1,<base64>`, keyed with the secret after `whsec_`, "
                                          "base64-decoded. Absent only for a secret that is not a Standard Webhooks "
                                          "key, which the gateway never issues.", required=False),
]


def _webhook(event):
    envelope = events.envelope(event.name)
    name = envelope.__name__
    return {
        "operationId": name[0].lower() + name[1:],
        "summary": event.description[0].upper() + event.description[1:] + ".",
        "description": f"POSTed to the merchant's webhook URL as compact JSON, signed twice (the headers below). "
                       f"A 2xx answer within {TIMEOUT_SECONDS} s acknowledges it; anything else is a failed attempt, retried with "
                       f"the same body and `webhook-id`, {WEBHOOK_ATTEMPTS} attempts in all.",
        "tags": ["Webhooks"],
        "parameters": list(WEBHOOK_HEADERS),
        "requestBody": {"required": True, "content": {"application/json": {"schema": envelope}}},
        "responses": {"2XX": {"description": "Delivered."},
                      "default": {"description": "A failed attempt: it will be retried."}},
    }


# ---- field conversions apispec does not know ---------------------------------------------------

def _extra_field_properties(self, field, ret, **kwargs):
    """apispec attribute function for the custom fields of app/schemas.py."""
    if isinstance(field, fields.Constant):
        ret.pop("default", None)  # always dumped; a default would suggest it can be sent
        return {"type": "string", "enum": [field.constant]}
    if isinstance(field, s.Time):
        return {"pattern": TIME_PATTERN, "examples": ["2026-01-15T10:31:00Z"]}
    if isinstance(field, s.Notes):
        return {"maxProperties": 15, "propertyNames": {"minLength": 1, "maxLength": 64},
                "additionalProperties": {"type": ["string", "number", "boolean", "null"], "maxLength": 512},
                "description": "At most 15 keys; values are strings (at most 512 characters), numbers, "
                               "booleans or null."}
    if isinstance(field, s.StrictInt):
        note = "A JSON integer: floats, numeric strings and booleans are refused."
        return {"description": f"{ret['description']} {note}" if ret.get("description") else note}
    return {}


# ---- the document ----------------------------------------------------------------------------------

def _responses(op):
    out = {}
    for status, target in op["ok"].items():
        if target is None:  # 204
            out[str(status)] = {"description": "Done; no body."}
            continue
        schema, description = target if isinstance(target, tuple) else (target, "OK." if status < 300 else "")
        out[str(status)] = {"description": description or "OK.",
                            "content": {"application/json": {"schema": schema}}}
        if status in op.get("links", {}):
            out[str(status)]["links"] = op["links"][status]
    errors = sorted(set(op["errors"]) | ({401, 429} if op["auth"] else set()) | ({503} if op["path"] != "/health" else set()))
    for status in errors:
        out[str(status)] = {"description": ERRORS[status], "content": {"application/json": {"schema": s.ErrorOut}}}
    return out


def _operation(op):
    spec_op = {
        "operationId": op["id"],
        "summary": op["summary"],
        "tags": [op["tag"]],
        "security": op["auth"],
        "responses": _responses(op),
    }
    if op.get("description"):
        spec_op["description"] = op["description"]
    if op.get("params"):
        spec_op["parameters"] = list(op["params"])
    if op.get("body"):
        spec_op["requestBody"] = {"required": op.get("body_required", True),
                                  "content": {"application/json": {"schema": op["body"]}}}
    return spec_op


def _schema_name(schema):
    cls = schema if isinstance(schema, type) else type(schema)
    return cls.__name__


def build():
    """The OpenAPI document as a dict (no request or app context needed)."""
    plugin = MarshmallowPlugin(schema_name_resolver=_schema_name)
    spec = APISpec(
        title="Payment Gateway API",
        version="1.0.0",
        openapi_version=OPENAPI_VERSION,
        plugins=[plugin],
        info={"description": "Orders, payments, refunds and webhooks. Amounts are integers in the smallest "
                             "currency unit (paise); times are ISO-8601 UTC with `Z` and no fractional seconds. "
                             "Every error is `{\"error\": {\"code\", \"description\", \"field\"?}}`."},
    )
    plugin.converter.add_attribute_function(_extra_field_properties)
    spec.components.security_scheme("ApiKey", {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                                               "description": "The merchant's API key; send with X-Api-Secret."})
    spec.components.security_scheme("ApiSecret", {"type": "apiKey", "in": "header", "name": "X-Api-Secret",
                                                  "description": "The merchant's API secret."})
    spec.components.security_scheme("BasicAuth", {"type": "http", "scheme": "basic",
                                                  "description": "`key:secret`, as the Razorpay SDKs send it."})
    by_path = {}
    for op in OPERATIONS:
        by_path.setdefault(op["path"], {})[op["method"]] = _operation(op)
    for path, operations in by_path.items():
        spec.path(path=path, operations=operations)
    hooks = {event.name: {"post": _webhook(event)} for event in events.CATALOG.values()}
    for operations in hooks.values():
        plugin.resolver.resolve_operations(operations)  # marshmallow schemas -> components and $refs
    doc = spec.to_dict()
    doc["webhooks"] = hooks
    _refine(doc)
    return doc


def _refine(doc):
    schemas = doc["components"]["schemas"]
    for (name, prop), extra in REFINEMENTS.items():
        schemas[name]["properties"][prop].update(extra)
    for name, extra in SCHEMA_REFINEMENTS.items():
        schemas[name].update(extra)
    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", ()):
                if param["in"] == "query":
                    param.setdefault("description", QUERY_DESCRIPTIONS[param["name"]])
    for name in _response_schema_names(doc):
        props = schemas[name].get("properties", {})
        schemas[name]["required"] = [p for p in props if p not in OPTIONAL_IN_RESPONSES.get(name, ())]


def _response_schema_names(doc):
    """Component schemas reachable from a response or a webhook's body (they are dumped, so every
    field is present)."""
    todo = [media["schema"] for item in doc["paths"].values() for op in item.values()
            for resp in op["responses"].values() for media in resp.get("content", {}).values()]
    todo += [item["post"]["requestBody"]["content"]["application/json"]["schema"]
             for item in doc["webhooks"].values()]
    seen = set()
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if ref and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[1]
                if name not in seen:
                    seen.add(name)
                    todo.append(doc["components"]["schemas"][name])
            todo.extend(v for k, v in node.items() if k != "$ref")
        elif isinstance(node, list):
            todo.extend(node)
    return seen


@functools.cache
def _cached():
    return build()


def spec_dict():
    """The OpenAPI document (a fresh copy; it is the same for every app)."""
    return copy.deepcopy(_cached())


bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi_json():
    return jsonify(_cached())


def init_app(app):
    """Register GET /openapi.json (public, no auth)."""
    app.register_blueprint(bp)
