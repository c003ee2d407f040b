"""Outbound delivery: mail for a remote domain leaves over SMTP for the
domain's MX hosts, found through a zone file (offline DNS) and pointed at
loopback peers of the tests' own (smtppeer.Peer on 127.0.0.2 and up, on
the port the daemon's outbound_port names). What the peer receives is
compared byte for byte with what was sent (our trace fields aside); a
refusal comes back as a bounce (RFC 3464) to the sender, which the tests
parse with Python's email package.
"""

import email
import json
import email.policy
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from mwharness import SMTPConn, free_port, send_message, wait_until
from smtppeer import Peer


def zone(tmp_path, text):
    z = tmp_path / "out.zone"
    z.write_text(text)
    return z


def start(mw, tmp_path, zone_text, outport, listen_port=None, **settings):
    settings.setdefault("relay_networks", ["127.0.0.0/8"])
    settings.setdefault("retry_min", 1)
    settings.setdefault("retry_max", 2)
    settings["outbound_port"] = outport
    return mw.start(port=listen_port, extra_args=("--dns-zone", str(zone(tmp_path, zone_text))),
                    **settings)


BASIC = """
example.net.     IN MX 10 mx.example.net.
mx.example.net.  IN A 127.0.0.2
"""


def message(subject, body="hello there\r\n.leading dot\r\n", extra=""):
    return (f"From: sender@example.org\r\nTo: user@example.net\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.org>\r\n{extra}\r\n{body}").encode()


def submit(mw, sender, rcpts, data):
    with mw.session() as c:
        r = send_message(c, sender, rcpts, data.replace(b"\r\n.", b"\r\n.."))
        assert r.code == 250, r
        return r.text.rsplit(" ", 1)[-1]


def strip_trace(data):
    """What we add in front of the message: Received (and Received-SPF,
    Authentication-Results); the rest must be the bytes that were sent."""
    while True:
        m = re.match(rb"(Received|Received-SPF|Authentication-Results): [^\r\n]*\r\n"
                     rb"(?:[ \t][^\r\n]*\r\n)*", data)
        if not m:
            return data
        data = data[m.end():]


@pytest.fixture
def peer():
    peers = []

    def make(host="127.0.0.2", port=None, **kw):
        p = Peer(host=host, port=port or free_port(), **kw)
        peers.append(p)
        return p
    yield make
    for p in peers:
        p.stop()


def test_delivers_byte_exact_to_the_mx(mw, tmp_path, peer):
    p = peer()
    start(mw, tmp_path, BASIC, p.port)
    data = message("exact", body="line one\r\n.dot line\r\n..two dots\r\n\r\nlast\r\n")
    qid = submit(mw, "sender@example.org", ["user@example.net", "other@example.net"], data)
    msgs = p.wait_messages(1)
    assert len(msgs) == 1
    m = msgs[0]
    assert m.mail_from == "sender@example.org"
    assert m.rcpts == ["user@example.net", "other@example.net"]
    assert strip_trace(m.data) == data
    # the delivery is logged per recipient, the way an operator greps it
    for rcpt in ("user@example.net", "other@example.net"):
        ev = mw.wait_event("delivery", queue=qid, rcpt=rcpt, status="sent")
        assert ev["relay"] == f"mx.example.net[127.0.0.2]:{p.port}"
        assert ev["code"] == "250" and ev["dsn"] == "2.0.0"
        assert "delay" in ev
    # and the record is gone once everything is delivered
    wait_until(lambda: not any(mw.queue_dir.glob(f"{qid}.*")) and
               not mw.events("deferred", queue=qid), 30, what="queue record gone")


def test_local_and_remote_recipients_of_one_message(mw, tmp_path, peer):
    p = peer()
    start(mw, tmp_path, BASIC, p.port)
    data = message("mixed")
    submit(mw, "sender@example.org", ["user@example.net", "bob@localhost"], data)
    msgs = p.wait_messages(1)
    assert msgs[0].rcpts == ["user@example.net"]
    wait_until(lambda: mw.mail_files("localhost", "bob"), 30, what="local copy")


