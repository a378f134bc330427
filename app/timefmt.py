"""Times as the API shows them: ISO-8601 UTC, Z, no fractional seconds."""
from datetime import timezone


def iso(dt):
    if dt is None:
        return None
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
