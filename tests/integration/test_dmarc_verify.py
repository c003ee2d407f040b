"""DMARC (RFC 7489, np= of RFC 9091) through `mailwarden verify --dns-zone FILE`.

Everything runs offline: one zone master file holds the DMARC, SPF and DKIM
key records; messages are signed by `mailwarden dkim sign` with Ed25519 keys
made by `mailwarden dkim keygen` (the zone line it prints is the key
record); SPF comes from --client-ip/--helo/--mail-from; --dmarc-random fixes
the pct= draw.

What is checked, on the dmarc= entry of the one Authentication-Results field
(result, the "p=... dis=..." comment or the reason, header.from):

  * alignment: DKIM and SPF, aligned and unaligned, relaxed and strict
    (adkim=s / aspf=s), a broken signature, a passing but foreign one;
  * policy discovery: the From domain's record, the organizational domain's
    record (a multi-label public suffix: mail.example.co.uk ->
    example.co.uk; other.co.uk never aligns with example.co.uk), sp= for an
    existing subdomain and np= for a non-existent one, no record, several
    records, an invalid record, a DNS failure (temperror);
  * pct=: 0 and 100 at the extreme draws, 50 at both sides of the cut;
  * the From rules of 6.6.1: no domain, two From fields, two mailboxes, no
    From at all give permerror;
  * the dkim= and spf= entries are still there, in front of dmarc=;
  * --dmarc-random outside 0..99 is a usage error;
  * the DMARC cases of ValiMail's authheaders test suite
    ($MW_TESTDATA/valimail-authheaders-dmarc), with the four places where
    we follow the RFCs (and this project's rules) instead, each explained.

Run with Debian's interpreter:
    MAILWARDEN_BIN=build/mailwarden /usr/bin/python3 -m pytest tests/integration/test_dmarc_verify.py
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("MW_TESTDATA") or REPO.parent / "shared" / "testdata")
BIN = os.environ.get("MAILWARDEN_BIN") or str(REPO / "build" / "mailwarden")
AUTHSERV = "mx.test"
T0 = 1700000000
TIMEOUT = 60            # per command; only against hangs
GOOD_IP, BAD_IP = "192.0.2.10", "198.51.100.7"

# Domains whose messages get signed (selector s1, Ed25519).
SIGNERS = ("relaxed.example", "strict.example", "sub.strict.example", "other.example",
           "example.co.uk", "other.co.uk")

ZONE = f"""\
_dmarc.relaxed.example.   IN TXT "v=DMARC1; p=quarantine; rua=mailto:agg@relaxed.example"
relaxed.example.          IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
bounce.relaxed.example.   IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.strict.example.    IN TXT "v=DMARC1; p=reject; adkim=s; aspf=s"
strict.example.           IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
mail.strict.example.      IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
other.example.            IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.example.co.uk.     IN TXT "v=DMARC1; p=reject; sp=quarantine; np=reject"
mail.example.co.uk.       IN A 192.0.2.25
_dmarc.multi.example.     IN TXT "v=DMARC1; p=reject"
_dmarc.multi.example.     IN TXT "v=DMARC1; p=none"
_dmarc.invalid.example.   IN TXT "v=DMARC1; p=bogus"
_dmarc.mixed.example.     IN TXT "v=spf1 -all"
_dmarc.mixed.example.     IN TXT "v=DMARC1; p=reject"
_dmarc.pct50.example.     IN TXT "v=DMARC1; p=reject; pct=50"
_dmarc.pct0.example.      IN TXT "v=DMARC1; p=reject; pct=0"
_dmarc.pct100.example.    IN TXT "v=DMARC1; p=reject; pct=100"
$TEMPFAIL _dmarc.temp.example.
"""


# ------------------------------------------------------------------ helpers

def run(cmd, input=None):
    return subprocess.run([str(c) for c in cmd], input=input, capture_output=True,
                          timeout=TIMEOUT)


def info(p):
    return (f"command: {' '.join(map(str, p.args))}\nexit {p.returncode}\n"
            f"stdout: {p.stdout[:3000]!r}\nstderr: {p.stderr.decode('utf-8', 'replace')[-3000:]}")


class AR:
    """One Authentication-Results field: entries of (method, result,
    comment, {ptype.prop: value})."""

    def __init__(self, raw):
        self.raw = raw
        text = raw.decode("utf-8", "replace")
        lines = re.split(r"\r\n", text.rstrip("\r\n"))
        assert raw.endswith(b"\r\n") and lines[0].startswith("Authentication-Results:"), raw
        assert all(l[:1] == "\t" for l in lines[1:]), f"not one folded field: {raw!r}"
        value = " ".join(l.strip() for l in lines).split(":", 1)[1]
        parts = self.split(value)
        self.authserv = parts[0].strip()
        self.entries = []
        for part in parts[1:]:
            m = re.match(r"\s*([a-z]+)=([a-z]+)\s*(\((?:[^()\\]|\\.)*\))?\s*(.*)$", part, re.S)
            assert m, f"malformed resinfo {part!r} in {raw!r}"
            props = dict(re.findall(r"([a-z]+\.[a-z]+)=(\S+)", m.group(4)))
            comment = m.group(3)[1:-1] if m.group(3) else None
            self.entries.append((m.group(1), m.group(2), comment, props))

    @staticmethod
    def split(s):
        parts, cur, depth, quoted, esc = [], [], 0, False, False
        for ch in s:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif quoted:
                quoted = ch != '"'
            elif ch == '"':
                quoted = True
            elif ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif ch == ";" and depth == 0:
                parts.append("".join(cur))
                cur = []
                continue
            cur.append(ch)
        parts.append("".join(cur))
        return parts

    def method(self, name):
        return [e for e in self.entries if e[0] == name]

    @property
    def dmarc(self):
        found = self.method("dmarc")
        assert len(found) == 1, f"want exactly one dmarc= entry: {self}"
        assert self.entries[-1][0] == "dmarc", f"dmarc= is not the last entry: {self}"
        return found[0]

    def __repr__(self):
        return self.raw.decode("utf-8", "replace")


def message(from_lines, subject="DMARC test"):
    if isinstance(from_lines, str):
        from_lines = [from_lines]
    head = "".join(f"From: {f}\r\n" if f is not None else "" for f in from_lines)
    return (head + "To: rcpt@receiver.example\r\n"
            f"Subject: {subject}\r\nMessage-ID: <dmarc-test@t>\r\n"
            "\r\nHello,\r\nthis is a test.\r\n").encode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("dmarc")
    lines = [ZONE]
    keys = {}
    for dom in SIGNERS:
        key = d / f"{dom}.pem"
        p = run([BIN, "dkim", "keygen", "--domain", dom, "--selector", "s1",
                 "--algo", "ed25519", "--out", key])
        assert p.returncode == 0, info(p)
        line = p.stdout.decode().strip()
        assert line.startswith(f"s1._domainkey.{dom}."), info(p)
        lines.append(line + "\n")
        keys[dom] = key
    zone = d / "dmarc.zone"
    zone.write_text("".join(lines))
    return {"zone": zone, "keys": keys, "dir": d}


def sign(env, domain, msg):
    p = run([BIN, "dkim", "sign", "--domain", domain, "--selector", "s1",
             "--key", env["keys"][domain], "--time", T0], input=msg)
    assert p.returncode == 0 and p.stdout.startswith(b"DKIM-Signature:"), info(p)
    return p.stdout


def verify(env, msg, mail_from=None, ip=GOOD_IP, draw=0, zone=None, extra=()):
    cmd = [BIN, "verify", "--dns-zone", zone or env["zone"], "--authserv-id", AUTHSERV,
           "--dmarc-random", draw, *extra]
    if mail_from is not None:
        cmd += ["--client-ip", ip, "--helo", "mx.sender.example", "--mail-from", mail_from]
    p = run(cmd, input=msg)
    assert p.returncode == 0, info(p)
    ar = AR(p.stdout)
    assert ar.authserv == AUTHSERV, ar
    return ar


def expect(ar, result, comment=None, header_from=None, reason=None):
    method, got, got_comment, props = ar.dmarc
    assert got == result, f"dmarc={got}, want {result}: {ar}"
    if comment is not None:
        assert got_comment == comment, f"comment ({got_comment}), want ({comment}): {ar}"
    if reason is not None:
        assert got_comment and reason in got_comment, f"reason {reason!r} not in {ar}"
    if header_from is not None:
        assert props.get("header.from") == header_from, f"header.from, want {header_from}: {ar}"
    else:
        assert "header.from" not in props, f"no header.from expected: {ar}"


# ------------------------------------------------------------------ alignment

def test_relaxed_dkim_aligned_from_subdomain(env):
    """d=relaxed.example aligns with a From of news.relaxed.example; that
    name has no record, so the organizational domain's record applies."""
    ar = verify(env, sign(env, "relaxed.example", message("A <a@news.relaxed.example>")))
    [(_, dkim_result, _, props)] = ar.method("dkim")
    assert dkim_result == "pass" and props["header.d"] == "relaxed.example", ar
    expect(ar, "pass", "p=quarantine dis=none", "news.relaxed.example")


