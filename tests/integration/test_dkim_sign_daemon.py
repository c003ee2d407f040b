"""DKIM signing in the daemon: mail that an authenticated user submits with
a From in a local domain is signed, before it is queued, with every key
configured for that domain (here RSA 2048 and Ed25519: dual signing,
relaxed/relaxed). The signatures verify with `mailwarden verify` and with
dkimpy; unauthenticated mail and other From domains are not signed; a bad
key file stops the start (naming the file) and is refused on reload, and
no key material reaches the log.
"""

import re
import signal
import smtplib
import subprocess

import dkim  # dkimpy (python3-dkim)

from mwharness import REPLY_TIMEOUT, assert_reply, binary_path, send_message
from tlsharness import client_context

BIN = str(binary_path())
USER, PW = "alice@localhost", "sign-me-please"


def keygen(tmp_path, algo):
    key = tmp_path / f"{algo}.key"
    out = subprocess.run([BIN, "dkim", "keygen", "--domain", "localhost", "--selector", f"s{algo}",
                          "--algo", algo, "--out", str(key)], capture_output=True, check=True)
    return key, out.stdout.decode()


def keys_config(keys):
    return "\n".join(f'dkim_sign {name} {{\n    domain = "localhost"\n    selector = "s{name}"\n'
                     f'    key_file = "{path}"\n}}' for name, path in keys)


def start_signing(tlsd, pki, tmp_path):
    rsa, rsa_rec = keygen(tmp_path, "rsa")
    ed, ed_rec = keygen(tmp_path, "ed25519")
    zone = tmp_path / "keys.zone"
    zone.write_text(rsa_rec + ed_rec)
    tlsd.extra = keys_config([("rsa", rsa), ("ed25519", ed)])
    tlsd.start_tls(listeners={"submission": "starttls-required"},
                   certificates=[("mx", [pki.mx_ecdsa])],
                   extra_args=("--dns-zone", str(zone)))
    r = subprocess.run([BIN, "user", "add", USER, "-c", str(tlsd.config_path)],
                       input=(PW + "\n").encode(), capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return zone, {"srsa._domainkey.localhost.": rsa_rec, "sed25519._domainkey.localhost.": ed_rec}


def txt_of(line):
    return "".join(re.findall(r'"([^"]*)"', line)).encode()


def submit(tlsd, pki, sender, msg):
    with smtplib.SMTP("127.0.0.1", tlsd.port_of("submission"), local_hostname="client.test",
                      timeout=REPLY_TIMEOUT) as s:
        s.starttls(context=client_context(ca=pki.ca.cert, check_hostname=True))
        s.login(USER, PW)
        s.sendmail(sender, ["bob@localhost"], msg)


def message(frm, subject):
    return (f"From: {frm}\r\nTo: bob@localhost\r\nSubject: {subject}\r\nDate: Sat, 28 Nov 2026 "
            f"10:00:00 +0000\r\nMessage-ID: <{subject}@localhost>\r\n\r\nHello,\r\n\r\n"
            f"this is {subject}.\r\n").encode()


def test_authenticated_mail_dual_signed(tlsd, pki, tmp_path):
    zone, records = start_signing(tlsd, pki, tmp_path)
    msg = message("Alice <alice@localhost>", "signed-by-daemon")
    submit(tlsd, pki, USER, msg)
    [d] = tlsd.wait_mail("localhost", "bob", 1)
    body = d.message
    sigs = re.findall(rb"^DKIM-Signature:.*?(?=^\S)", body, re.M | re.S)
    assert len(sigs) == 2, body[:1500]
    algos = sorted(re.search(rb"a=([\w-]+)", s).group(1) for s in sigs)
    assert algos == [b"ed25519-sha256", b"rsa-sha256"], sigs
    for s in sigs:
        assert b"d=localhost" in s and b"c=relaxed/relaxed" in s, s
    assert body.endswith(msg), "the user's message must follow the signatures unchanged"

    # mailwarden's own verifier, over the same zone
    r = subprocess.run([BIN, "verify", "--dns-zone", str(zone)], input=body, capture_output=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    res = re.findall(r"dkim=(\w+)", r.stdout.decode())
    assert res == ["pass", "pass"], r.stdout

    # dkimpy, code nobody here wrote
    def dnsfunc(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        return txt_of(records[n if n.endswith(".") else n + "."])
    def dkimpy_ok(data, idx):
        try:
            return dkim.DKIM(data).verify(idx=idx, dnsfunc=dnsfunc)
        except dkim.ValidationError:
            return False
    for i in range(2):
        assert dkimpy_ok(body, i), f"dkimpy refuses signature {i}"
    # one byte changed breaks both
    bad = body.replace(b"this is signed-by-daemon.", b"this is signed-by-demon.")
    assert not dkimpy_ok(bad, 0) and not dkimpy_ok(bad, 1)

    ev = tlsd.wait_event("dkim_sign", domain="localhost")
    assert ev.get("signatures") == "2"
    key_text = (tmp_path / "rsa.key").read_text()
    secret_line = key_text.splitlines()[1]
    assert secret_line not in tlsd.log, "private key material in the log"


def test_unauthenticated_and_foreign_from_not_signed(tlsd, pki, tmp_path):
    start_signing(tlsd, pki, tmp_path)
    # not authenticated: inbound mail on port 25
    with tlsd.session() as c:
        r = send_message(c, "x@outside.test", ["bob@localhost"],
                         message("x@outside.test", "inbound"))
        assert_reply(r, 250)
    # authenticated, but the From domain has no key
    tlsd.extra += '\nuser "alice@localhost" { senders = { "@example.org" } }'
    tlsd.write_config()
    tlsd.signal(signal.SIGHUP)
    tlsd.wait_event("reload", result="ok")
    submit(tlsd, pki, "alice@example.org", message("alice@example.org", "foreign"))
    mails = tlsd.wait_mail("localhost", "bob", 2)
    for m in mails:
        assert b"DKIM-Signature:" not in m.message, m.message[:600]
    assert not tlsd.events("dkim_sign")


def test_bad_key_file(tlsd, pki, tmp_path):
    zone, _ = start_signing(tlsd, pki, tmp_path)
    garbage = tmp_path / "garbage.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    good_extra = tlsd.extra
    tlsd.extra = good_extra + "\n" + keys_config([("broken", garbage)])
    tlsd.write_config()
    tlsd.signal(signal.SIGHUP)
    ev = tlsd.wait_event("reload", result="rejected")
    assert str(garbage) in ev.get("error", ""), ev
    # still signing with the old keys
    submit(tlsd, pki, USER, message(USER, "after-bad-reload"))
    [d] = tlsd.wait_mail("localhost", "bob", 1)
    assert d.message.count(b"DKIM-Signature:") == 2
    tlsd.stop()
    # and a fresh start refuses the file, naming it
    r = subprocess.run([BIN, "serve", "-c", str(tlsd.config_path), "--dns-zone", str(zone)],
                       capture_output=True, timeout=60)
    assert r.returncode != 0
    assert str(garbage) in r.stderr.decode(), r.stderr
