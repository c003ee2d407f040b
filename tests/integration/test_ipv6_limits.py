"""Limits for IPv6 clients are counted per network, not per address: one
host holds a whole /64, so keying by /128 would give it 2^64 budgets.
With ipv6_prefix_length (default 64) the connection rate and the AUTH
back-off of 2001:db8:1:2::a, ::b and ::c are one; 2001:db8:1:3::a is
another client.

The test needs several IPv6 source addresses without touching the host's
network, so this file moves its own pytest process (CTest runs each file in
a process of its own) into a new network namespace, brings its loopback up
and puts the test addresses on it; the daemon, a child, runs in there too.
That needs root, as CI has: without it the tests fail, they never skip.
"""

import ctypes
import os
import smtplib
import socket
import ssl
import subprocess

import pytest

from mwharness import free_port
from tlsharness import client_context

CLONE_NEWNET = 0x40000000
SERVER = "2001:db8:1:2::1"
SAME_64 = ["2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2::c", "2001:db8:1:2::d"]
OTHER_64 = "2001:db8:1:3::a"
ALICE, ALICE_PW = "alice@localhost", "Wonder-land-42"


def _enter_private_network():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        return f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (run the tests as root)"
    cmds = [["ip", "link", "set", "lo", "up"]]
    cmds += [["ip", "-6", "addr", "add", f"{a}/128", "dev", "lo", "nodad"]
             for a in [SERVER, *SAME_64, OTHER_64]]
    for cmd in cmds:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            return f"{' '.join(cmd)}: {r.stdout.decode()} (iproute2 is installed by scripts/setup)"
    return None


NETNS_ERROR = _enter_private_network()


@pytest.fixture(autouse=True)
def private_network():
    assert NETNS_ERROR is None, NETNS_ERROR


def start(tlsd, pki, **settings):
    port = free_port()
    tlsd.extra = (f'listen v6 {{\n    address = "{SERVER}"\n    port = {port}\n'
                  f'    tls = "implicit"\n    auth = true\n}}\n')
    settings.setdefault("auth_failures", 3)
    settings.setdefault("auth_backoff", 30)
    tlsd.start_tls(certificates=[("mx", [pki.mx_ecdsa])], **settings)
    r = subprocess.run([str(tlsd.bin), "user", "add", ALICE, "-c", str(tlsd.config_path)],
                       input=(ALICE_PW + "\n").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, r.stdout
    return port


def connect(port, source):
    sock = socket.create_connection((SERVER, port), timeout=30, source_address=(source, 0))
    ctx = client_context(ca=None, check_hostname=False)
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock)


def login(port, source, user, password):
    """One implicit-TLS session from source with AUTH PLAIN: the reply code."""
    s = smtplib.SMTP(timeout=30)
    s.sock = connect(port, source)
    s.file = None
    code, _ = s.getreply()
    assert code == 220
    s.ehlo("client.test")
    s.user, s.password = user, password
    try:
        code, _ = s.auth("PLAIN", s.auth_plain)
    except smtplib.SMTPAuthenticationError as e:
        code = e.smtp_code
    s.close()
    return code


def test_auth_backoff_covers_the_whole_64(tlsd, pki):
    port = start(tlsd, pki)
    for i, src in enumerate(SAME_64[:3]):
        assert login(port, src, f"nobody{i}@localhost", "wrong") == 535
    # a fourth address of the same /64: throttled, even with the right password
    assert login(port, SAME_64[3], ALICE, ALICE_PW) == 454
    # another /64 is another client
    assert login(port, OTHER_64, ALICE, ALICE_PW) == 235
    throttled = tlsd.events("auth", result="throttled")
    assert [t.get("client") for t in throttled] == [SAME_64[3]], throttled


def test_prefix_length_128_counts_each_address(tlsd, pki):
    port = start(tlsd, pki, ipv6_prefix_length=128)
    for i, src in enumerate(SAME_64[:3]):
        assert login(port, src, f"nobody{i}@localhost", "wrong") == 535
    assert login(port, SAME_64[3], ALICE, ALICE_PW) == 235


def test_connection_rate_covers_the_whole_64(tlsd, pki):
    port = start(tlsd, pki, max_connection_rate=3)
    for src in SAME_64[:3]:
        connect(port, src).close()
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        # refused before TLS: the 421 arrives in clear text, no handshake
        s = connect(port, SAME_64[3])
        s.recv(100)
    ev = tlsd.wait_event("limit", limit="max_connection_rate")
    assert ev.get("client") == SAME_64[3], ev
    connect(port, OTHER_64).close()