def test_relaxed_dkim_unaligned_foreign_signature(env):
    ar = verify(env, sign(env, "other.example", message("a@relaxed.example")))
    assert ar.method("dkim")[0][1] == "pass", ar
    expect(ar, "fail", "p=quarantine dis=quarantine", "relaxed.example")


def test_broken_aligned_signature_fails(env):
    signed = sign(env, "relaxed.example", message("a@relaxed.example"))
    ar = verify(env, signed.replace(b"this is a test", b"this is a TEST"))
    assert ar.method("dkim")[0][1] == "fail", ar
    expect(ar, "fail", "p=quarantine dis=quarantine", "relaxed.example")


def test_strict_dkim_exact_passes(env):
    ar = verify(env, sign(env, "strict.example", message("a@strict.example")))
    expect(ar, "pass", "p=reject dis=none", "strict.example")


def test_strict_dkim_subdomain_signature_fails(env):
    """adkim=s: d=sub.strict.example does not align with strict.example,
    although relaxed alignment would accept it."""
    ar = verify(env, sign(env, "sub.strict.example", message("a@strict.example")))
    assert ar.method("dkim")[0][1] == "pass", ar
    expect(ar, "fail", "p=reject dis=reject", "strict.example")


def test_relaxed_spf_aligned(env):
    ar = verify(env, message("a@relaxed.example"), mail_from="bounce@bounce.relaxed.example")
    [(_, spf_result, _, props)] = ar.method("spf")
    assert spf_result == "pass" and props["smtp.mailfrom"] == "bounce@bounce.relaxed.example", ar
    expect(ar, "pass", "p=quarantine dis=none", "relaxed.example")


