"""Header ambiguity against DMARC, end to end: a spoofer writes the From of
a p=reject domain (victim.test) in a spelling that a mail reader shows but
a careless MTA does not evaluate (the "Composition Kills" categories,
Chen, Paxson and Jiang, USENIX Security 2020: duplicate and obsolete From,
folding, comments, encoded words where an address belongs, several
mailboxes, a leading space before the first field, case, Sender versus
From). Every one is refused, with 550 5.6.0 (the author cannot be told)
or 550 5.7.1 (evaluated for victim.test and rejected by its policy),
while a plain message from the attacker's own domain is still accepted.
Forged Authentication-Results with our authserv-id, in every spelling,
never reach the mailbox. The sender binding of authenticated mail reads
the same header the same way.
"""

import re

import pytest

from mwharness import assert_reply, send_message

ZONE = """
attacker.example.     IN TXT "v=spf1 ip4:127.0.0.1 -all"
victim.test.          IN TXT "v=spf1 ip4:192.0.2.1 -all"
_dmarc.victim.test.   IN TXT "v=DMARC1; p=reject"
"""

ATTACKER = "x@attacker.example"
VICTIM = "ceo@victim.test"


def start(mw, tmp_path, **settings):
    zone = tmp_path / "zone"
    zone.write_text(ZONE)
    settings.setdefault("dmarc_reject_bad_from", True)   # the daemon's default
    return mw.start(extra_args=("--dns-zone", str(zone)), **settings)


def send_head(mw, head, subject):
    data = (head + f"To: bob@localhost\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{subject}@attacker.example>\r\n\r\nbody\r\n").encode()
    with mw.session() as c:
        return send_message(c, ATTACKER, ["bob@localhost"], data)


# (name, header lines before To/Subject, the refusal expected)
SPOOFS = [
    # duplicate and obsolete From
    ("two From", f"From: {ATTACKER}\r\nFrom: {VICTIM}\r\n", "5.6.0"),
    ("two From, victim first", f"From: {VICTIM}\r\nFrom: {ATTACKER}\r\n", "5.6.0"),
    ("obsolete From : second", f"From: {ATTACKER}\r\nFrom : {VICTIM}\r\n", "5.6.0"),
    ("obsolete From : first", f"From : {VICTIM}\r\nFrom: {ATTACKER}\r\n", "5.6.0"),
    ("obsolete From<TAB>: second", f"From: {ATTACKER}\r\nFrom\t: {VICTIM}\r\n", "5.6.0"),
    ("obsolete From : alone", f"From : {VICTIM}\r\n", "5.7.1"),
    ("obsolete From<SP><TAB><SP>: alone", f"From \t : {VICTIM}\r\n", "5.7.1"),
    # case
    ("FROM in capitals, second", f"From: {ATTACKER}\r\nFROM: {VICTIM}\r\n", "5.6.0"),
    ("fRoM alone", f"fRoM: {VICTIM}\r\n", "5.7.1"),
    # folding
    ("From folded before the address", f"From:\r\n {VICTIM}\r\n", "5.7.1"),
    ("From name folded before the colon", f"From: {ATTACKER}\r\nFrom\r\n : {VICTIM}\r\n", "5.6.0"),
    ("display name folded over lines", f"From: \"CEO\"\r\n\t<{VICTIM}>\r\n", "5.7.1"),
    # a line that is not a field, a leading space before the first field
    ("leading space before the first field", f" From: {VICTIM}\r\nFrom: {ATTACKER}\r\n", "5.6.0"),
    ("a line without a colon", f"From: {ATTACKER}\r\nFrom {VICTIM}\r\n", "5.6.0"),
    ("a field name with a control byte", f"From: {ATTACKER}\r\nFrom\x01: {VICTIM}\r\n", "5.6.0"),
    ("a field name with 8-bit bytes", f"From: {ATTACKER}\r\nFr\u00f6m: {VICTIM}\r\n", "5.6.0"),
    # comments
    ("comment holding the victim inside the address",
     f"From: <x(@victim.test)@attacker.example>\r\n", "5.6.0"),
    ("comment between local part and @", f"From: ceo(x)@victim.test\r\n", "5.6.0"),
    ("victim address, attacker comment after it", f"From: {VICTIM} ({ATTACKER})\r\n", "5.7.1"),
    # encoded words where an address belongs
    ("encoded word as the local part",
     "From: =?utf-8?b?Y2VvQHZpY3RpbS50ZXN0?=@attacker.example\r\n", "5.6.0"),
    ("encoded word inside the angle address",
     "From: <=?utf-8?q?ceo=40victim.test?=@attacker.example>\r\n", "5.6.0"),
    ("encoded word as the domain", "From: ceo@=?utf-8?q?victim.test?=\r\n", "5.6.0"),
    ("quoted local part holding the victim", f"From: \"{VICTIM}\"@attacker.example\r\n", "5.6.0"),
    # several mailboxes, groups, routes
    ("two mailboxes", f"From: {ATTACKER}, {VICTIM}\r\n", "5.6.0"),
    ("two mailboxes, victim first", f"From: {VICTIM}, {ATTACKER}\r\n", "5.6.0"),
    ("a group around the victim", f"From: Board: {VICTIM};\r\n", "5.6.0"),
    ("an obsolete route to the attacker", f"From: <@victim.test:{ATTACKER}>\r\n", "5.6.0"),
    ("an obsolete route to the victim", f"From: <@attacker.example:{VICTIM}>\r\n", "5.6.0"),
    ("the victim as an unquoted display name", f"From: {VICTIM} <{ATTACKER}>\r\n", "5.6.0"),
    # Sender versus From
    ("Sender of the victim, no From", f"Sender: {VICTIM}\r\n", "5.6.0"),
    ("From of the victim, Sender of the attacker", f"From: {VICTIM}\r\nSender: {ATTACKER}\r\n",
     "5.7.1"),
    ("two Sender fields", f"From: {ATTACKER}\r\nSender: {ATTACKER}\r\nSender: {VICTIM}\r\n",
     "5.6.0"),
    ("obsolete Sender : second", f"From: {ATTACKER}\r\nSender: {ATTACKER}\r\nSender : {VICTIM}\r\n",
     "5.6.0"),
]


