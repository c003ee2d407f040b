"""SMTP command replies, EHLO keywords, RCPT policy and PIPELINING."""

import socket
import threading
import time

import pytest

from mwharness import (DELIVERY_TIMEOUT, assert_has_enhanced, assert_reply, make_message, queue_id_of,
                       send_message, wait_until)


def ehlo_keywords(reply):
    return {l.split()[0].upper(): l.split()[1:] for l in reply.lines[1:] if l.strip()}


def test_greeting_and_ehlo_keywords(daemon):
    with daemon.connect() as c:
        g = c.greeting()
        assert g.code == 220, g
        assert "mx.test" in g.lines[0], g
        r = c.ehlo()
        kw = ehlo_keywords(r)
        for k in ("PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING"):
            assert k in kw, f"{k} not advertised: {r}"
        assert "SIZE" in kw and kw["SIZE"] and kw["SIZE"][0].isdigit(), r


def test_ehlo_size_follows_config(mw):
    mw.start(max_message_size=36700160)
    with mw.connect() as c:
        c.greeting()
        assert ehlo_keywords(c.ehlo())["SIZE"] == ["36700160"]


def test_simple_commands(daemon):
    with daemon.connect() as c:
        assert c.greeting().code == 220
        assert_reply(c.cmd("MAIL FROM:<sender@example.net>"), 503, "5.5.1")
        c.ehlo()
        assert_reply(c.cmd("VRFY user@localhost"), 252, "2.1.5")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
        assert_reply(c.cmd("RSET"), 250, "2.0.0")
        r = c.cmd("HELP")
        assert r.code == 214, r
        assert_has_enhanced(r)
        assert_reply(c.cmd("FROBNICATE now"), 500, "5.5.2")
        assert_reply(c.cmd("XYZZY"), 500, "5.5.2")
        r = c.cmd("RCPT TO:<user@localhost>")  # before MAIL
        assert r.code == 503, r
        assert_has_enhanced(r)
        r = c.cmd("DATA")  # no transaction
        assert r.code == 503, r
        assert_has_enhanced(r)
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")  # still alive after errors
        assert_reply(c.cmd("QUIT"), 221, "2.0.0")
        assert c.wait_closed(), "connection not closed after QUIT"


def test_rset_discards_transaction(daemon):
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert_reply(c.cmd("RSET"), 250, "2.0.0")
        r = c.cmd("DATA")
        assert r.code == 503, f"DATA after RSET: {r}"
        r = c.cmd("RCPT TO:<user@localhost>")
        assert r.code == 503, f"RCPT after RSET: {r}"
        # a fresh transaction works
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250


def test_commands_are_case_insensitive(daemon):
    with daemon.connect() as c:
        c.greeting()
        assert c.cmd("ehlo client.test").code == 250
        assert c.cmd("mail from:<sender@example.net>").code == 250
        assert_reply(c.cmd("rcpt to:<user@localhost>"), 250, "2.1.5")
        assert_reply(c.cmd("rset"), 250, "2.0.0")
        assert_reply(c.cmd("noop"), 250, "2.0.0")


def test_every_reply_after_greeting_has_enhanced_code(daemon):
    with daemon.session() as c:
        for cmd in ("NOOP", "RSET", "VRFY x", "HELP", "BOGUS", "MAIL FROM:<a@example.net>",
                    "RCPT TO:<user@localhost>", "RCPT TO:<user@elsewhere.test>", "RCPT TO:<bad@@x>",
                    "MAIL FROM:<b@example.net>", "RSET"):
            assert_has_enhanced(c.cmd(cmd))


@pytest.mark.parametrize("rcpt", ["user@localhost", "USER@LOCALHOST", "user@Example.Org", "x@example.org"])
def test_rcpt_local_domain_accepted(daemon, rcpt):
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 250, "2.1.5")


@pytest.mark.parametrize("rcpt", ["user@elsewhere.test", "user@localhost.example", "user@sub.example.org",
                                  "user@example.org.evil.test"])
def test_rcpt_non_local_domain_refused(daemon, rcpt):
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd(f"RCPT TO:<{rcpt}>"), 554, "5.7.1")
        # the transaction goes on with a good recipient
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")


@pytest.mark.parametrize("rcpt", ["<user@@localhost>", "<user@>", "<us(er@localhost>", "<user@local..host>"])
def test_rcpt_malformed_address(daemon, rcpt):
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd(f"RCPT TO:{rcpt}"), 501, "5.1.3")


