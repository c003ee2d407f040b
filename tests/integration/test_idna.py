"""Internationalized domains (RFC 8616): a U-label reaches DNS and every
comparison as its A-label, and an invalid U-label is refused, never passed
through. bücher.example is xn--bcher-kva.example; it publishes p=reject
and an SPF record that authorizes nobody, under its A-label only.
"""

import smtplib

import pytest

from mwharness import assert_reply

ZONE = """
_dmarc.xn--bcher-kva.example.  IN TXT "v=DMARC1; p=reject"
xn--bcher-kva.example.         IN TXT "v=spf1 -all"
"""


def start(mw, tmp_path, **settings):
    zone = tmp_path / "idna.zone"
    zone.write_text(ZONE)
    settings.setdefault("dmarc_reject_bad_from", True)
    return mw.start(extra_args=("--dns-zone", str(zone)), **settings)


def utf8_transaction(c, sender, rcpt, data):
    r = c.cmd(f"MAIL FROM:<{sender}> SMTPUTF8".encode())
    if r.code != 250:
        return r
    r = c.cmd(f"RCPT TO:<{rcpt}>".encode())
    if r.code != 250:
        return r
    assert c.cmd("DATA").code == 354
    c.send(data + b".\r\n")
    return c.reply()


def msg(frm, subject):
    return (f"From: {frm}\r\nTo: bob@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@test>\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize("frm", ["CEO <ceo@bücher.example>", "CEO <ceo@BÜCHER.example>",
                                 "ceo@xn--bcher-kva.example", "ceo@XN--BCHER-KVA.example"])
def test_u_label_from_is_held_to_the_a_label_policy(mw, tmp_path, frm):
    start(mw, tmp_path)
    with mw.session() as c:
        r = utf8_transaction(c, "x@attacker.example", "bob@localhost", msg(frm, "u-label"))
    assert_reply(r, 550, "5.7.1", contains="xn--bcher-kva.example")
    ev = mw.wait_event("dmarc", from_domain="xn--bcher-kva.example")
    assert ev["result"] == "fail" and ev["action"] == "reject", ev


def test_invalid_u_label_from_is_refused(mw, tmp_path):
    start(mw, tmp_path)
    with mw.session() as c:
        r = utf8_transaction(c, "x@attacker.example", "bob@localhost",
                             msg("ceo@\u2603.example", "snowman"))
    assert_reply(r, 550, "5.6.0")


def test_spf_checks_the_a_label(mw, tmp_path):
    start(mw, tmp_path)
    with mw.session() as c:
        r = utf8_transaction(c, "x@bücher.example", "bob@localhost",
                             msg("x@attacker.example", "spf"))
        assert_reply(r, 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert d.received_spf.startswith("Received-SPF: fail "), d.received_spf
    mw.wait_log(lambda l: "event=spf" in l and "identity=mailfrom" in l and "result=fail" in l
                and "xn--bcher-kva.example" in l, what="spf fail for the A-label")


@pytest.mark.parametrize("path", ["x@\u2603.example", "x@b\u00fc-.example", "x@xn--zz.example\u00e9"])
def test_invalid_u_label_addresses_refused(mw, tmp_path, path):
    start(mw, tmp_path)
    with mw.session() as c:
        assert_reply(c.cmd(f"MAIL FROM:<{path}> SMTPUTF8".encode()), 501, "5.1.7")
        assert_reply(c.cmd("MAIL FROM:<a@example.net> SMTPUTF8"), 250)
        assert_reply(c.cmd(f"RCPT TO:<{path}>".encode()), 501)


def test_local_domain_matches_in_either_form(mw, tmp_path):
    # configured as the A-label, addressed with the U-label: local, one
    # mailbox, one copy
    start(mw, tmp_path, local_domains=["localhost", "xn--bcher-kva.example"])
    with mw.session() as c:
        r = c.cmd("MAIL FROM:<a@example.net> SMTPUTF8")
        assert r.code == 250
        assert_reply(c.cmd("RCPT TO:<leser@bücher.example>".encode()), 250, "2.1.5")
        assert_reply(c.cmd("RCPT TO:<leser@xn--bcher-kva.example>"), 250, "2.1.5")
        assert c.cmd("DATA").code == 354
        c.send(msg("a@example.net", "local") + b".\r\n")
        assert_reply(c.reply(), 250, "2.0.0")
    [d] = mw.wait_mail("xn--bcher-kva.example", "leser", 1)
    assert len(mw.all_mail_files()) == 1
    # the other way round: configured as the U-label
    mw.stop()
    start(mw, tmp_path, local_domains=["localhost", "bücher.example"])
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<a@example.net>").code == 250
        assert_reply(c.cmd("RCPT TO:<leser@XN--BCHER-KVA.example>"), 250, "2.1.5")