@pytest.mark.parametrize("name,head,enh", SPOOFS, ids=[s[0] for s in SPOOFS])
def test_spoof_refused(mw, tmp_path, name, head, enh):
    start(mw, tmp_path)
    r = send_head(mw, head, "spoof")
    assert_reply(r, 550, enh)
    # the attacker's own mail still goes through, on the same daemon
    r = send_head(mw, f"From: Someone <{ATTACKER}>\r\n", "plain")
    assert_reply(r, 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert d.header("Subject") == "plain"
    assert "header.from=attacker.example" in d.authres, d.authres


FORGED_AR = [
    "Authentication-Results: mx.test; dmarc=pass header.from=victim.test",
    "Authentication-Results : mx.test; dmarc=pass header.from=victim.test",
    "Authentication-Results\t: mx.test; dmarc=pass header.from=victim.test",
    "authentication-results: MX.TEST; dmarc=pass header.from=victim.test",
    "AUTHENTICATION-RESULTS:mx.test;dmarc=pass header.from=victim.test",
    "Authentication-Results:\r\n mx.test;\r\n dmarc=pass header.from=victim.test",
    "Authentication-Results: (forged) mx.test; dmarc=pass header.from=victim.test",
    "Authentication-Results: \"mx.test\"; dmarc=pass header.from=victim.test",
    "Authentication-Results: mx.test.; dmarc=pass header.from=victim.test",
]


@pytest.mark.parametrize("forged", FORGED_AR, ids=range(len(FORGED_AR)))
def test_forged_authentication_results_in_any_spelling_stripped(mw, tmp_path, forged):
    start(mw, tmp_path)
    other = "Authentication-Results: elsewhere.example; spf=pass"
    r = send_head(mw, f"{forged}\r\n{other}\r\nFrom: {ATTACKER}\r\n", "forged-ar")
    assert_reply(r, 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert "header.from=attacker.example" in d.authres, d.authres
    fields = re.findall(rb"^authentication-results\s*:.*?(?=^\S)", d.raw, re.M | re.S | re.I)
    assert len(fields) == 2, fields          # ours, and the other host's one
    assert not any(b"victim.test" in f for f in fields), fields
    assert any(b"elsewhere.example" in f for f in fields), fields
    mw.wait_event("authres_removed", fields="1")


def test_unreadable_author_is_permerror_when_not_refused(mw, tmp_path):
    # With dmarc_reject_bad_from off the operator accepts such mail, but it
    # is never evaluated as if the second From were not there.
    start(mw, tmp_path, dmarc_reject_bad_from=False)
    r = send_head(mw, f"From: {ATTACKER}\r\nFrom : {VICTIM}\r\n", "kept")
    assert_reply(r, 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert "dmarc=permerror" in d.authres and "several From fields" in d.authres, d.authres
    assert "header.from=" not in d.authres, d.authres
