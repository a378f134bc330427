"""Times as the API shows them (ISO-8601 UTC, Z, no fractional seconds) and as the dashboard shows
them (the merchant's DASHBOARD_TIMEZONE, the UTC time on hover)."""
from datetime import timezone

from markupsafe import Markup


def iso(dt):
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def local(dt, tz):
    """2026-01-15T10:31:00Z in Asia/Kolkata -> '2026-01-15 16:01:00 IST'."""
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def when(dt, tz):
    """A <time> element for a template: the local time, its UTC instant in datetime= and title=
    (shown on hover). None is a dash."""
    if dt is None:
        return "—"
    return Markup('<time datetime="{0}" title="{0} (UTC)">{1}</time>').format(iso(dt), local(dt, tz))