def test_max_recipients(mw):
    # RFC 5321 4.5.3.1.8: at least 100 recipients must be accepted, so the
    # smallest sensible limit is 100; RCPTs are pipelined to keep it quick
    limit = 100
    mw.start(max_recipients=limit)
    msg = make_message("<maxrcpt@example.net>")
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        c.send(b"".join(b"RCPT TO:<r%d@localhost>\r\n" % n for n in range(limit + 2)))
        for n in range(limit):
            assert_reply(c.reply(), 250, "2.1.5")
        assert_reply(c.reply(), 452, "4.5.3")
        assert_reply(c.reply(), 452, "4.5.3")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
    for n in (0, limit // 2, limit - 1):
        [d] = mw.wait_mail("localhost", f"r{n}", 1)
        assert d.message == msg
    wait_until(lambda: len(mw.all_mail_files()) >= limit, DELIVERY_TIMEOUT, what=f"{limit} deliveries")
    assert len(mw.all_mail_files()) == limit
    assert not mw.maildir("localhost", f"r{limit}").exists()
    assert not mw.maildir("localhost", f"r{limit + 1}").exists()


def test_pipelining_replies_in_order_good_recipient_only(daemon):
    msg = make_message("<pipelined@example.net>")
    with daemon.session() as c:
        c.send(b"MAIL FROM:<sender@example.net>\r\n"
               b"RCPT TO:<bad@elsewhere.test>\r\n"
               b"RCPT TO:<good@localhost>\r\n"
               b"DATA\r\n")
        r = c.reply()
        assert r.code == 250, f"MAIL: {r}"
        assert_has_enhanced(r)
        assert_reply(c.reply(), 554, "5.7.1")
        assert_reply(c.reply(), 250, "2.1.5")
        assert c.reply().code == 354
        c.send(msg + b".\r\n")
        r = c.reply()
        assert_reply(r, 250, "2.0.0", contains="queued as")
        qid = queue_id_of(r)
    [d] = daemon.wait_mail("localhost", "good", 1)
    assert d.delivered_to == "good@localhost"
    f = d.received_fields()
    assert f["id"] == qid
    assert f["for"] == "good@localhost"
    assert d.message == msg
    assert len(daemon.all_mail_files()) == 1
    assert not (daemon.mail_root / "elsewhere.test").exists()


def test_pipelining_many_commands_one_write(daemon):
    with daemon.session() as c:
        c.send(b"NOOP\r\n" * 40 + b"RSET\r\nVRFY x\r\nBOGUS\r\nNOOP\r\n")
        for _ in range(40):
            assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.reply(), 252, "2.1.5")
        assert_reply(c.reply(), 500, "5.5.2")
        assert_reply(c.reply(), 250, "2.0.0")


def test_pipelined_replies_larger_than_socket_buffers(daemon):
    """A client that pipelines far ahead of its reading still gets every
    reply once and in order: what the socket does not take at once waits
    in the output buffer, and reading pauses while that is full."""
    n = 150000
    with daemon.session() as c:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 262144)
        sender = threading.Thread(target=c.send, args=(b"NOOP\r\nVRFY x\r\n" * n + b"QUIT\r\n",))
        sender.start()
        # About 13 MB of replies, while the server's send buffer grows to
        # 4 MB at most: unread for a while, sends come up short.
        time.sleep(1)
        got = bytearray()
        c.sock.settimeout(60)
        while chunk := c.sock.recv(1 << 20):
            got += chunk
        sender.join()
    lines = bytes(got).split(b"\r\n")
    assert lines[-1] == b""
    assert len(lines) == 2 * n + 2, len(lines)
    assert all(lines[i].startswith(b"250 2.0.0 ") for i in range(0, 2 * n, 2))
    assert all(lines[i].startswith(b"252 2.1.5 ") for i in range(1, 2 * n, 2))
    assert lines[2 * n].startswith(b"221 2.0.0 "), lines[2 * n]


def test_pipelined_transaction_after_data_and_quit(daemon):
    """Commands pipelined right behind the final dot are processed after it."""
    msg = make_message("<behind-dot@example.net>")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\nNOOP\r\nQUIT\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
        assert_reply(c.reply(), 250, "2.0.0")
        assert_reply(c.reply(), 221, "2.0.0")
        assert c.wait_closed()
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == msg


@pytest.mark.parametrize("arg", ['x)(;@"', "a..b", "-lead.example", "[300.1.1.1]",
                                 "h\u00e9.example"])
def test_ehlo_argument_must_be_a_domain_or_literal(daemon, arg):
    # RFC 5321 4.1.1.1: what is not a Domain or address literal is refused,
    # so that the Received trace field stays valid (4.4)
    with daemon.session(helo=None) as c:
        assert_reply(c.cmd(f"EHLO {arg}"), 501, "5.5.4")
        assert_reply(c.cmd(f"HELO {arg}"), 501, "5.5.4")
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), 503, "5.5.1")


@pytest.mark.parametrize("arg", ["[127.0.0.1]", "[IPv6:::1]", "client.example", "my_pc"])
def test_ehlo_literal_lands_in_received(daemon, arg):
    with daemon.session(helo=None) as c:
        assert c.cmd(f"EHLO {arg}").code == 250
        assert_reply(send_message(c, "a@example.net", ["user@localhost"],
                                  make_message("<helo@example.net>")), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.received_fields()["helo"] == arg


def test_mail_from_ipv4_literal_with_leading_zero(daemon):
    # Snum = 1*3DIGIT (RFC 5321 4.1.3)
    with daemon.session() as c:
        assert_reply(c.cmd("MAIL FROM:<a@[01.2.3.4]>"), 250, "2.1.0")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("MAIL FROM:<a@[1.2.3.256]>"), 501, "5.1.7")