def test_spf_fail_is_not_aligned(env):
    ar = verify(env, message("a@relaxed.example"), mail_from="a@relaxed.example", ip=BAD_IP)
    assert ar.method("spf")[0][1] == "fail", ar
    expect(ar, "fail", "p=quarantine dis=quarantine", "relaxed.example")


def test_spf_pass_unaligned(env):
    ar = verify(env, message("a@relaxed.example"), mail_from="x@other.example")
    assert ar.method("spf")[0][1] == "pass", ar
    expect(ar, "fail", "p=quarantine dis=quarantine", "relaxed.example")


def test_strict_spf_exact_and_subdomain(env):
    ar = verify(env, message("a@strict.example"), mail_from="b@strict.example")
    expect(ar, "pass", "p=reject dis=none", "strict.example")
    ar = verify(env, message("a@strict.example"), mail_from="b@mail.strict.example")
    assert ar.method("spf")[0][1] == "pass", ar
    expect(ar, "fail", "p=reject dis=reject", "strict.example")


def test_spf_and_dkim_entries_kept(env):
    """The spf and dkim entries stay as they were, dmarc comes last."""
    ar = verify(env, sign(env, "relaxed.example", message("a@relaxed.example")),
                mail_from="a@relaxed.example")
    assert [e[0] for e in ar.entries] == ["dkim", "spf", "dmarc"], ar
    expect(ar, "pass", "p=quarantine dis=none", "relaxed.example")