def test_retry_after_the_peer_was_down(mw, tmp_path, peer):
    port = free_port()
    start(mw, tmp_path, BASIC, port)
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("retry"))
    mw.wait_event("destination_held", destination="example.net")
    p = peer(port=port)   # the peer comes up: the held destination is tried again
    msgs = p.wait_messages(1)
    assert strip_trace(msgs[0].data) == message("retry")
    mw.wait_event("delivery", queue=qid, status="sent")


def test_fallback_to_the_second_mx(mw, tmp_path, peer):
    port = free_port()
    p2 = peer(host="127.0.0.3", port=port)
    z = """
example.net.      IN MX 10 mx1.example.net.
example.net.      IN MX 20 mx2.example.net.
mx1.example.net.  IN A 127.0.0.2
mx2.example.net.  IN A 127.0.0.3
"""
    start(mw, tmp_path, z, port)   # nothing listens on 127.0.0.2
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("fallback"))
    p2.wait_messages(1)
    ev = mw.wait_event("delivery", queue=qid, status="sent")
    assert ev["relay"].startswith("mx2.example.net[127.0.0.3]")


def test_greeting_4xx_moves_on_to_the_next_mx(mw, tmp_path, peer):
    port = free_port()
    peer(host="127.0.0.2", port=port, greeting="421 4.3.2 busy, try later")
    p2 = peer(host="127.0.0.3", port=port)
    z = """
example.net.      IN MX 10 mx1.example.net.
example.net.      IN MX 20 mx2.example.net.
mx1.example.net.  IN A 127.0.0.2
mx2.example.net.  IN A 127.0.0.3
"""
    start(mw, tmp_path, z, port)
    submit(mw, "sender@example.org", ["user@example.net"], message("greet"))
    p2.wait_messages(1)


def parse_bounce(mw, user="sender", domain="example.org"):
    files = wait_until(lambda: mw.mail_files(domain, user), 60, what="a bounce in the sender's Maildir")
    raw = files[0].read_bytes()
    return email.message_from_bytes(raw, policy=email.policy.compat32), raw


def test_5xx_at_rcpt_bounces_with_every_field(mw, tmp_path, peer):
    p = peer()
    p.rcpt_reply = lambda r: "550 5.1.1 <%s>: no such user here" % r if r.startswith("nobody") \
        else "250 2.1.5 ok"
    start(mw, tmp_path, BASIC, p.port, local_domains=["localhost", "example.org"])
    data = message("bounce-rcpt")
    qid = submit(mw, "sender@example.org", ["nobody@example.net", "user@example.net"], data)
    p.wait_messages(1)
    msg, raw = parse_bounce(mw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["From"].startswith("Mail Delivery System <MAILER-DAEMON@mx.test>")
    parts = msg.get_payload()
    assert [x.get_content_type() for x in parts] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]
    assert "nobody@example.net" in parts[0].get_payload()
    status = parts[1].get_payload()   # [per-message fields, per-recipient fields...]
    assert status[0]["Reporting-MTA"] == "dns; mx.test"
    assert status[0]["Arrival-Date"]
    assert len(status) == 2, "only the failed recipient is reported"
    r = status[1]
    assert r["Final-Recipient"] == "rfc822; nobody@example.net"
    assert r["Action"] == "failed"
    assert r["Status"] == "5.1.1"
    assert r["Remote-MTA"] == "dns; mx.example.net"
    assert re.sub(r"\s+", " ", r["Diagnostic-Code"]) == \
        "smtp; 550 5.1.1 <nobody@example.net>: no such user here"
    assert "Message-ID: <bounce-rcpt@example.org>" in parts[2].get_payload()
    # a bounce goes from the null sender, and the original is gone
    assert b"Return-Path: <>\r\n" in raw
    mw.wait_event("bounce", queue=qid)
    wait_until(lambda: not any(mw.queue_dir.glob(f"{qid}.*")), 30, what="original removed")


