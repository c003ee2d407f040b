"""CHUNKING (RFC 3030): BDAT over a raw socket."""

import pytest

from mwharness import ConnectionClosed, assert_reply, queue_id_of


def bdat(conn, chunk, last=False):
    conn.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
    return conn.reply()


@pytest.mark.parametrize("last_empty", [False, True], ids=["last-with-data", "BDAT-0-LAST"])
def test_bdat_chunks_then_last(daemon, last_empty):
    chunks = [
        b"From: sender@example.net\r\nTo: user@localhost\r\nSubject: bdat\r\n"
        b"Message-ID: <bdat.1@example.net>\r\n\r\nfirst chunk ends mid-",
        # no dot-stuffing in BDAT: a lone dot line and leading dots are data
        b"line\r\n.\r\n..two dots stay two\r\n.one dot stays\r\nMAIL FROM:<x@y>\r\n",
        b"" if last_empty else b"final chunk\r\n",
    ]
    with daemon.session() as c:
        ehlo = c.cmd("EHLO client.test")
        assert "CHUNKING" in [l.split()[0].upper() for l in ehlo.lines if l.strip()]
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert_reply(bdat(c, chunks[0]), 250, "2.0.0")
        assert_reply(bdat(c, chunks[1]), 250, "2.0.0")
        r = bdat(c, chunks[2], last=True)
        assert_reply(r, 250, "2.0.0", contains="queued as")
        qid = queue_id_of(r)
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.received_fields()["id"] == qid
    assert d.message == b"".join(chunks)
    assert len(daemon.all_mail_files()) == 1


def test_bdat_8bit_binaryish_bytes(daemon):
    # every byte value except NUL, CR and LF, in CRLF-terminated lines
    raw = bytes(b for b in range(1, 256) if b not in (10, 13))
    body = b"".join(raw[i:i + 50] + b"\r\n" for i in range(0, len(raw), 50))
    msg = b"Subject: binary-ish\r\nMessage-ID: <bdat.8bit@example.net>\r\n\r\n" + body
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net> BODY=8BITMIME").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        half = len(msg) // 2
        assert_reply(bdat(c, msg[:half]), 250, "2.0.0")
        assert_reply(bdat(c, msg[half:], last=True), 250, "2.0.0", contains="queued as")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == msg


def test_bdat_pipelined(daemon):
    c1 = b"Subject: pipelined bdat\r\nMessage-ID: <bdat.pipe@example.net>\r\n\r\n"
    c2 = b"RSET\r\nQUIT\r\nthese lines are data, not commands\r\n"
    with daemon.session() as c:
        c.send(b"MAIL FROM:<sender@example.net>\r\n"
               b"RCPT TO:<user@localhost>\r\n"
               + b"BDAT %d\r\n" % len(c1) + c1
               + b"BDAT %d LAST\r\n" % len(c2) + c2
               + b"NOOP\r\n")
        r = c.reply()
        assert r.code == 250, f"MAIL: {r}"
        assert_reply(c.reply(), 250, "2.1.5")
        assert_reply(c.reply(), 250, "2.0.0")
        r = c.reply()
        assert_reply(r, 250, "2.0.0", contains="queued as")
        assert_reply(c.reply(), 250, "2.0.0")  # the NOOP: QUIT inside the chunk was data
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == c1 + c2


def test_bdat_two_messages_in_one_session(daemon):
    with daemon.session() as c:
        ids = []
        for n in range(2):
            msg = b"Subject: n%d\r\nMessage-ID: <bdat.two.%d@example.net>\r\n\r\nbody %d\r\n" % (n, n, n)
            assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
            assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
            r = bdat(c, msg, last=True)
            assert_reply(r, 250, "2.0.0", contains="queued as")
            ids.append(queue_id_of(r))
        assert ids[0] != ids[1]
    got = daemon.wait_mail("localhost", "user", 2)
    assert sorted(d.header("Message-ID") for d in got) == ["<bdat.two.0@example.net>",
                                                            "<bdat.two.1@example.net>"]


def test_bdat_chunk_consumed_even_when_refused(daemon):
    """A BDAT refused for lack of a transaction still frames its chunk: the
    chunk's bytes must never run as commands."""
    chunk = b"QUIT\r\nRSET\r\nNOOP\r\n"
    with daemon.session() as c:
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk + b"HELP\r\n")
        r = c.reply()
        assert r.code == 503, r
        assert r.enhanced and r.enhanced.startswith("5.5."), r
        r = c.reply()
        assert r.code == 214, f"chunk bytes were executed as commands: {r}"


def test_bdat_too_large_refused_and_session_usable(mw):
    mw.start(max_message_size=10000)
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        big = (b"x" * 78 + b"\r\n") * 300
        c.send(b"BDAT %d LAST\r\n" % len(big) + big + b"NOOP\r\n")
        assert_reply(c.reply(), 552, "5.3.4")
        assert_reply(c.reply(), 250, "2.0.0")   # the NOOP: the chunk was consumed
        msg = b"Subject: small\r\nMessage-ID: <bdat.small@example.net>\r\n\r\nok\r\n"
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert_reply(bdat(c, msg, last=True), 250, "2.0.0", contains="queued as")
    [d] = mw.wait_mail("localhost", "user", 1)
    assert d.message == msg
    assert len(mw.all_mail_files()) == 1


MSG = b"Subject: spelled\r\nMessage-ID: <bdat.spelled@example.net>\r\n\r\nok\r\n"


def open_txn(c):
    assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
    assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")


# chunk-size = 1*DIGIT (RFC 3030): leading zeros are legal, and the spaces
# around LAST are no reason to drop the connection.
@pytest.mark.parametrize("command", [b"BDAT %d  LAST", b"BDAT %d LAST ", b"BDAT 0000000000000000000000%d LAST"],
                         ids=["two-spaces", "trailing-space", "leading-zeros"])
def test_bdat_other_spellings_accepted(daemon, command):
    with daemon.session() as c:
        open_txn(c)
        c.send(command % len(MSG) + b"\r\n" + MSG)
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == MSG


def test_bdat_bad_end_marker_is_501_and_the_session_goes_on(daemon):
    with daemon.session() as c:
        open_txn(c)
        c.send(b"BDAT %d FINAL\r\n" % len(MSG) + MSG + b"NOOP\r\n")
        assert_reply(c.reply(), 501, "5.5.4")
        assert_reply(c.reply(), 250, "2.0.0")   # the NOOP: the chunk was skipped
        assert_reply(bdat(c, MSG, last=True), 250, "2.0.0", contains="queued as")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == MSG


def test_bdat_unreadable_size_closes_with_421(daemon):
    with daemon.session() as c:
        open_txn(c)
        c.send(b"BDAT ten LAST\r\nMAIL FROM:<smuggled@example.net>\r\n")
        assert_reply(c.reply(), 421, "4.5.4")
        with pytest.raises(ConnectionClosed):
            c.reply()
    assert daemon.all_mail_files() == []