# ------------------------------------------------------------------ policy discovery

def test_org_domain_across_multi_label_suffix(env):
    """mail.example.co.uk has no record: example.co.uk's applies (not
    co.uk's, the public suffix), and d=example.co.uk aligns."""
    ar = verify(env, sign(env, "example.co.uk", message("a@mail.example.co.uk")))
    expect(ar, "pass", "p=quarantine dis=none", "mail.example.co.uk")


def test_sibling_under_public_suffix_never_aligns(env):
    ar = verify(env, sign(env, "other.co.uk", message("a@mail.example.co.uk")))
    assert ar.method("dkim")[0][1] == "pass", ar
    expect(ar, "fail", "p=quarantine dis=quarantine", "mail.example.co.uk")


def test_subdomain_policy_sp(env):
    ar = verify(env, message("a@mail.example.co.uk"))
    expect(ar, "fail", "p=quarantine dis=quarantine", "mail.example.co.uk")


def test_nonexistent_subdomain_policy_np(env):
    ar = verify(env, message("a@ghost.example.co.uk"))
    expect(ar, "fail", "p=reject dis=reject", "ghost.example.co.uk")


def test_org_domain_itself_p(env):
    ar = verify(env, message("a@example.co.uk"))
    expect(ar, "fail", "p=reject dis=reject", "example.co.uk")


def test_no_record(env):
    ar = verify(env, message("a@nothing.example"))
    expect(ar, "none", header_from="nothing.example", reason="no DMARC record")


def test_several_records(env):
    ar = verify(env, message("a@multi.example"))
    expect(ar, "none", header_from="multi.example", reason="several DMARC records")


def test_invalid_record(env):
    ar = verify(env, message("a@invalid.example"))
    expect(ar, "none", header_from="invalid.example", reason="invalid DMARC record")


def test_other_txt_records_ignored(env):
    ar = verify(env, message("a@mixed.example"))
    expect(ar, "fail", "p=reject dis=reject", "mixed.example")


def test_dns_failure_is_temperror(env):
    ar = verify(env, sign(env, "relaxed.example", message("a@temp.example")))
    expect(ar, "temperror", header_from="temp.example", reason="_dmarc.temp.example")


# ------------------------------------------------------------------ pct

@pytest.mark.parametrize("domain,draw,dis", [
    ("pct0.example", 0, "quarantine"),
    ("pct0.example", 99, "quarantine"),
    ("pct100.example", 0, "reject"),
    ("pct100.example", 99, "reject"),
    ("pct50.example", 49, "reject"),
    ("pct50.example", 50, "quarantine"),
])
def test_pct(env, domain, draw, dis):
    ar = verify(env, message(f"a@{domain}"), draw=draw)
    expect(ar, "fail", f"p=reject dis={dis}", domain)


def test_pct_does_not_touch_pass(env):
    ar = verify(env, message("a@relaxed.example"), mail_from="a@relaxed.example", draw=99)
    expect(ar, "pass", "p=quarantine dis=none", "relaxed.example")


@pytest.mark.parametrize("bad", ["100", "-1", "x", ""])
def test_dmarc_random_usage(env, bad):
    p = run([BIN, "verify", "--dns-zone", env["zone"], "--dmarc-random", bad],
            input=message("a@relaxed.example"))
    assert p.returncode == 64, info(p)
    assert b"--dmarc-random" in p.stderr, info(p)


# ------------------------------------------------------------------ From rules (6.6.1)

@pytest.mark.parametrize("froms,reason", [
    (["Alice <alice>"], "the From mailbox has no usable domain"),
    (['"Test User"'], "the From mailbox has no usable domain"),
    (["a@relaxed.example", "b@relaxed.example"], "several From fields"),
    (["a@relaxed.example, b@strict.example"], "the From field does not hold exactly one mailbox"),
    ([None], "no From field"),
    (["a@b@c"], "the From field is malformed"),
])
def test_from_not_evaluable(env, froms, reason):
    ar = verify(env, message(froms), mail_from="a@relaxed.example")
    expect(ar, "permerror", reason=f"not DMARC-evaluable: {reason}")


