"""The test harness itself: the `service` mark skips, or fails with KWS_REQUIRE_SERVICES=1, and `read_line`
gives up on a silent child instead of blocking the suite."""

import subprocess
import sys
import time

import pytest

import conftest


class _Item:
    """What pytest_runtest_setup reads of a test: its `service` marks."""

    def __init__(self, available: bool):
        self._mark = pytest.mark.service(available, "needs the frobnicator").mark

    def iter_markers(self, name):
        return [self._mark] if name == "service" else []


@pytest.mark.parametrize("required, outcome", [(False, pytest.skip.Exception), (True, pytest.fail.Exception)],
                         ids=["skipped", "failed-when-required"])
def test_a_missing_service_is_skipped_or_with_the_switch_failed(monkeypatch, required, outcome):
    monkeypatch.setattr(conftest, "REQUIRE_SERVICES", required)
    with pytest.raises(outcome, match="needs the frobnicator"):
        conftest.pytest_runtest_setup(_Item(available=False))
    conftest.pytest_runtest_setup(_Item(available=True))  # a service that is there: the test runs


def test_the_switch_is_read_from_the_environment():
    code = "import conftest; print(conftest.REQUIRE_SERVICES)"
    for value, expected in (("1", "True"), ("", "False")):
        result = subprocess.run([sys.executable, "-c", code], cwd=conftest.Path(conftest.__file__).parent,
                                env={"KWS_REQUIRE_SERVICES": value, "PATH": ""}, capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.strip() == expected, result.stderr


def test_read_line_gives_up_on_a_silent_child():
    child = subprocess.Popen([sys.executable, "-c", "import time; print('one', flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert conftest.read_line(child.stdout, timeout_s=30) == "one\n"
        start = time.monotonic()
        with pytest.raises(AssertionError, match="no line from the child process within 0.5 s"):
            conftest.read_line(child.stdout, timeout_s=0.5)
        assert time.monotonic() - start < 5
    finally:
        child.kill()
        child.wait(timeout=10)
