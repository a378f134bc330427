"""Every webhook event the gateway sends: its name, when it is sent, what its `data` holds and who
sends it. The emitters, /openapi.json's `webhooks`, the dashboard and docs/webhooks.md all read
this table, and tests hold each of them to it (tests/test_events.py).

`python -m app.events` prints the table of docs/webhooks.md."""
import functools
from dataclasses import dataclass

from marshmallow import fields

from . import schemas as s
from .errors import ApiError

PAYMENT_CREATED = "payment.created"
PAYMENT_SUCCESS = "payment.success"
PAYMENT_FAILED = "payment.failed"
REFUND_CREATED = "refund.created"
REFUND_PROCESSED = "refund.processed"
WEBHOOK_TEST = "webhook.test"
WEBHOOK_ENDPOINT_DISABLED = "webhook_endpoint.disabled"


# ---- what `data` holds -------------------------------------------------------------------------

class PaymentEventData(s.Out):
    payment = fields.Nested(s.PaymentOut)


class RefundEventData(s.Out):
    refund = fields.Nested(s.RefundOut)
    payment = fields.Nested(s.PaymentOut, metadata={"description": "The refunded payment."})


class WebhookTestData(s.Out):
    message = fields.String()
    merchant_id = fields.UUID()


class EndpointDisabledData(s.Out):
    endpoint_id = fields.String(metadata={"description": "The endpoint disabled (`we_…`)."})
    url = fields.String()
    failing_since = s.Time(metadata={"description": "Since then every delivery to it failed."})
    reason = fields.String(metadata={"description": "Why it was disabled, in words."})


@dataclass(frozen=True)
class Event:
    name: str
    description: str  # when it is sent, one line (Markdown: `code` spans)
    data: type        # the schema of the envelope's `data`
    emitted_by: str   # module.function that emits it

    @property
    def data_keys(self):
        return tuple(self.data._declared_fields)


CATALOG = {e.name: e for e in (
    Event(PAYMENT_CREATED, "a payment was accepted (status `pending`)", PaymentEventData, "payments.create"),
    Event(PAYMENT_SUCCESS, "the payment settled successfully; the order is `paid`", PaymentEventData,
          "payments._settle"),
    Event(PAYMENT_FAILED, "the payment settled as failed (`error_code`, `error_description`)", PaymentEventData,
          "payments._settle"),
    Event(REFUND_CREATED, "a refund was accepted (status `pending`)", RefundEventData, "refunds.create"),
    Event(REFUND_PROCESSED, "the money went back", RefundEventData, "refunds.process"),
    Event(WEBHOOK_TEST, "you asked for a test event", WebhookTestData, "webhooks.send_test"),
    Event(WEBHOOK_ENDPOINT_DISABLED, "one of your endpoints was disabled: no delivery to it had succeeded for 5 "
          "days (the gateway's setting); sent to your other enabled endpoints", EndpointDisabledData,
          "endpoints.disable_failing"),
)}


# ---- the envelope every delivery carries --------------------------------------------------------

def check_name(name, field):
    """The name of a catalog event, or a 400 naming `field`: merchants subscribe and filter by
    these names only."""
    if name not in CATALOG:
        raise ApiError(f"Unknown event {name!r}; see GET /openapi.json (webhooks) for the list.", field=field)
    return name


def _camel(name):
    return "".join(part.capitalize() for part in name.replace("_", ".").split("."))


@functools.cache
def envelope(name):
    """The schema of an event's body, {id, event, timestamp, data}, e.g. PaymentCreatedEvent."""
    event = CATALOG[name]
    return type(f"{_camel(name)}Event", (s.Out,), {
        "id": fields.String(metadata={"description": "The event id (`evt_…`), also sent as `webhook-id`; "
                                                     "retries keep it: handle each id once."}),
        "event": fields.Constant(name),
        "timestamp": fields.Integer(metadata={"description": "When the event was emitted (unix seconds)."}),
        "data": fields.Nested(event.data),
    })


def markdown_table():
    """The events table of docs/webhooks.md."""
    rows = ["| event | when | `data` |", "|---|---|---|"]
    for e in CATALOG.values():
        keys = ", ".join(f"`{k}`" for k in e.data_keys)
        rows.append(f"| `{e.name}` | {e.description} | {keys} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
