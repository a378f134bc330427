"""The merchant JSON API, /api/v1: one module per resource."""
from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from . import orders, payments, refunds, webhooks, jobs_status  # noqa: E402,F401  (routes)
