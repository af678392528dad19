"""Print the failover figures (address move time, failed requests) in the summary."""

import pytest

REPORTS = pytest.StashKey()


def pytest_configure(config):
    config.stash[REPORTS] = []


@pytest.fixture
def report(request):
    return request.config.stash[REPORTS].append


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(REPORTS, [])
    if lines:
        terminalreporter.section("keepalived failover")
        for line in lines:
            terminalreporter.write_line(line)
