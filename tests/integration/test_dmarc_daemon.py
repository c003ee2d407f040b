"""DMARC in the daemon (RFC 7489), end to end over a zone file: a forged
From under p=reject is refused at the end of DATA, p=quarantine lands in
the Maildir folder .Junk, pct is applied with a seeded draw, trusted
domains and networks override, a From that makes the message not
DMARC-evaluable is refused by default, forged Authentication-Results are
stripped, and every evaluated message leaves a row for aggregate reports.
The client is 127.0.0.1; SPF for good.test authorizes it, nothing else does.
"""

import re

import pytest

from mwharness import SMTPConn, assert_reply, send_message

ZONE = """
good.test.          IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.good.test.   IN TXT "v=DMARC1; p=reject"
reject.test.        IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.reject.test. IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@localhost"
quar.test.          IN TXT "v=spf1 -all"
_dmarc.quar.test.   IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@localhost"
_dmarc.sample.test. IN TXT "v=DMARC1; p=reject; pct=0"
_dmarc.none.test.   IN TXT "v=DMARC1; p=none"
"""


def start(mw, tmp_path, **settings):
    zone = tmp_path / "dmarc.zone"
    zone.write_text(ZONE)
    settings.setdefault("dmarc_reject_bad_from", True)
    return mw.start(extra_args=("--dns-zone", str(zone)), **settings)


def msg(frm, subject, extra=""):
    return (f"From: {frm}\r\nTo: bob@localhost\r\nSubject: {subject}\r\n{extra}"
            f"Message-ID: <{subject}@test>\r\n\r\nbody of {subject}\r\n").encode()


def send(mw, envelope_from, data):
    with mw.session() as c:
        return send_message(c, envelope_from, ["bob@localhost"], data)


def dmarc_entry(d):
    m = re.search(r"dmarc=(\w+)( \([^)]*\))?", d.authres or "")
    assert m, f"no dmarc= in {d.authres!r}"
    return m.group(1), (m.group(2) or "").strip(" ()")


