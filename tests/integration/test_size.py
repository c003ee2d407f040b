"""SIZE (RFC 1870) and max_message_size."""

from mwharness import assert_has_enhanced, assert_reply, make_message, queue_id_of

LIMIT = 10000


def test_size_advertised(mw):
    mw.start(max_message_size=LIMIT)
    with mw.connect() as c:
        assert c.greeting().code == 220
        r = c.ehlo()
        keywords = [l.upper().split() for l in r.lines[1:]]
        assert ["SIZE", str(LIMIT)] in keywords, r


def test_message_under_limit_accepted_intact(mw):
    mw.start(max_message_size=LIMIT)
    msg = make_message("<under@example.net>", body=("z" * 78 + "\r\n") * 100)
    assert LIMIT * 3 // 4 < len(msg) < LIMIT
    with mw.session() as c:
        assert c.cmd(f"MAIL FROM:<sender@example.net> SIZE={len(msg)}").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
    [d] = mw.wait_mail("localhost", "user", 1)
    assert d.message == msg


def test_size_refused_at_mail_and_at_end_of_data(mw):
    mw.start(max_message_size=LIMIT)
    with mw.session() as c:
        # declared too large: refused at MAIL
        assert_reply(c.cmd(f"MAIL FROM:<sender@example.net> SIZE={LIMIT * 3}"), 552, "5.3.4")
        # a declared size equal to the limit is not "larger"
        assert c.cmd(f"MAIL FROM:<sender@example.net> SIZE={LIMIT}").code == 250
        assert_reply(c.cmd("RSET"), 250, "2.0.0")
        # a declared size within the limit is fine, then the data lies
        r = c.cmd("MAIL FROM:<sender@example.net> SIZE=500")
        assert r.code == 250, r
        assert_has_enhanced(r)
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        big = make_message("<too-big@example.net>", body="x" * 78 + "\r\n") + (b"y" * 78 + b"\r\n") * 300
        assert len(big) > LIMIT * 2
        c.send(big + b".\r\n")
        assert_reply(c.reply(), 552, "5.3.4")

        # same without SIZE=: only the end of data can tell
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(big + b".\r\n")
        assert_reply(c.reply(), 552, "5.3.4")

        # the session is still usable: a small message goes through
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
        small = make_message("<small@example.net>")
        assert c.cmd(f"MAIL FROM:<sender@example.net> SIZE={len(small)}").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(small + b".\r\n")
        r = c.reply()
        assert_reply(r, 250, "2.0.0", contains="queued as")
        qid = queue_id_of(r)
    [d] = mw.wait_mail("localhost", "user", 1)
    assert d.received_fields()["id"] == qid
    assert d.message == small
    # nothing of the refused messages was delivered anywhere
    assert len(mw.all_mail_files()) == 1
    queued = mw.log_events("queued")
    assert [e.get("queue") for e in queued] == [qid], queued


def test_size_of_twenty_digits_is_over_the_limit_not_a_syntax_error(mw):
    # size-value = 1*20DIGIT (RFC 1870): past 2^64 but legal, so 552
    mw.start(max_message_size=LIMIT)
    with mw.session() as c:
        assert_reply(c.cmd("MAIL FROM:<sender@example.net> SIZE=99999999999999999999"), 552, "5.3.4")
        assert_reply(c.cmd("MAIL FROM:<sender@example.net> SIZE=999999999999999999999"), 501, "5.5.4")
        assert_reply(c.cmd("MAIL FROM:<sender@example.net> SIZE=00000000000000000100"), 250, "2.1.0")
