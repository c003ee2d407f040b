"""DKIM in the daemon: every inbound signature is verified after DATA over
the resolver and reported in one Authentication-Results field under our
host name; fields that claim our authserv-id on arrival are removed."""

import re
import subprocess

from mwharness import assert_reply, binary_path, queue_id_of, send_message

MSG = (b"From: Alice <alice@signed.example>\r\n"
       b"To: user@localhost\r\n"
       b"Subject: signed\r\n"
       b"Message-ID: <dkim-daemon@signed.example>\r\n"
       b"\r\n"
       b"hello, signed world\r\n")


def keygen(tmp_path, algo):
    key = tmp_path / f"{algo}.key"
    out = subprocess.run([str(binary_path()), "dkim", "keygen", "--domain", "signed.example",
                          "--selector", algo, "--algo", algo, "--out", str(key)],
                         capture_output=True, check=True)
    return key, out.stdout.decode()


def sign(key, selector, msg):
    return subprocess.run([str(binary_path()), "dkim", "sign", "--domain", "signed.example",
                           "--selector", selector, "--key", str(key)],
                          input=msg, capture_output=True, check=True).stdout


def start(mw, tmp_path, records):
    zone = tmp_path / "dkim.zone"
    zone.write_text("".join(records))
    return mw.start(extra_args=("--dns-zone", str(zone)))


def deliver(mw, data):
    with mw.session() as c:
        r = send_message(c, "alice@signed.example", ["user@localhost"], data)
        assert_reply(r, 250, "2.0.0")
        qid = queue_id_of(r)
    return [f for f in mw.wait_mail("localhost", "user", 1) if qid in f.received]


def test_signatures_verified_and_reported(mw, tmp_path):
    rsa, rsa_rec = keygen(tmp_path, "rsa")
    ed, ed_rec = keygen(tmp_path, "ed25519")
    start(mw, tmp_path, [rsa_rec, ed_rec])
    signed = sign(ed, "ed25519", sign(rsa, "rsa", MSG))
    [d] = deliver(mw, signed)
    ar = d.authres
    assert ar and ar.startswith("Authentication-Results: mx.test;"), ar
    entries = re.findall(r"dkim=(\w+)[^;]*header\.s=(\w+)", ar)
    assert sorted(entries) == [("pass", "ed25519"), ("pass", "rsa")], ar
    assert "header.d=signed.example" in ar
    # the message itself arrives unchanged below our trace fields
    assert d.message == signed
    mw.wait_log(lambda l: "event=dkim" in l and "result=pass" in l and "selector=rsa" in l,
                what="dkim log line")


def test_tampered_body_fails(mw, tmp_path):
    rsa, rsa_rec = keygen(tmp_path, "rsa")
    start(mw, tmp_path, [rsa_rec])
    signed = sign(rsa, "rsa", MSG).replace(b"hello, signed", b"hello, forged")
    [d] = deliver(mw, signed)
    assert re.search(r"dkim=fail\b", d.authres), d.authres
    assert "dkim=pass" not in d.authres


def test_unsigned_and_forged_results_removed(mw, tmp_path):
    start(mw, tmp_path, [])
    forged = (b"Authentication-Results: MX.TEST; dkim=pass header.d=bank.example\r\n"
              b"Authentication-Results: other.example; spf=pass\r\n" + MSG)
    [d] = deliver(mw, forged)
    assert re.search(r"dkim=none", d.authres), d.authres
    # exactly one field with our authserv-id is left: ours, on top
    ours = [l for l in d.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            if l.lower().startswith(b"authentication-results:") and b"mx.test" in l.lower()]
    assert len(ours) == 1, d.raw[:600]
    assert b"Authentication-Results: other.example; spf=pass\r\n" in d.message
    assert b"bank.example" not in d.message
    mw.wait_log(lambda l: "event=authres_removed" in l and "fields=1" in l, what="removal log")
