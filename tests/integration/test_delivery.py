"""Local delivery into Maildir: trace headers and exact message bytes."""

import datetime
import email.utils
import re
import smtplib
import socket
import time
import urllib.parse

from mwharness import (DELIVERY_TIMEOUT, assert_reply, make_message, parse_logfmt, queue_id_of,
                       send_message, wait_until)


def test_smtplib_message_delivered_exactly(daemon):
    msg = (b"From: Sender <sender@example.net>\r\n"
           b"To: user@localhost\r\n"
           b"Subject: integration test 1\r\n"
           b"Message-ID: <t1.0001@example.net>\r\n"
           b"\r\n"
           b"first line\r\n"
           b".a line that starts with a dot\r\n"
           b"..two dots\r\n"
           b".\tdot tab\r\n"
           b"   spaces kept   \r\n"
           b"\r\n"
           b"last line\r\n")
    with smtplib.SMTP("127.0.0.1", daemon.port, local_hostname="client.test", timeout=30) as s:
        code, _ = s.ehlo()
        assert code == 250
        assert s.mail("sender@example.net")[0] == 250
        code, resp = s.rcpt("user@localhost")
        assert code == 250, resp
        code, resp = s.data(msg)  # smtplib dot-stuffs; the server must undo it
        assert code == 250, resp
    resp = resp.decode()
    assert resp.startswith("2.0.0 Ok: queued as "), resp
    qid = queue_id_of(resp)

    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.return_path == "<sender@example.net>"
    assert d.delivered_to == "user@localhost"
    m = re.fullmatch(
        rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n"
        rb"\tby mx\.test \(mailwarden\) with ESMTP id (\S+)\r\n"
        rb"\tfor <user@localhost>; ([^\r\n]+)\r\n", d.received_raw)
    assert m, f"Received header not as specified: {d.received_raw!r}"
    assert m.group(1).decode() == qid, "queue id in Received differs from the 250 reply"
    date = email.utils.parsedate_to_datetime(m.group(2).decode())  # raises if not an RFC 5322 date
    if date.tzinfo is None:  # "-0000"
        date = date.replace(tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - date).total_seconds()) < 86400, f"implausible Received date {m.group(2)!r}"
    # everything after the trace headers is exactly what was sent
    assert d.message == msg
    assert d.raw == (b"Return-Path: <sender@example.net>\r\nDelivered-To: user@localhost\r\n"
                     + d.authres_raw + d.received_spf_raw + d.received_raw + msg)

    # the log tells the story keyed by queue id
    daemon.wait_log(lambda l: "event=queued" in l and f"queue={qid}" in l, what="event=queued")
    daemon.wait_log(lambda l: "event=delivered" in l and f"queue={qid}" in l, what="event=delivered")


def test_log_has_connect_and_disconnect(daemon):
    with daemon.session() as c:
        local_port = c.sock.getsockname()[1]
        assert_reply(c.cmd("QUIT"), 221, "2.0.0")
        assert c.wait_closed()
    line = daemon.wait_log(lambda l: "event=connect" in l and str(local_port) in l,
                           what="event=connect naming our client port")
    # event=connect session=... client=127.0.0.1 port=40000 listener=smtp
    fields = parse_logfmt(line)
    assert fields.get("client") == "127.0.0.1", line
    assert fields.get("port") == str(local_port), line
    assert fields.get("listener") == "smtp", line
    assert fields.get("level") == "info" and "ts" in fields, line
    session = re.search(r"session=(\S+)", line)
    assert session, line
    daemon.wait_log(lambda l: "event=disconnect" in l and f"session={session.group(1)}" in l,
                    what="event=disconnect for our session")


def _received_for(daemon, greet_cmd, mail_params="", body=None):
    with daemon.connect() as c:
        assert c.greeting().code == 220
        r = c.cmd(f"{greet_cmd} client.test")
        assert r.code == 250, r
        assert c.cmd(f"MAIL FROM:<sender@example.net>{mail_params}").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        msg = body or make_message("<proto@example.net>")
        c.send(msg + b".\r\n")
        r = c.reply()
        assert_reply(r, 250, "2.0.0")
        qid = queue_id_of(r)
    [d] = daemon.wait_mail("localhost", "user", 1)
    f = d.received_fields()
    assert f["id"] == qid
    assert f["helo"] == "client.test"
    assert f["ip"] == "127.0.0.1"
    assert f["by"] == "mx.test"
    assert d.message == msg
    return f


