"""Error limit, line length limit, connection limits."""

from mwharness import REPLY_TIMEOUT, ConnectionClosed, assert_reply, make_message, send_message, wait_until


def test_too_many_errors_gets_421_and_close(mw):
    max_errors = 3
    mw.start(max_errors=max_errors)
    with mw.session() as c:
        replies = []
        for _ in range(max_errors + 3):
            try:
                r = c.cmd("BOGUS")
            except (ConnectionClosed, OSError) as e:
                raise AssertionError(f"closed without a 421 after {replies}: {e}")
            replies.append(r)
            if r.code == 421:
                break
        codes = [r.code for r in replies]
        assert 421 in codes, f"no 421 after {len(replies)} errors with max_errors={max_errors}: {codes}"
        k = codes.index(421)
        # "max_errors error replies before 421": the 421 comes after max_errors
        # (or, at the earliest, in place of the max_errors-th) error reply
        assert k in (max_errors - 1, max_errors), f"421 after {k} error replies, max_errors={max_errors}"
        for r in replies[:k]:
            assert_reply(r, 500, "5.5.2")
        assert_reply(replies[k], 421, "4.7.0")
        assert c.wait_closed(), "connection not closed after 421"
    # the daemon itself goes on
    with mw.session() as c2:
        assert_reply(c2.cmd("NOOP"), 250, "2.0.0")


def test_line_length_limit_boundary(mw):
    limit = 512
    mw.start(max_line_length=limit)
    with mw.session() as c:
        exact = b"NOOP " + b"x" * (limit - len(b"NOOP ") - 2) + b"\r\n"
        assert len(exact) == limit
        c.send(exact)
        assert_reply(c.reply(), 250, "2.0.0")
        over = b"NOOP " + b"x" * (limit - len(b"NOOP ") - 1) + b"\r\n"
        assert len(over) == limit + 1
        c.send(over)
        assert_reply(c.reply(), 500, "5.5.2")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")


def test_overlong_line_tail_is_not_a_command(mw):
    limit = 512
    mw.start(max_line_length=limit)
    with mw.session() as c:
        # whatever follows the limit inside the same line must be discarded,
        # wherever the daemon cuts: a QUIT there must not be executed
        lines = [b"NOOP " + b"x" * (off - 5) + b"QUIT\r\n" for off in (limit - 2, limit - 1, limit, 1024, 4096)]
        c.send(b"".join(lines) + b"HELP\r\n")
        for _ in lines:
            assert_reply(c.reply(), 500, "5.5.2")
        r = c.reply()
        assert r.code == 214, f"expected the HELP reply, got {r}"


def _open(mw, source=None):
    c = mw.connect(source=source)
    return c, c.greeting()


def test_connection_limit_per_ip(mw):
    mw.start(max_connections_per_ip=2, max_connections=100)
    c1, g1 = _open(mw)
    c2, g2 = _open(mw)
    try:
        assert g1.code == 220 and g2.code == 220, (g1, g2)
        c3, g3 = _open(mw)
        with c3:
            assert_reply(g3, 421, "4.7.0")
            assert c3.wait_closed(), "over-limit connection not closed"
        # another client address is not affected
        c4, g4 = _open(mw, source="127.0.0.2")
        with c4:
            assert g4.code == 220, g4
            assert_reply(c4.cmd("NOOP"), 250, "2.0.0")
        # the established sessions still work
        assert_reply(c1.cmd("NOOP"), 250, "2.0.0")
        # once one closes, a new connection from the same address is accepted
        c1.cmd("QUIT")
        c1.wait_closed()

        def accepted():
            c, g = _open(mw)
            c.close()
            return g.code == 220
        wait_until(accepted, REPLY_TIMEOUT, interval=0.2, what="a slot freed by QUIT")
    finally:
        c1.close()
        c2.close()


def test_connection_limit_global(mw):
    mw.start(max_connections=2, max_connections_per_ip=50)
    c1, g1 = _open(mw, source="127.0.0.1")
    c2, g2 = _open(mw, source="127.0.0.2")
    try:
        assert g1.code == 220 and g2.code == 220, (g1, g2)
        for src in ("127.0.0.3", "127.0.0.4", "127.0.0.3"):
            c3, g3 = _open(mw, source=src)
            with c3:
                assert_reply(g3, 421, "4.7.0")
                assert c3.wait_closed()
        assert_reply(c2.cmd("NOOP"), 250, "2.0.0")
        for c in (c1, c2):
            assert_reply(c.cmd("QUIT"), 221, "2.0.0")
            c.wait_closed()
    finally:
        c1.close()
        c2.close()

    # refused connections must not leak slots: both slots come back
    def both_accepted():
        a, ga = _open(mw, source="127.0.0.5")
        b, gb = _open(mw, source="127.0.0.6")
        a.close()
        b.close()
        return ga.code == 220 and gb.code == 220
    wait_until(both_accepted, REPLY_TIMEOUT, interval=0.2, what="both connection slots free again")


def test_command_timeout_closes_idle_session(mw):
    mw.start(command_timeout=1)
    with mw.session() as c:
        r = c.reply()  # unsolicited, once the idle session times out
        assert r.code == 421 and r.enhanced and r.enhanced.startswith("4."), r
        assert c.wait_closed()
    with mw.session() as c2:  # the daemon goes on
        assert_reply(c2.cmd("NOOP"), 250, "2.0.0")


def test_data_timeout_discards_partial_message(mw):
    mw.start(command_timeout=300, data_timeout=1)
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(b"Subject: stalled\r\n\r\nthe client stops here\r\n")
        r = c.reply()
        assert r.code == 421 and r.enhanced and r.enhanced.startswith("4."), r
        assert c.wait_closed()
    # a later message is delivered, and it is the only one
    msg = make_message("<after-timeout@example.net>")
    with mw.session() as c:
        assert_reply(send_message(c, "sender@example.net", ["user@localhost"], msg), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "user", 1)
    assert d.message == msg
    assert len(mw.all_mail_files()) == 1