def test_two_from_fields_even_when_signed(env):
    msg = sign(env, "relaxed.example", message(["a@relaxed.example", "evil@attacker.example"]))
    ar = verify(env, msg)
    expect(ar, "permerror", reason="several From fields")


# ------------------------------------------------------------------ authheaders cross-check

VALIMAIL = TESTDATA / "valimail-authheaders-dmarc"

# Upstream's DNS map (cases.yml) as a zone; the psd= / tree-walk records
# (DMARCbis) are left out with their case.
VALIMAIL_ZONE = """\
_dmarc.example.com.     IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc.reports@valimail.com,mailto:dmarc_agg@vali.email; ruf=mailto:dmarc.reports@valimail.com,mailto:dmarc_c0cb7153_afrf@vali.email"
_dmarc.example.org.     IN TXT "v=DMARC1; p=none"
_dmarc.example.net.     IN TXT "v=DMARC1; p=none; sp=reject"
_dmarc.example.biz.     IN TXT "v=DMARC1; p=none; sp=quarantine; np=reject"
_dmarc.nop.example.org. IN TXT "v=DMARC1; sp=quarantine; np=reject"
sub2.example.biz.       IN TXT "host.example.biz"
_dmarc.bad.example.com. IN TXT "v=DMARC1; p=none; reject"
"""

# (message, upstream's dmarc result and policy, ours, why ours differs)
VALIMAIL_CASES = [
    ("test.message_signed", ("pass", "reject"), ("pass", "reject"), None),
    ("testcomma.message", ("pass", "reject"), ("pass", "reject"), None),
    ("test.message_sub", ("fail", "reject"), ("fail", "reject"), None),
    ("test.message_np1", ("fail", "reject"), ("fail", "reject"), None),
    ("test.nofrom.message", ("permerror", None), ("permerror", None), None),
    ("test_nop.message", ("none", None), ("none", None), None),
    ("test.bad.message", ("permerror", "none"), ("fail", "none"),
     "RFC 7489 6.3: a syntax error in the remainder of the record (the bare 'reject') is "
     "discarded, so the record is p=none and the unauthenticated message fails it"),
    ("test.message_multi", ("fail", "reject"), ("permerror", None),
     "two mailboxes in From: not DMARC-evaluable here (6.6.1), upstream checks the first"),
    ("test.message_multi2", ("fail", "reject"), ("permerror", None),
     "the same with the mailboxes the other way round"),
    ("test.message_np2", ("fail", "quarantine"), ("fail", "reject"),
     "RFC 9091 2.1: a domain with NXDOMAIN or NODATA for A, AAAA and MX is non-existent; "
     "sub2.example.biz has only a TXT record, so np=reject applies"),
]


@pytest.mark.parametrize("name,upstream,ours,why", VALIMAIL_CASES,
                         ids=[c[0] for c in VALIMAIL_CASES])
def test_authheaders_cases(env, name, upstream, ours, why):
    cases = (VALIMAIL / "cases.yml").read_text()
    assert f"message: {name}\n" in cases, f"{name} is not in {VALIMAIL}/cases.yml"
    zone = env["dir"] / "valimail.zone"
    key = (VALIMAIL / "messages" / "test.txt").read_text().strip()
    zone.write_text(VALIMAIL_ZONE + f'test._domainkey.example.com. IN TXT "{key}"\n')
    msg = (VALIMAIL / "messages" / name).read_bytes()
    p = run([BIN, "verify", "--dns-zone", zone, "--authserv-id", "example.com",
             "--dmarc-random", "0"], input=msg)
    assert p.returncode == 0, info(p)
    _, result, comment, _ = AR(p.stdout).dmarc
    policy = re.match(r"p=(\w+)", comment).group(1) if result in ("pass", "fail") else None
    assert (result, policy) == ours, (f"{name}: dmarc={result} policy={policy}, want {ours} "
                                      f"(upstream {upstream}; {why or 'same as upstream'})\n"
                                      f"{p.stdout!r}")
