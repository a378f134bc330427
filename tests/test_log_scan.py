"""The end-of-run log scan (conftest.pytest_sessionfinish) finds card data and secrets in any log
file of the run, so a leak fails the run whichever tests were selected."""
import os
import subprocess
import sys

import pytest

from helpers import ROOT, log_leaks


def test_the_scan_finds_card_numbers_cvvs_and_secrets(tmp_path):
    (tmp_path / "api.log").write_text(
        "INFO POST /api/v1/payments 201\n"
        "DEBUG body {\"number\": \"4111 1111 1111 1111\"}\n"
        "DEBUG card {'cvv': '737'}\n"
        "INFO fine line with pay_0ls1n1Ut0kp1pfVh and last4 1111\n")
    (tmp_path / "worker.log").write_text("WARNING signing with whsec_test_abc123\n"
                                         "ERROR auth secret_test_xyz789 refused\n")
    leaks = log_leaks(tmp_path)
    assert [leak.split(": ")[0] for leak in leaks] == ["api.log:2", "api.log:3", "worker.log:1", "worker.log:2"]


def test_a_leak_fails_the_run_even_when_every_test_passed(tmp_path):
    """The hook itself, in a pytest run of its own with this suite's conftest.py as a plugin: its
    only test passes but logs a card number, and the run's exit status is a failure."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # not the project's settings: only the hook is under test
    (tmp_path / "test_leaky.py").write_text(
        "import logging\n\n\n"
        "def test_passes_but_logs_a_card_number():\n"
        "    logging.getLogger('leaky').warning('charging 4111' + ' 1111' * 3)\n")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         "--basetemp", str(tmp_path / "run"), "test_leaky.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        # No installed plugins (schemathesis, hypothesis …): the hook needs none, and they take seconds to load.
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "tests"), str(ROOT)]),
                 PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))
    assert "1 passed" in run.stdout, run.stdout + run.stderr
    assert "card data or secrets in the logs" in run.stdout and "in-process.log:1:" in run.stdout, run.stdout
    assert run.returncode == pytest.ExitCode.TESTS_FAILED, run.stdout + run.stderr
