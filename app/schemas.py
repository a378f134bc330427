"""Marshmallow schemas: request validation at the edge and the dump of every resource.
The same classes feed /openapi.json, so the documentation cannot drift from the views."""
import functools
import re

from marshmallow import RAISE, Schema, ValidationError, fields, missing, validate, validates_schema

from .errors import ApiError
from .timefmt import iso

INT32_MAX = 2_147_483_647

# The values the database's CHECK constraints allow (schema.sql; tests/test_foundation.py checks
# that they agree), named once for validation, the OpenAPI description and the dashboard.
ORDER_STATUSES = ("created", "paid")
PAYMENT_METHODS = ("upi", "card")
PAYMENT_STATUSES = ("pending", "processing", "success", "failed")
REFUND_STATUSES = ("pending", "processed")
WEBHOOK_STATUSES = ("pending", "success", "failed")


class StrictInt(fields.Integer):
    """An integer and nothing else: no floats, no numeric strings, no booleans."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class StrictBool(fields.Boolean):
    """true or false and nothing else (a set of truthy values cannot tell 1 from True)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class Text(fields.String):
    """A string PostgreSQL can store: no NUL character, no lone surrogate (either would make the
    INSERT fail, a 500 instead of a 400)."""

    default_error_messages = {"unstorable": "Must not contain NUL characters or unpaired surrogates."}

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if not storable(value):
            raise self.make_error("unstorable")
        return value


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(value):
    """True for a str without NUL or lone surrogates."""
    return _UNSTORABLE.search(value) is None