def test_received_protocol_helo_is_smtp(daemon):
    assert _received_for(daemon, "HELO")["proto"] == "SMTP"


def test_received_protocol_ehlo_is_esmtp(daemon):
    assert _received_for(daemon, "EHLO")["proto"] == "ESMTP"


def test_received_protocol_smtputf8_is_utf8smtp(daemon):
    body = make_message("<utf8@example.net>", subject="Grüße aus Köln",
                        body="Größe ✓ — 8-bit body\r\n")
    assert _received_for(daemon, "EHLO", " SMTPUTF8 BODY=8BITMIME", body)["proto"] == "UTF8SMTP"


def test_8bit_data_preserved(daemon):
    body = bytes(b for b in range(0x20, 0x100) if b != 0x7f)
    msg = (b"Subject: eight bit\r\nMessage-ID: <8bit@example.net>\r\n\r\n"
           + body[:80] + b"\r\n" + body[80:] + b"\r\n")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net> BODY=8BITMIME").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == msg


def test_large_message_byte_exact(daemon):
    # ~3 MB over many reads: every buffer boundary must keep the bytes intact
    lines = [(f"{n:07d} " + "abcdefghijklmnopqrstuvwxyz0123456789" * 2).encode() for n in range(40000)]
    lines[1000] = b"." + lines[1000]            # dot-stuffed below
    body = b"\r\n".join(lines) + b"\r\n"
    msg = b"Subject: large\r\nMessage-ID: <large@example.net>\r\n\r\n" + body
    stuffed = msg.replace(b"\r\n.", b"\r\n..")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(stuffed + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert len(d.message) == len(msg)
    assert d.message == msg


def test_message_trickled_in_tiny_pieces(daemon):
    """The DATA parser must keep its state across reads of any size."""
    msg = (b"Subject: trickle\r\nMessage-ID: <trickle@example.net>\r\n\r\n"
           b"line one\r\n.\r\n.dot\r\n\r\n.\r\nlast\r\n")
    stuffed = msg.replace(b"\r\n.", b"\r\n..")
    with daemon.session() as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        data = stuffed + b".\r\n"
        for i in range(0, len(data), 3):
            c.send(data[i:i + 3])
            time.sleep(0.002)  # separate segments; not a pass/fail timing
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.message == msg


def test_multiple_recipients_one_copy_each_without_for(daemon):
    msg = make_message("<multi@example.net>")
    with daemon.session() as c:
        r = send_message(c, "sender@example.net", ["alice@localhost", "bob@example.org"], msg)
        assert_reply(r, 250, "2.0.0")
        qid = queue_id_of(r)
    [a] = daemon.wait_mail("localhost", "alice", 1)
    [b] = daemon.wait_mail("example.org", "bob", 1)
    assert a.delivered_to == "alice@localhost"
    assert b.delivered_to == "bob@example.org"
    for d in (a, b):
        assert d.return_path == "<sender@example.net>"
        f = d.received_fields()
        assert f["id"] == qid
        assert f["for"] is None, f"'for' clause with several recipients: {d.received!r}"
        assert d.message == msg
    assert len(daemon.all_mail_files()) == 2


def test_recipients_differing_in_case_get_one_copy(daemon):
    # <dup@localhost> and <DUP@localhost> are one Maildir: one copy in it
    msg = make_message("<dup@example.net>")
    with daemon.session() as c:
        r = send_message(c, "sender@example.net",
                         ["dup@localhost", "DUP@localhost", "Dup@LOCALHOST", "other@localhost"], msg)
        assert_reply(r, 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "dup", 1)
    daemon.wait_mail("localhost", "other", 1)
    assert d.delivered_to == "dup@localhost"
    assert len(daemon.all_mail_files()) == 2, daemon.all_mail_files()


def test_null_sender_return_path(daemon):
    msg = make_message("<bounce@example.net>")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<>").code == 250
        assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0")
    [d] = daemon.wait_mail("localhost", "user", 1)
    assert d.return_path == "<>"
    assert d.message == msg


def test_domain_case_insensitive_and_mailbox_lowercased(daemon):
    msg = make_message("<case@example.net>")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<John.Doe@LocalHost>"), 250, "2.1.5")
        assert_reply(c.cmd("RCPT TO:<Mary@EXAMPLE.ORG>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0")
    [d1] = daemon.wait_mail("localhost", "john.doe", 1)
    [d2] = daemon.wait_mail("example.org", "mary", 1)
    assert d1.message == msg and d2.message == msg
    domains = sorted(p.name for p in daemon.mail_root.iterdir())
    assert domains == ["example.org", "localhost"], domains


def test_unsafe_local_part_is_percent_encoded(daemon):
    # '/' is legal atext in a local part but must never become a path separator
    msg = make_message("<slash@example.net>")
    with daemon.session() as c:
        r = send_message(c, "sender@example.net", ["a/b@localhost"], msg)
        assert_reply(r, 250, "2.0.0")
    files = wait_until(daemon.all_mail_files, DELIVERY_TIMEOUT, what="delivery of a/b@localhost")
    assert len(files) == 1, files
    rel = files[0].relative_to(daemon.mail_root).parts
    assert rel[0] == "localhost" and rel[2] == "new" and len(rel) == 4, rel
    mailbox = rel[1]
    assert "/" not in mailbox and mailbox not in (".", "..")
    assert "%" in mailbox, f"unsafe byte not percent-encoded: {mailbox!r}"
    assert urllib.parse.unquote(mailbox).lower() == "a/b"
    assert not (daemon.mail_root / "localhost" / "a").exists()


def test_data_dir_option_overrides_config(mw):
    configured = mw.workdir / "configured-data"
    configured.mkdir()
    mw.start(data_dir=str(configured))  # the harness passes --data-dir <workdir>/data
    msg = make_message("<datadir@example.net>")
    with mw.session() as c:
        assert_reply(send_message(c, "sender@example.net", ["user@localhost"], msg), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "user", 1)
    assert d.message == msg
    assert not any(p.is_file() for p in configured.rglob("*")), "config data_dir used despite --data-dir"


def test_mailbox_names_cannot_escape_or_collide(daemon):
    """Quoted local parts may hold '/', '..' and spaces: each must map into its
    own directory directly under mail/<domain>/. A literal 'a%2Fb', which the
    encoding of 'a/b' could be confused with, cannot even be addressed: '%'
    in a local address is routing syntax and refused (no percent hack)."""
    rcpts = ['"../../etc"@localhost', '"john doe"@localhost', "a/b@localhost",
             '"x/../../../y"@localhost']
    msg = make_message("<escape@example.net>")
    with daemon.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<a%2Fb@localhost>"), 550, "5.7.1")
        for r in rcpts:
            assert_reply(c.cmd(f"RCPT TO:<{r}>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0", contains="queued as")
    files = wait_until(lambda: (lambda f: f if len(f) >= len(rcpts) else None)(daemon.all_mail_files()),
                       DELIVERY_TIMEOUT, what="all deliveries")
    assert len(files) == len(rcpts), files
    mailboxes = set()
    for f in files:
        rel = f.relative_to(daemon.mail_root).parts
        assert len(rel) == 4 and rel[0] == "localhost" and rel[2] == "new", f
        assert rel[1] not in (".", "..") and "/" not in rel[1]
        mailboxes.add(rel[1])
    assert len(mailboxes) == len(rcpts), f"different recipients share a mailbox: {sorted(mailboxes)}"
    # no Maildir was created anywhere but directly under mail/<domain>/
    maildirs = {p.parent for p in daemon.workdir.rglob("new") if p.is_dir()}
    assert all(p.parent.parent == daemon.mail_root for p in maildirs), sorted(maildirs)
    assert not (daemon.workdir / "etc").exists() and not (daemon.data_dir / "etc").exists()