def test_forged_from_under_reject_refused(mw, tmp_path):
    start(mw, tmp_path)
    r = send(mw, "someone@outside.test", msg("CEO <ceo@reject.test>", "forged"))
    assert_reply(r, 550, "5.7.1", contains="reject.test")
    ev = mw.wait_event("dmarc", from_domain="reject.test")
    assert ev["result"] == "fail" and ev["disposition"] == "reject" and ev["action"] == "reject"
    # the session goes on, and aligned mail from a p=reject domain passes
    r = send(mw, "news@good.test", msg("news@good.test", "aligned"))
    assert_reply(r, 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert d.header("Subject") == "aligned"
    assert dmarc_entry(d)[0] == "pass"
    assert "header.from=good.test" in d.authres


def test_quarantine_lands_in_junk(mw, tmp_path):
    start(mw, tmp_path)
    r = send(mw, "x@outside.test", msg("x@quar.test", "quarantined"))
    assert_reply(r, 250, "2.0.0")
    junk = mw.maildir("localhost", "bob") / ".Junk" / "new"
    from mwharness import wait_until
    files = wait_until(lambda: list(junk.glob("*")) if junk.is_dir() else None, 60,
                       what="a message in .Junk/new")
    assert len(files) == 1
    data = files[0].read_bytes()
    assert b"dmarc=fail" in data and b"dis=quarantine" in data.replace(b"\r\n\t", b" "), data[:800]
    assert not list((mw.maildir("localhost", "bob") / "new").glob("*")), "quarantined mail in the inbox"


def test_pct_zero_applies_next_lower_policy(mw, tmp_path):
    start(mw, tmp_path, dmarc_pct_seed=12345)
    r = send(mw, "x@outside.test", msg("x@sample.test", "sampled-out"))
    assert_reply(r, 250, "2.0.0")
    ev = mw.wait_event("dmarc", from_domain="sample.test")
    assert ev["policy"] == "reject" and ev["disposition"] == "quarantine", ev


def test_p_none_only_reports(mw, tmp_path):
    start(mw, tmp_path)
    assert_reply(send(mw, "x@outside.test", msg("x@none.test", "p-none")), 250)
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert dmarc_entry(d)[0] == "fail"


@pytest.mark.parametrize("setting", [{"dmarc_trusted_domains": ["reject.test"]},
                                     {"dmarc_trusted_networks": ["127.0.0.0/8"]},
                                     {"dmarc_enforce": False}])
def test_overrides(mw, tmp_path, setting):
    start(mw, tmp_path, **setting)
    assert_reply(send(mw, "x@outside.test", msg("ceo@reject.test", "trusted")), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert dmarc_entry(d)[0] == "fail"
    ev = mw.wait_event("dmarc", from_domain="reject.test")
    assert ev["action"] == ("none" if "dmarc_enforce" in setting else "override"), ev
    # the report row says what was done (delivered), not what p= asked
    [row] = (mw.data_dir / "dmarc" / "rows").read_text().splitlines()
    assert row.split("\t")[11] == "none", row


@pytest.mark.parametrize("head,why", [
    (b"To: bob@localhost\r\nSubject: no from\r\n", "no From"),
    (b"From: a@good.test\r\nFrom: b@good.test\r\nSubject: two\r\n", "several From"),
    (b"From: a@good.test, b@good.test\r\nSubject: two mailboxes\r\n", "mailboxes"),
    (b"From: undisclosed\r\nSubject: no domain\r\n", "domain"),
])
def test_not_evaluable_from_refused(mw, tmp_path, head, why):
    start(mw, tmp_path)
    r = send(mw, "news@good.test", head + b"\r\nbody\r\n")
    assert_reply(r, 550, "5.6.0")
    # ... unless the operator turns that off
    mw.stop()
    start(mw, tmp_path, dmarc_reject_bad_from=False)
    assert_reply(send(mw, "news@good.test", head + b"\r\nbody\r\n"), 250)
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert dmarc_entry(d)[0] == "permerror"


def test_forged_authentication_results_stripped(mw, tmp_path):
    start(mw, tmp_path)
    forged = msg("x@quar.test", "forged-ar",
                 extra="Authentication-Results: mx.test; dmarc=pass header.from=quar.test\r\n")
    assert_reply(send(mw, "x@outside.test", forged), 250)
    junk = mw.maildir("localhost", "bob") / ".Junk" / "new"
    from mwharness import wait_until
    [f] = wait_until(lambda: list(junk.glob("*")) if junk.is_dir() else None, 60, what=".Junk")
    data = f.read_bytes()
    fields = re.findall(rb"^Authentication-Results:.*?(?=^\S)", data, re.M | re.S)
    assert len(fields) == 1 and b"dmarc=fail" in fields[0], fields


def test_relay_networks_still_subject_to_dmarc(mw, tmp_path):
    # relay_networks clients are not authenticated: DMARC still applies to them
    start(mw, tmp_path, relay_networks=["127.0.0.0/8"])
    assert_reply(send(mw, "x@outside.test", msg("ceo@reject.test", "relay-net")), 550, "5.7.1")


def test_authenticated_mail_not_subject_to_dmarc(tlsd, pki, tmp_path):
    import smtplib
    import subprocess
    from mwharness import binary_path
    from tlsharness import client_context
    zone = tmp_path / "dmarc.zone"
    zone.write_text(ZONE)
    tlsd.extra = 'user "alice@localhost" { senders = { "@reject.test" } }'
    tlsd.start_tls(listeners={"submission": "starttls-required"},
                   certificates=[("mx", [pki.mx_ecdsa])], dmarc_reject_bad_from=True,
                   extra_args=("--dns-zone", str(zone)))
    subprocess.run([str(binary_path()), "user", "add", "alice@localhost", "-c",
                    str(tlsd.config_path)], input=b"pw-alice\n", check=True, timeout=60)
    with smtplib.SMTP("127.0.0.1", tlsd.port_of("submission"), timeout=30) as s:
        s.starttls(context=client_context(ca=pki.ca.cert, check_hostname=True))
        s.login("alice@localhost", "pw-alice")
        s.sendmail("ceo@reject.test", ["bob@localhost"], msg("ceo@reject.test", "submitted"))
    [d] = tlsd.wait_mail("localhost", "bob", 1)
    assert "dmarc=" not in d.authres and "auth=pass" in d.authres, d.authres
    assert not tlsd.events("dmarc")


def test_rows_kept_for_aggregate_reports(mw, tmp_path):
    start(mw, tmp_path)
    send(mw, "x@outside.test", msg("ceo@reject.test", "row-1"))
    send(mw, "x@outside.test", msg("x@quar.test", "row-2"))
    send(mw, "news@good.test", msg("news@good.test", "row-3"))
    mw.wait_mail("localhost", "bob", 1)
    rows = (mw.data_dir / "dmarc" / "rows").read_text().splitlines()
    assert len(rows) == 3, rows
    f = [r.split("\t") for r in rows]
    assert all(x[0] == "DMARC1" and x[2] == "127.0.0.1" for x in f)
    assert [x[3] for x in f] == ["reject.test", "quar.test", "good.test"]
    assert [x[11] for x in f] == ["reject", "quarantine", "none"]
    assert f[0][17] == "mailto%3Admarc@localhost" and f[2][17] == "-"
