"""The end-of-run log scan (conftest.pytest_sessionfinish) finds card data and secrets in any log
file of the run, so a leak fails the run whichever tests were selected."""
from helpers import log_leaks


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

