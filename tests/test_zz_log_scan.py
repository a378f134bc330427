"""Runs last: every log written during this test run (API and worker processes, this process)
holds no card number, CVV, API secret or webhook secret."""
import re

from helpers import TEST_SECRET

FORBIDDEN = [
    re.compile(r"4111[ -]?1111[ -]?1111[ -]?1111"),
    re.compile(r"5555[ -]?5555[ -]?5555[ -]?4444"),
    re.compile(r"3782[ -]?822463[ -]?10005"),
    re.compile(r"6011[ -]?1111[ -]?1111[ -]?1117"),
    re.compile(r"cvv\W{1,6}\d{3,4}", re.IGNORECASE),
    re.compile(re.escape(TEST_SECRET)),
    re.compile(r"secret_[0-9a-f]{24}"),            # make_merchant's API secrets
    re.compile(r"whsec_test_abc123"),
    re.compile(r"whsec_[A-Za-z0-9+/]{40,}={0,2}"),  # generated webhook secrets
]


def test_no_card_data_or_secrets_in_any_log(log_dir):
    files = sorted(p for p in log_dir.iterdir() if p.is_file())
    assert any(p.name == "in-process.log" for p in files)
    leaks = []
    for path in files:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            for pattern in FORBIDDEN:
                if pattern.search(line):
                    leaks.append(f"{path.name}:{n}: {pattern.pattern}")
    assert not leaks, "\n".join(leaks[:20])
