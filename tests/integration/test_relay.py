"""No open relay: the classic tricks, tried by an unauthenticated client on
the public listener, are all refused; local mail and clients inside
relay_networks still work. Each refusal is logged once as event=rcpt with
the relay verdict and the rule that decided it.
"""

import pytest

from mwharness import SMTPConn, assert_reply

LOCAL = ["localhost", "example.org"]

# (RCPT argument, expected code) for an unauthenticated outside client.
TRICKS = [
    ("<user%other.example@localhost>", 550),          # percent hack
    ("<other.example!user@localhost>", 550),          # bang path
    ('<"user@other.example"@localhost>', 550),        # quoted local part with @
    ('<"user%other.example"@localhost>', 550),
    ("<@localhost:user@other.example>", 554),         # source route to a remote mailbox
    ("<@localhost,@example.org:user@other.example>", 554),
    ("<user@other.example>", 554),                    # plain relay
    ("<user@localhost.other.example>", 554),          # local name as a prefix
    ("<user@other.localhost>", 554),                  # subdomain of a local domain
    ("<user@example.org.evil.test>", 554),
    ("<user@[127.0.0.1]>", 554),                      # IP literals
    ("<user@[IPv6:::1]>", 554),
    ("<user@LOCALHOST.OTHER.EXAMPLE>", 554),          # case variants that are not local
    ("<user@Other.Example>", 554),
]

# Trailing dots are not even valid syntax in a path (RFC 5321 4.1.2).
SYNTAX = ["<user@localhost.>", "<user@other.example.>", "<user@localhost..>"]

LOCAL_OK = ["<user@localhost>", "<user@LOCALHOST>", "<User@Example.ORG>", "<Postmaster>",
            "<postmaster@localhost>", '<"john smith"@localhost>']


@pytest.fixture
def mx(mw):
    mw.start(local_domains=LOCAL, relay_networks=["127.0.0.77/32", "::2/128"])
    return mw


def transaction(daemon, source=None):
    c = SMTPConn(daemon.port, source=source)
    c.greeting()
    c.ehlo("outside.test")
    assert_reply(c.cmd("MAIL FROM:<someone@outside.test>"), 250)
    return c


def test_relay_tricks_refused(mx):
    with transaction(mx) as c:
        for rcpt, code in TRICKS:
            r = c.cmd(f"RCPT TO:{rcpt}")
            assert r.code == code, f"RCPT TO:{rcpt} got {r}"
            assert r.enhanced == "5.7.1", f"RCPT TO:{rcpt} got {r}"
        for rcpt in SYNTAX:
            r = c.cmd(f"RCPT TO:{rcpt}")
            assert r.code == 501, f"RCPT TO:{rcpt} got {r}"
        # Nothing was accepted, so there is no transaction to send.
        assert_reply(c.cmd("DATA"), 554, "5.5.1")
    events = mx.events("rcpt")
    denied = [e for e in events if e.get("relay") == "denied"]
    bad_local = [e for e in events if e.get("relay") == "bad_local"]
    assert len(denied) == sum(1 for _, code in TRICKS if code == 554), events
    assert len(bad_local) == sum(1 for _, code in TRICKS if code == 550), events
    assert all(e.get("client") == "127.0.0.1" and e.get("rule") for e in denied + bad_local)
    assert not [e for e in events if e.get("result") == "accepted"]


def test_local_recipients_accepted(mx):
    with transaction(mx) as c:
        for rcpt in LOCAL_OK:
            r = c.cmd(f"RCPT TO:{rcpt}")
            assert r.code == 250, f"RCPT TO:{rcpt} got {r}"
    assert all(e.get("relay") == "local" for e in mx.events("rcpt"))


def test_relay_networks_may_relay(mx):
    with transaction(mx, source="127.0.0.77") as c:
        assert_reply(c.cmd("RCPT TO:<user@other.example>"), 250)
        # Routing tricks into a local domain stay refused even for them.
        assert_reply(c.cmd("RCPT TO:<user%other.example@localhost>"), 550, "5.7.1")
    ev = mx.wait_event("rcpt", rcpt="user@other.example")
    assert ev.get("relay") == "allowed" and ev.get("rule") == "relay_networks", ev
    with transaction(mx, source="127.0.0.78") as c:
        assert_reply(c.cmd("RCPT TO:<user@other.example>"), 554, "5.7.1")
