"""SMTP smuggling: only <CRLF>.<CRLF> ends DATA; bare CR/LF is refused."""

import time

import pytest

from mwharness import assert_reply, make_message, queue_id_of

OUTER = (b"From: attacker@example.net\r\nTo: user@localhost\r\nSubject: outer\r\n"
         b"Message-ID: <outer@example.net>\r\n\r\nouter body")
SMUGGLED = (b"MAIL FROM:<admin@example.org>\r\n"
            b"RCPT TO:<victim@localhost>\r\n"
            b"DATA\r\n"
            b"From: admin@example.org\r\nTo: victim@localhost\r\nSubject: smuggled\r\n"
            b"Message-ID: <smuggled@example.net>\r\n\r\nsmuggled body")

ENDINGS = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r"]


def _good_message_after(daemon, c):
    """Send a legitimate message in the same session; return its queue id."""
    good = make_message("<good-after@example.net>", subject="legit")
    assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
    assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
    assert c.cmd("DATA").code == 354
    c.send(good + b".\r\n")
    r = c.reply()
    assert_reply(r, 250, "2.0.0", contains="queued as")
    return queue_id_of(r), good


def _assert_only_good_delivered(daemon, qid, good):
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.received_fields()["id"] == qid
    assert d.message == good
    assert daemon.mail_files("localhost", "victim") == []
    assert len(daemon.all_mail_files()) == 1, daemon.all_mail_files()
    queued = [e.get("queue") for e in daemon.log_events("queued")]
    assert queued == [qid], f"more than the legitimate message was queued: {queued}"


@pytest.mark.parametrize("ending", ENDINGS, ids=[e.decode().replace("\r", "CR").replace("\n", "LF")
                                                 for e in ENDINGS])
def test_smuggled_transaction_is_one_rejected_message(daemon, ending):
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<attacker@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(OUTER + ending + SMUGGLED + b"\r\n.\r\n")
        # exactly one reply for the whole thing ...
        assert_reply(c.reply(), 550, "5.6.0")
        # ... the very next reply belongs to our next command, nothing in between
        r = c.cmd("HELP")
        assert r.code == 214, f"extra reply after the 550 (smuggled commands executed?): {r}"
        qid, good = _good_message_after(daemon, c)
    _assert_only_good_delivered(daemon, qid, good)


@pytest.mark.parametrize("bad", [b"Subject: a\nb", b"bare\rcr", b"end with bare lf\n", b"crcr\r\r\n"],
                         ids=["LF-in-header", "CR-in-body", "LF-at-end", "CR-before-CRLF"])
def test_bare_cr_or_lf_anywhere_rejected(daemon, bad):
    msg = b"Message-ID: <bare@example.net>\r\n" + (bad if bad.startswith(b"Subject") else
                                                   b"Subject: x\r\n\r\n" + bad)
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b"\r\n.\r\n")
        assert_reply(c.reply(), 550, "5.6.0")
        assert c.cmd("HELP").code == 214
        qid, good = _good_message_after(daemon, c)
    _assert_only_good_delivered(daemon, qid, good)


def test_dot_stuffing_undone_raw(daemon):
    sent = (b"Subject: dots\r\nMessage-ID: <dots@example.net>\r\n\r\n"
            b"..\r\n"            # a lone dot line, stuffed
            b"...three\r\n"
            b".. x\r\n"
            b"no dot . in the middle\r\n")
    expected = (b"Subject: dots\r\nMessage-ID: <dots@example.net>\r\n\r\n"
                b".\r\n..three\r\n. x\r\nno dot . in the middle\r\n")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(sent + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == expected


def test_data_end_split_across_writes(daemon):
    # the terminator may arrive in pieces; only the full CRLF.CRLF ends DATA
    msg = make_message("<split@example.net>")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg[:-2])
        for piece in (b"\r", b"\n", b".", b"\r", b"\n"):
            time.sleep(0.05)  # separate segments; not a pass/fail timing
            c.send(piece)
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == msg


def test_dot_stuffed_first_line_and_empty_message(daemon):
    """The CRLF of the DATA command line counts: a dot at the very start of
    the data is stuffing (or the end, for an empty message)."""
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<first@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(b"..starts with a dot\r\n\r\nbody\r\n.\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")

        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<empty@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "first", 1)
    assert d.message == b".starts with a dot\r\n\r\nbody\r\n"
    [e] = daemon.wait_mail("localhost", "empty", 1)
    assert e.message == b""