def test_5xx_at_end_of_data_bounces(mw, tmp_path, peer):
    p = peer()
    p.data_reply = lambda m: "554 5.7.1 message content rejected"
    start(mw, tmp_path, BASIC, p.port)
    submit(mw, "sender@example.org", ["user@example.net"], message("bounce-data"))
    msg, _ = parse_bounce(mw)
    r = msg.get_payload()[1].get_payload()[1]
    assert r["Status"] == "5.7.1"
    assert r["Action"] == "failed"
    assert "554 5.7.1 message content rejected" in re.sub(r"\s+", " ", r["Diagnostic-Code"])


def test_no_bounce_for_a_bounce(mw, tmp_path, peer):
    p = peer()
    p.rcpt_reply = lambda r: "550 5.1.1 no"
    start(mw, tmp_path, BASIC, p.port)
    qid = submit(mw, "", ["user@example.net"], message("null-sender"))
    mw.wait_event("delivery", queue=qid, status="bounced")
    wait_until(lambda: not any(mw.queue_dir.glob(f"{qid}.*")), 30, what="record removed")
    assert not mw.events("bounce")
    assert not list(mw.mail_root.rglob("new/*"))


def test_null_mx_bounces_without_a_connection(mw, tmp_path, peer):
    # queued while the domain still had an MX (its host down), then the
    # domain publishes a null MX: the next attempt bounces, no connection
    p = peer()
    p.stop()
    z = BASIC + "nomail.example.  IN MX 10 mx.example.net.\n"
    start(mw, tmp_path, z, p.port)
    qid = submit(mw, "sender@example.org", ["user@nomail.example"], message("nullmx"))
    mw.wait_event("destination_held", destination="nomail.example")
    mw.stop()
    zone(tmp_path, BASIC + "nomail.example.  IN MX 0 .\n")
    mw.restart()
    mw.queue_cmd("flush")
    msg, _ = parse_bounce(mw)
    r = msg.get_payload()[1].get_payload()[1]
    assert r["Status"] == "5.1.10"
    assert r["Final-Recipient"] == "rfc822; user@nomail.example"
    ev = mw.wait_event("delivery", queue=qid, status="bounced", dsn="5.1.10")
    assert ev["relay"] == "none"


def test_no_8bit_to_a_7bit_peer(mw, tmp_path, peer):
    p = peer(ehlo=("PIPELINING",))
    start(mw, tmp_path, BASIC, p.port)
    data = message("eightbit", body="caf\u00e9\r\n".encode().decode("latin-1"))
    data = data.decode("latin-1").encode("latin-1")
    with mw.session() as c:
        r = c.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME")
        assert r.code == 250
        assert c.cmd("RCPT TO:<user@example.net>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(data + b".\r\n")
        assert c.reply().code == 250
    msg, _ = parse_bounce(mw)
    r = msg.get_payload()[1].get_payload()[1]
    assert r["Status"] == "5.6.3"
    assert "8BITMIME" in r["Diagnostic-Code"]
    # nothing but EHLO (and the goodbye) went to the peer
    assert not [cmd for cmd in p.commands if cmd.startswith(("MAIL", "RCPT", "DATA"))]
    assert p.messages == []


def test_mx_that_is_ourselves_is_a_loop(mw, tmp_path):
    # the MX host's address and port are our own listener's
    port = free_port()
    z = """
loop.example.     IN MX 10 mx.loop.example.
mx.loop.example.  IN A 127.0.0.1
"""
    start(mw, tmp_path, z, port, listen_port=port)
    qid = submit(mw, "sender@example.org", ["user@loop.example"], message("loop"))
    ev = mw.wait_event("delivery", queue=qid, status="deferred")
    assert ev["dsn"] == "4.4.6"
    assert "loops back to myself" in ev["reply"]
    time.sleep(1)
    assert not mw.events("delivery", queue=qid, status="sent")


def test_delay_warning_and_expiry(mw, tmp_path, peer):
    port = free_port()
    p = peer(port=port)
    p.rcpt_reply = lambda r: "451 4.3.0 try again later"
    start(mw, tmp_path, BASIC, port, delay_warning_time=1, max_queue_lifetime=4)
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("slow"))
    mw.wait_event("delay_warning", queue=qid)
    mw.wait_event("bounce", queue=qid)
    files = wait_until(lambda: len(mw.mail_files("example.org", "sender")) >= 2 and
                       mw.mail_files("example.org", "sender"), 60, what="warning and bounce")
    kinds = {}
    for f in files:
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.compat32)
        r = m.get_payload()[1].get_payload()[1]
        kinds[r["Action"]] = r
    assert kinds["delayed"]["Status"] == "4.3.0"
    assert kinds["delayed"]["Will-Retry-Until"]
    assert kinds["failed"]["Status"] == "4.4.7"
    assert re.sub(r"\s+", " ", kinds["failed"]["Diagnostic-Code"]) == \
        "X-mailwarden; delivery time expired after 4 seconds; the last reply was: " \
        "451 4.3.0 try again later"
    wait_until(lambda: not any(mw.queue_dir.glob(f"{qid}.*")), 30, what="record removed")