class Notes(fields.Dict):
    """Free-form merchant notes: at most 15 keys, short scalar values (as Razorpay)."""

    def __init__(self, **kwargs):
        super().__init__(keys=Text(validate=validate.Length(1, 64)), **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > 15:
            raise ValidationError("notes may have at most 15 keys.")
        for v in value.values():
            if not (v is None or isinstance(v, (str, int, float, bool))):
                raise ValidationError("notes values must be strings, numbers, booleans or null.")
            if isinstance(v, str) and len(v) > 512:
                raise ValidationError("notes values may be at most 512 characters.")
            if isinstance(v, str) and not storable(v):
                raise ValidationError("notes values must not contain NUL characters or unpaired surrogates.")
        return value


class Time(fields.DateTime):
    def _serialize(self, value, attr, obj, **kwargs):
        return iso(value)


class Base(Schema):
    class Meta:
        unknown = RAISE
        ordered = True


# ---- requests ---------------------------------------------------------------------------------

class OrderCreate(Base):
    amount = StrictInt(required=True, validate=validate.Range(100, INT32_MAX),
                       metadata={"description": "Amount in the smallest unit (paise), at least 100."})
    # The length rule matters: "$" also matches before a trailing newline, so "INR\n" passed the
    # pattern alone and then failed the database CHECK (a 500).
    currency = Text(load_default="INR", validate=[validate.Length(3, 3), validate.Regexp(r"^[A-Za-z]{3}$")])
    receipt = Text(load_default=None, allow_none=True, validate=validate.Length(max=40))
    notes = Notes(load_default=dict)
    partial_payment = fields.Boolean(load_default=False, metadata={"description": "Accepted for SDK compatibility; must be false."})

    @validates_schema
    def _no_partial(self, data, **kwargs):
        if data.get("partial_payment"):
            raise ValidationError("Partial payments are not supported.", "partial_payment")


class CardIn(Base):
    number = Text(required=True, validate=validate.Length(max=32))
    # Raw and nullable: the card rules (validation.py) decide, so a null or malformed CVV is
    # INVALID_CARD and a bad expiry EXPIRED_CARD, as the API promises, not a generic 400.
    expiry_month = fields.Raw(required=True, allow_none=True, metadata={"description": "1-12, integer or string"})
    expiry_year = fields.Raw(required=True, allow_none=True, metadata={"description": "YY or YYYY, integer or string"})
    cvv = fields.Raw(required=True, allow_none=True, metadata={"description": "3 or 4 digits"})
    holder_name = Text(load_default=None, allow_none=True, validate=validate.Length(max=100))


class PaymentCreate(Base):
    order_id = Text(required=True, validate=validate.Length(max=64))
    method = Text(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    vpa = Text(validate=validate.Length(max=255))
    card = fields.Nested(CardIn)
    amount = StrictInt(validate=validate.Range(1, INT32_MAX),
                       metadata={"description": "Optional; must equal the order's amount."})
    currency = Text(validate=validate.Length(3, 3))
    notes = Notes(load_default=dict)
    email = Text(validate=validate.Length(max=255))
    contact = Text(validate=validate.Length(max=32))

    @validates_schema
    def _method_fields(self, data, **kwargs):
        if data.get("method") == "upi" and "vpa" not in data:
            raise ValidationError("vpa is required for UPI payments.", "vpa")
        if data.get("method") == "card" and "card" not in data:
            raise ValidationError("card is required for card payments.", "card")


class CaptureIn(Base):
    amount = StrictInt(required=True, validate=validate.Range(1, INT32_MAX))
    currency = Text(validate=validate.Length(3, 3))


class RefundCreate(Base):
    amount = StrictInt(validate=validate.Range(1, INT32_MAX),
                       metadata={"description": "Defaults to the amount still refundable."})
    reason = Text(load_default=None, allow_none=True, validate=validate.Length(max=255))
    notes = Notes(load_default=dict)
    speed = Text(validate=validate.OneOf(["normal", "optimum"]))
    receipt = Text(load_default=None, allow_none=True, validate=validate.Length(max=40))


class RefundCreateForPayment(RefundCreate):
    """POST /refunds names the payment in the body (the Razorpay SDKs' refund.create)."""
    payment_id = Text(required=True, validate=validate.Length(max=64))


class WebhookConfigIn(Base):
    webhook_url = Text(required=True, allow_none=True, validate=validate.Length(max=2048))


EVENT_FILTER = {"description": 'Event names (see the `webhooks` section), or `["*"]` for every event.'}


class EndpointCreate(Base):
    url = Text(required=True, validate=validate.Length(1, 2048))
    events = fields.List(Text(validate=validate.Length(1, 64)), load_default=lambda: ["*"],
                         validate=validate.Length(1, 64), metadata=EVENT_FILTER)
    description = Text(load_default=None, allow_none=True, validate=validate.Length(max=255))


class EndpointUpdate(Base):
    url = Text(validate=validate.Length(1, 2048))
    events = fields.List(Text(validate=validate.Length(1, 64)), validate=validate.Length(1, 64), metadata=EVENT_FILTER)
    description = Text(allow_none=True, validate=validate.Length(max=255))
    enabled = StrictBool()


WEEK = 7 * 86400


class SecretRotation(Base):
    expire_previous_in = StrictInt(validate=validate.Range(0, WEEK), metadata={
        "description": "Seconds the secret being replaced keeps signing every delivery beside the new one "
                       "(0: replaced at once)."})


# Unix seconds the API can turn into a time: up to 9999-12-31 (one second short, since `to` is
# compared with the second after it).
MAX_UNIX_SECONDS = 253_402_300_798


class ListQuery(Schema):
    """The query of every list: paging and a created_at window; any other parameter is a 400."""

    class Meta:
        unknown = RAISE

    error_messages = {"unknown": "Unknown query parameter."}

    limit = fields.Integer(validate=validate.Range(min=0))
    count = fields.Integer(validate=validate.Range(min=0))
    offset = fields.Integer(validate=validate.Range(min=0, max=INT32_MAX))
    skip = fields.Integer(validate=validate.Range(min=0, max=INT32_MAX))
    from_ = fields.Integer(data_key="from", validate=validate.Range(min=0, max=MAX_UNIX_SECONDS))
    to = fields.Integer(validate=validate.Range(min=0, max=MAX_UNIX_SECONDS))


class EventListQuery(ListQuery):
    event = Text(validate=validate.Length(1, 64), metadata={"description": "Only events of this name."})


class PaymentListQuery(ListQuery):
    # Only real statuses: anything else could only list nothing, and a NUL in it was a 500.
    status = Text(validate=validate.OneOf(PAYMENT_STATUSES))


@functools.cache
def _instance(schema_class):
    return schema_class()


def load(schema_class, data):
    """Validate with a schema; a ValidationError becomes one 400 naming the first bad field. One
    instance per schema class serves every request (building one copies all its fields)."""
    try:
        return _instance(schema_class).load(data)
    except ValidationError as e:
        field, message = _first_error(e.messages)
        raise ApiError(f"{field}: {message}" if field else message, field=field) from None


def _first_error(messages, prefix=""):
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = prefix if key == "_schema" else (f"{prefix}.{key}" if prefix else str(key))
            return _first_error(value, name)
    if isinstance(messages, list) and messages:
        first = messages[0]
        if isinstance(first, (dict, list)):
            return _first_error(first, prefix)
        return prefix or None, str(first)
    return prefix or None, "Invalid value."


# ---- responses --------------------------------------------------------------------------------

# Field types whose output is the stored value itself when it already has this type (or is None).
_PASS_THROUGH = {fields.String: str, fields.Integer: int, fields.Boolean: bool}


class Out(Base):
    """A response schema. Its dump is marshmallow's, minus the generic per-field lookup for the
    common case, a row as a dict: each value goes straight to the field's own conversion, or
    through unchanged when it already is what the field outputs (a str for a String, None...).
    Anything else (a missing key, a constant, an object) takes marshmallow's own path. Profiling
    put marshmallow's dump at 5 % of POST /payments' CPU; tests hold every response schema's dump
    equal to marshmallow's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plan = [(name, name if field.data_key is None else field.data_key, field.attribute or name,
                       _PASS_THROUGH.get(type(field)), field) for name, field in self.dump_fields.items()]

    def _serialize(self, obj, *, many=False):
        if many and obj is not None:
            return [self._serialize(item) for item in obj]
        if type(obj) is not dict:
            return super()._serialize(obj)
        out = {}
        for name, key, attr, kind, field in self._plan:
            value = obj.get(attr, missing)
            if value is missing or not field._CHECK_ATTRIBUTE:
                value = field.serialize(name, obj, accessor=self.get_attribute)
                if value is missing:
                    continue
            elif value is not None and type(value) is not kind:
                value = field._serialize(value, attr, obj)
            out[key] = value
        return out


class OrderOut(Out):
    id = fields.String()
    entity = fields.Constant("order")
    merchant_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    receipt = fields.String(allow_none=True)
    notes = fields.Dict()
    status = fields.String(metadata={"enum": list(ORDER_STATUSES)})
    created_at = Time()
    updated_at = Time()


class OrderPublicOut(Out):
    id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    status = fields.String(metadata={"enum": list(ORDER_STATUSES)})
    merchant_name = fields.String()


class PaymentOut(Out):
    id = fields.String()
    entity = fields.Constant("payment")
    order_id = fields.String()
    merchant_id = fields.UUID()
    amount = fields.Integer()
    currency = fields.String()
    method = fields.String(metadata={"enum": list(PAYMENT_METHODS)})
    status = fields.String(metadata={"enum": list(PAYMENT_STATUSES)})
    vpa = fields.String(allow_none=True)
    card_network = fields.String(allow_none=True)
    card_last4 = fields.String(allow_none=True)
    captured = fields.Boolean()
    error_code = fields.String(allow_none=True)
    error_description = fields.String(allow_none=True)
    notes = fields.Dict()
    created_at = Time()
    updated_at = Time()


class PaymentPublicOut(Out):
    id = fields.String()
    order_id = fields.String()
    status = fields.String(metadata={"enum": list(PAYMENT_STATUSES)})
    amount = fields.Integer()
    currency = fields.String()
    method = fields.String()


class RefundOut(Out):
    id = fields.String()
    entity = fields.Constant("refund")
    payment_id = fields.String()
    amount = fields.Integer()
    currency = fields.String()
    reason = fields.String(allow_none=True)
    receipt = fields.String(allow_none=True)
    notes = fields.Dict()
    status = fields.String(metadata={"enum": list(REFUND_STATUSES)})
    created_at = Time()
    processed_at = Time(allow_none=True)


class WebhookLogOut(Out):
    id = fields.UUID()
    event = fields.String()
    status = fields.String(metadata={"enum": list(WEBHOOK_STATUSES)})
    attempts = fields.Integer()
    created_at = Time()
    last_attempt_at = Time(allow_none=True)
    next_retry_at = Time(allow_none=True)
    response_code = fields.Integer(allow_none=True)


class Replay(Base):
    since = StrictInt(required=True, validate=validate.Range(0, MAX_UNIX_SECONDS), metadata={
        "description": "Unix seconds: every event raised at or after this time that the endpoint subscribes to."})
    status = Text(validate=validate.OneOf(["failed"]), metadata={
        "description": "`failed`: only the events whose delivery to this endpoint used up its attempts."})


class ReplayOut(Out):
    queued = fields.Integer(metadata={"description": "Deliveries queued."})


class EventOut(Out):
    id = fields.String(metadata={"description": "`evt_…`, the `webhook-id` of its deliveries."})
    event = fields.String()
    created_at = Time()
    data = fields.Dict(metadata={"description": "As in the webhook's body."})


class EndpointOut(Out):
    id = fields.String(metadata={"description": "`we_…`"})
    url = fields.String()
    events = fields.List(fields.String(), metadata=EVENT_FILTER)
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    failing_since = Time(allow_none=True, metadata={
        "description": "Since then every delivery to it has failed (null: the last one succeeded); once this is "
                       "the gateway's limit old (5 days by default), the endpoint is disabled."})
    disabled_reason = fields.String(allow_none=True, metadata={
        "description": "Why the gateway disabled it; null when enabled or disabled by you."})
    created_at = Time()


class EndpointWithSecretOut(EndpointOut):
    secret = fields.String(metadata={"description": "The signing secret (`whsec_…`)."})
    previous_expires_at = Time(allow_none=True, metadata={
        "description": "Until then the secret it replaced still signs every delivery too."})


class WebhookConfigOut(Out):
    webhook_url = fields.String(allow_none=True)
    webhook_secret = fields.String(allow_none=True)


class WebhookRetryOut(Out):
    id = fields.UUID()
    status = fields.String()
    message = fields.String()


class JobsStatusOut(Out):
    pending = fields.Integer()
    processing = fields.Integer()
    completed = fields.Integer()
    failed = fields.Integer()
    worker_status = fields.String(metadata={"enum": ["running", "stopped"]})


class ErrorDetail(Out):
    code = fields.String()
    description = fields.String()
    field = fields.String()


class ErrorOut(Out):
    error = fields.Nested(ErrorDetail)


@functools.cache  # one class per item schema: two lists of payments share one document schema
def list_of(item_schema):
    """The list envelope {data, total, limit, offset} around an item schema."""
    return type(f"{item_schema.__name__}List", (Out,), {
        "data": fields.List(fields.Nested(item_schema)),
        "total": fields.Integer(),
        "limit": fields.Integer(),
        "offset": fields.Integer(),
    })


ORDER = OrderOut()
ORDER_PUBLIC = OrderPublicOut()
PAYMENT = PaymentOut()
PAYMENT_PUBLIC = PaymentPublicOut()
REFUND = RefundOut()
WEBHOOK_LOG = WebhookLogOut()
ENDPOINT = EndpointOut()
EVENT = EventOut()
ENDPOINT_WITH_SECRET = EndpointWithSecretOut()


# ---- responses built without a schema (documented in /openapi.json) ---------------------------

class HealthOut(Out):
    status = fields.String(metadata={"enum": ["healthy", "degraded", "unhealthy"]})
    database = fields.String(metadata={"enum": ["connected", "disconnected"]})
    worker = fields.String(metadata={"enum": ["running", "stopped", "unknown"]})
    timestamp = Time()


class SeededMerchantOut(Out):
    id = fields.UUID()
    email = fields.String()
    api_key = fields.String()
    seeded = fields.Boolean(metadata={"enum": [True]})


class WebhookTestOut(Out):
    status = fields.String(metadata={"enum": ["queued"]})
    message = fields.String()
    webhook_url = fields.String()
