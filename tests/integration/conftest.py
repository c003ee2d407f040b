"""pytest fixtures for the mailwarden integration tests.

Run with Debian's interpreter:
    MAILWARDEN_BIN=build/mailwarden /usr/bin/python3 -m pytest tests/integration
(MAILWARDEN_BIN defaults to <repo>/build/mailwarden.)

Fixtures:
  mw       an unstarted Daemon in this test's tmp_path; call mw.start(**config)
  daemon   a Daemon already started with the default config
Both are always torn down (SIGTERM, then SIGKILL of the process group).
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from mwharness import Daemon  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long-running test (tens of seconds)")


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _dump_logs(request, daemons):
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for d in daemons:
            print(f"----- mailwarden log ({d.workdir}) -----")
            print(d.log_tail(200))


@pytest.fixture
def mw(tmp_path, request):
    d = Daemon(tmp_path / "mw")
    yield d
    d.cleanup()
    _dump_logs(request, [d])


@pytest.fixture
def daemon(mw):
    mw.start()
    return mw


# ---------------------------------------------------------------- TLS tests
# (tlsharness is imported lazily so that the other tests do not depend on it)


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """Test CA and server certificates, made once per session with openssl."""
    from tlsharness import TestPKI
    return TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tlsd(tmp_path, request):
    """An unstarted TLSDaemon; call tlsd.start_tls(listeners=..., certificates=...)."""
    from tlsharness import TLSDaemon
    d = TLSDaemon(tmp_path / "mw")
    yield d
    d.cleanup()
    _dump_logs(request, [d])