def test_restart_resumes_each_recipient_where_it_was(mw, tmp_path, peer):
    port = free_port()
    p = peer(port=port)
    p.rcpt_reply = lambda r: "250 2.1.5 ok" if r.startswith("a@") else "451 4.3.0 later"
    start(mw, tmp_path, BASIC, port, retry_min=3600, retry_max=3600)
    qid = submit(mw, "sender@example.org", ["a@example.net", "b@example.net"], message("resume"))
    p.wait_messages(1)
    mw.wait_event("delivery", queue=qid, rcpt="b@example.net", status="deferred")
    mw.stop()
    p.rcpt_reply = lambda r: "250 2.1.5 ok"
    state = (mw.queue_dir / f"{qid}.state").read_text().splitlines()
    assert "0" in state                                   # a@ delivered
    assert any(l.startswith("T 1 1 ") for l in state)     # b@ deferred, first attempt
    # a restart: the delivered recipient is not sent again, the deferred
    # one waits for its time (an hour): nothing goes out
    mw.restart()
    time.sleep(2)
    with p.lock:
        assert len(p.messages) == 1
    assert p.messages[0].rcpts == ["a@example.net"]


def test_kill9_while_500_messages_go_out(mw, tmp_path, peer):
    """kill -9 in the middle of the outbound flow: after a restart every
    message arrives, and a duplicate at the peer is possible only for a
    message whose 250 came just before the kill (the durability contract);
    they are counted and must stay few."""
    p = peer()
    start(mw, tmp_path, BASIC, p.port, max_connections_per_destination=4)
    total = 500
    ids = [f"<k9-{i}@example.org>" for i in range(total)]
    with mw.session() as c:
        for i, mid in enumerate(ids):
            data = (f"From: sender@example.org\r\nTo: user@example.net\r\nSubject: k9 {i}\r\n"
                    f"Message-ID: {mid}\r\n\r\nbody {i}\r\n").encode()
            r = send_message(c, "sender@example.org", ["user@example.net"], data)
            assert r.code == 250, r
            if i == total // 4:
                wait_until(lambda: len(p.messages) >= 20, 60, what="delivery under way")
    wait_until(lambda: len(p.messages) >= total // 2, 120, what="half delivered")
    mw.kill9()
    before = len(p.messages)
    mw.restart()
    wait_until(lambda: len({m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0]
                            for m in list(p.messages)}) >= total, 180,
               what="every message at the peer")
    got = [m.data.split(b"Message-ID: ")[1].split(b"\r\n")[0].decode() for m in list(p.messages)]
    assert set(got) == set(ids)
    dups = len(got) - len(set(got))
    print(f"kill -9 after {before} of {total}: {dups} duplicate(s) at the peer")
    # at most the messages in flight when the process died: one per session
    assert dups <= 4, f"{dups} duplicates"
    wait_until(lambda: not list(mw.queue_dir.glob("*.state")), 60, what="queue drained")


TLS_ZONE = """
example.net.  IN MX 10 mx.test.
mx.test.      IN A 127.0.0.2
"""


def test_starttls_verified_against_the_configured_ca(mw, tmp_path, peer, pki):
    p = peer(certfile=str(pki.mx_rsa.cert), keyfile=str(pki.mx_rsa.key))
    start(mw, tmp_path, TLS_ZONE, p.port, hostname="out.test",
          outbound_ca_file=str(pki.ca.cert))
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("tls-ok"))
    m = p.wait_messages(1)[0]
    assert m.tls, "the message went in clear text"
    assert strip_trace(m.data) == message("tls-ok")
    ev = mw.wait_event("delivery", queue=qid, status="sent")
    assert re.fullmatch(r"TLSv1\.[23]/[A-Z0-9_-]+/verified", ev["tls"]), ev["tls"]
    # the EHLO after the handshake is a new one (RFC 3207 4.2)
    assert p.commands[:3] == ["EHLO out.test", "STARTTLS", "EHLO out.test"]


def test_starttls_unverified_still_delivers(mw, tmp_path, peer, pki):
    # the system store does not know the test CA: opportunistic TLS goes on
    p = peer(certfile=str(pki.mx_rsa.cert), keyfile=str(pki.mx_rsa.key))
    start(mw, tmp_path, TLS_ZONE, p.port, hostname="out.test")
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("tls-unv"))
    assert p.wait_messages(1)[0].tls
    ev = mw.wait_event("delivery", queue=qid, status="sent")
    assert ev["tls"].endswith("/unverified")


def test_broken_starttls_retried_in_clear(mw, tmp_path, peer):
    p = peer(break_tls=True)
    start(mw, tmp_path, TLS_ZONE, p.port, hostname="out.test")
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("tls-broken"))
    m = p.wait_messages(1)[0]
    assert not m.tls
    ev = mw.wait_event("delivery", queue=qid, status="sent")
    assert ev["tls"] == "none"
    assert mw.events("delivery_attempt", result="tls_failed")
    assert p.commands.count("STARTTLS") == 1


def test_bad_outbound_ca_file_is_a_startup_error(mw, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    with pytest.raises(AssertionError, match="outbound_ca_file"):
        start(mw, tmp_path, BASIC, 25, outbound_ca_file=str(bad))


def test_delivers_to_postfix_smtp_sink(mw, tmp_path):
    import subprocess
    port = free_port()
    import pwd
    import tempfile
    # smtp-sink writes as the postfix user: a directory it can reach
    dump = Path(tempfile.mkdtemp(prefix="mw-sink."))
    os.chown(dump, pwd.getpwnam("postfix").pw_uid, -1)
    os.chmod(dump, 0o755)
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "postfix", "-d", str(dump) + "/%M.",
                             f"127.0.0.2:{port}", "16"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        start(mw, tmp_path, BASIC, port)
        data = message("to-sink", body="from mailwarden to smtp-sink\r\n.dot\r\n")
        qid = submit(mw, "sender@example.org", ["user@example.net"], data)
        mw.wait_event("delivery", queue=qid, status="sent")
        files = wait_until(lambda: list(dump.iterdir()), 30, what="smtp-sink's dump file")
        got = files[0].read_bytes()
        assert data in got.replace(b"\n", b"\r\n").replace(b"\r\r\n", b"\r\n")
    finally:
        sink.kill()
        sink.wait()
        shutil.rmtree(dump, ignore_errors=True)


NULLMX = BASIC + "nomail.example.  IN MX 0 .\n"


def test_rcpt_for_a_null_mx_domain_refused_at_once(mw, tmp_path):
    start(mw, tmp_path, NULLMX, 25)
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.org>").code == 250
        r = c.cmd("RCPT TO:<user@NoMail.Example>")
        assert (r.code, r.enhanced) == (556, "5.1.10"), r
        # a domain with real MX records is accepted in the same transaction
        assert c.cmd("RCPT TO:<user@example.net>").code == 250
    ev = mw.wait_event("rcpt", result="null_mx")
    assert ev["rcpt"] == "user@NoMail.Example"


def test_mail_from_a_null_mx_domain(mw, tmp_path):
    # mail for a local user from a domain that says it sends no mail
    start(mw, tmp_path, NULLMX, 25, relay_networks=[])
    with mw.session() as c:
        r = c.cmd("MAIL FROM:<someone@nomail.example>")
        assert (r.code, r.enhanced) == (550, "5.7.27"), r
        assert c.cmd("MAIL FROM:<someone@example.net>").code == 250
    mw.stop()
    mw.settings["reject_null_mx_sender"] = False
    mw.write_config()
    mw.restart(new_port=False)
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<someone@nomail.example>").code == 250


def start_relayhost(mw, tmp_path, p, pki, password="s3cret"):
    """The smarthost is "localhost" (a name in the test certificate) on the
    peer's port, with AUTH as out@example.org."""
    z = BASIC + "localhost.  IN A 127.0.0.1\n"
    pw = tmp_path / "relay.pass"
    pw.write_text(password + "\n")
    pw.chmod(0o600)
    start(mw, tmp_path, z, 25, hostname="out.test", outbound_ca_file=str(pki.ca.cert),
          relayhost=f"localhost:{p.port}", relayhost_user="out@example.org",
          relayhost_password_file=str(pw))


def test_relayhost_verified_tls_and_auth(mw, tmp_path, peer, pki):
    # the smarthost is "localhost" (in the certificate); every remote
    # recipient goes there, whatever its domain's MX says
    p = peer(host="127.0.0.1", certfile=str(pki.mx_rsa.cert), keyfile=str(pki.mx_rsa.key),
             auth={"out@example.org": "s3cret"})
    start_relayhost(mw, tmp_path, p, pki)
    qid = submit(mw, "sender@example.org", ["user@example.net", "x@elsewhere.example"],
                 message("smarthost"))
    m = p.wait_messages(1)[0]
    assert m.tls and m.user == "out@example.org"
    assert m.rcpts == ["user@example.net", "x@elsewhere.example"]
    ev = mw.wait_event("delivery", queue=qid, rcpt="user@example.net", status="sent")
    assert ev["relay"] == f"localhost[127.0.0.1]:{p.port}"
    assert ev["tls"].endswith("/verified")
    assert "s3cret" not in mw.log


def test_relayhost_never_in_clear_nor_unverified(mw, tmp_path, peer, pki):
    # no STARTTLS at the smarthost: deferred, nothing sent
    p = peer(host="127.0.0.1", auth={"out@example.org": "s3cret"})
    start_relayhost(mw, tmp_path, p, pki)
    submit(mw, "sender@example.org", ["user@example.net"], message("clear"))
    ev = mw.wait_event("destination_held", destination="[relayhost]")
    assert "STARTTLS" in ev["reason"]
    assert not [c for c in p.commands if c.startswith(("AUTH", "MAIL"))]
    mw.stop()
    # a certificate the configured CA did not sign: the handshake fails, no clear-text retry
    p2 = peer(host="127.0.0.1", certfile=str(pki.mx_untrusted.cert),
              keyfile=str(pki.mx_untrusted.key), auth={"out@example.org": "s3cret"})
    mw.write_config()
    text = mw.config_path.read_text().replace(f":{p.port}", f":{p2.port}")
    mw.config_path.write_text(text)
    mw.restart(new_port=False)
    mw.queue_cmd("flush")
    wait_until(lambda: len(mw.events("destination_held")) >= 2, 30, what="held again")
    assert not [c for c in p2.commands if c.startswith(("AUTH", "MAIL"))]
    assert p2.commands.count("STARTTLS") >= 1
    assert p2.messages == []


def test_relayhost_wrong_password_defers(mw, tmp_path, peer, pki):
    p = peer(host="127.0.0.1", certfile=str(pki.mx_rsa.cert), keyfile=str(pki.mx_rsa.key),
             auth={"out@example.org": "right"})
    start_relayhost(mw, tmp_path, p, pki, password="wrong")
    qid = submit(mw, "sender@example.org", ["user@example.net"], message("badpw"))
    ev = mw.wait_event("destination_held", destination="[relayhost]")
    assert "535" in ev["reason"]
    assert p.auth_seen and p.auth_seen[0][2] is False
    assert mw.events("bounce") == []
    assert qid in json.loads(mw.queue_cmd("list", "--json").stdout)["messages"][0]["id"]


def test_relayhost_password_file_open_to_others_is_refused(mw, tmp_path):
    pw = tmp_path / "relay.pass"
    pw.write_text("s3cret\n")
    pw.chmod(0o644)
    with pytest.raises(AssertionError, match="open to other users"):
        start(mw, tmp_path, BASIC, 25, relayhost="localhost:2525",
              relayhost_user="u@example.org", relayhost_password_file=str(pw))


# ---- the DSN extension (RFC 3461)

def dsn_submit(mw, mail_params, rcpts, data):
    """rcpts: [(address, "NOTIFY=... ORCPT=..." or "")]"""
    with mw.session() as c:
        r = c.cmd(f"MAIL FROM:<sender@example.org> {mail_params}".rstrip())
        assert r.code == 250, r
        for addr, params in rcpts:
            r = c.cmd(f"RCPT TO:<{addr}> {params}".rstrip())
            assert r.code == 250, r
        assert c.cmd("DATA").code == 354
        c.send(data.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        r = c.reply()
        assert r.code == 250, r
        return r.text.rsplit(" ", 1)[-1]


def test_dsn_parameters_are_checked(mw, tmp_path):
    start(mw, tmp_path, BASIC, 25)
    with mw.session() as c:
        assert "DSN" in [l.split()[0] for l in c.cmd("EHLO client.test").lines]
        for bad in ("RET=ALL", "RET=", "ENVID=" + "x" * 101, "ENVID=a+2", "ENVID=a+2b",
                    "RET=FULL RET=HDRS"):
            r = c.cmd(f"MAIL FROM:<sender@example.org> {bad}")
            assert (r.code, r.enhanced) == (501, "5.5.4"), (bad, r)
        assert c.cmd("MAIL FROM:<sender@example.org> RET=hdrs ENVID=QQ+2B1").code == 250
        for bad in ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "NOTIFY=SUCCESS,SUCCESS",
                    "NOTIFY=", "ORCPT=rfc822", "ORCPT=;x@y", "ORCPT=rfc822;a+0Ab",
                    "NOTIFY=DELAY NOTIFY=DELAY"):
            r = c.cmd(f"RCPT TO:<user@example.net> {bad}")
            assert (r.code, r.enhanced) == (501, "5.5.4"), (bad, r)
        r = c.cmd("RCPT TO:<user@example.net> NOTIFY=success,Failure ORCPT=rfc822;u+40example.net")
        assert r.code == 250, r


def test_dsn_notify_never_gets_no_bounce(mw, tmp_path, peer):
    p = peer()
    p.rcpt_reply = lambda r: "550 5.1.1 no such user"
    start(mw, tmp_path, BASIC, p.port)
    qid = dsn_submit(mw, "", [("user@example.net", "NOTIFY=NEVER")], message("never"))
    mw.wait_event("delivery", queue=qid, status="bounced")
    wait_until(lambda: not any(mw.queue_dir.glob(f"{qid}.*")), 30, what="record removed")
    assert mw.events("bounce") == []
    assert mw.mail_files("example.org", "sender") == []


def test_dsn_failure_report_with_envid_orcpt_and_full_message(mw, tmp_path, peer):
    p = peer()
    p.rcpt_reply = lambda r: "550 5.1.1 no such user"
    start(mw, tmp_path, BASIC, p.port)
    data = message("full-ret", body="the whole body comes back\r\n")
    dsn_submit(mw, "RET=FULL ENVID=env+2B42",
               [("user@example.net", "NOTIFY=FAILURE ORCPT=rfc822;Alias+40example.net")], data)
    msg, raw = parse_bounce(mw)
    parts = msg.get_payload()
    status = parts[1].get_payload()
    assert status[0]["Original-Envelope-Id"] == "env+42"
    assert status[1]["Original-Recipient"] == "rfc822;Alias@example.net"
    assert status[1]["Final-Recipient"] == "rfc822; user@example.net"
    assert parts[2].get_content_type() == "message/rfc822"
    assert b"the whole body comes back" in raw


def test_dsn_success_reports(mw, tmp_path, peer):
    # a local delivery and a relay to a peer without DSN are reported, as
    # "delivered" and "relayed"; a peer that offers DSN is given the
    # parameters and reports itself, so we say nothing for it
    plain = peer()
    aware = peer(host="127.0.0.3", port=plain.port, ehlo=("PIPELINING", "8BITMIME", "DSN"))
    z = BASIC + "dsn.example.  IN MX 10 mx.dsn.example.\nmx.dsn.example.  IN A 127.0.0.3\n"
    start(mw, tmp_path, z, plain.port)
    qid = dsn_submit(mw, "RET=HDRS ENVID=E1",
                     [("bob@localhost", "NOTIFY=SUCCESS"),
                      ("user@example.net", "NOTIFY=SUCCESS,FAILURE"),
                      ("user@dsn.example", "NOTIFY=SUCCESS ORCPT=rfc822;orig+40dsn.example")],
                     message("success"))
    plain.wait_messages(1)
    aware.wait_messages(1)
    msg, _ = parse_bounce(mw)
    assert msg["Subject"] == "Successful Mail Delivery Report"
    status = msg.get_payload()[1].get_payload()
    got = {r["Final-Recipient"]: r for r in status[1:]}
    assert set(got) == {"rfc822; bob@localhost", "rfc822; user@example.net"}
    assert got["rfc822; bob@localhost"]["Action"] == "delivered"
    assert got["rfc822; user@example.net"]["Action"] == "relayed"
    assert got["rfc822; user@example.net"]["Status"] == "2.0.0"
    mail = [c for c in aware.commands if c.startswith("MAIL")][0]
    rcpt = [c for c in aware.commands if c.startswith("RCPT")][0]
    assert mail.endswith(" RET=HDRS ENVID=E1"), mail
    # xtext (RFC 3461 4): only "+", "=" and what is not printable are encoded
    assert rcpt == "RCPT TO:<user@dsn.example> NOTIFY=SUCCESS ORCPT=rfc822;orig@dsn.example"
    # the peer without DSN heard none of it
    assert not [c for c in plain.commands if "NOTIFY" in c or "RET=" in c]
    wait_until(lambda: not any(mw.queue_dir.glob(f"{qid}.*")), 30, what="record removed")


def test_chunking_peer_gets_bdat(mw, tmp_path, peer):
    p = peer(ehlo=("PIPELINING", "8BITMIME", "CHUNKING"))
    start(mw, tmp_path, BASIC, p.port)
    data = message("chunked", body=".a dot line\r\nplain\r\n")
    qid = submit(mw, "sender@example.org", ["user@example.net"], data)
    m = p.wait_messages(1)[0]
    assert getattr(m, "chunked", False)
    assert strip_trace(m.data) == data   # byte-exact, and nothing dot-stuffed
    assert [c for c in p.commands if c.startswith("BDAT")]
    assert "DATA" not in p.commands
    mw.wait_event("delivery", queue=qid, status="sent")


def test_ipv6_mx_host(mw, tmp_path, peer):
    # a host with only an AAAA record is reached over IPv6; with both, a
    # refused IPv4 address is followed by the IPv6 one
    port = free_port()
    p = peer(host="::1", port=port)
    z = BASIC + ("v6.example.        IN MX 10 mx.v6.example.\n"
                 "mx.v6.example.     IN AAAA ::1\n"
                 "both.example.      IN MX 10 mx.both.example.\n"
                 "mx.both.example.   IN A 127.0.0.9\n"
                 "mx.both.example.   IN AAAA ::1\n")
    start(mw, tmp_path, z, port)
    q1 = submit(mw, "sender@example.org", ["user@v6.example"], message("v6"))
    q2 = submit(mw, "sender@example.org", ["user@both.example"], message("both"))
    p.wait_messages(2)
    assert mw.wait_event("delivery", queue=q1, status="sent")["relay"] == f"mx.v6.example[::1]:{port}"
    assert mw.wait_event("delivery", queue=q2, status="sent")["relay"] == f"mx.both.example[::1]:{port}"
