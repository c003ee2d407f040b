"""Inbound TLS: STARTTLS (RFC 3207), submission with TLS required (RFC 6409),
implicit TLS (RFC 8314), protocol and cipher policy, SNI, RSA + ECDSA,
certificate reload on SIGHUP, the Received header (RFC 3848) and the log.

Real clients only: Python's ssl/smtplib, `openssl s_client` and `swaks`.
Whenever a test claims that mailwarden *refuses* something (TLS 1.0/1.1,
static-RSA ciphers, renegotiation), the same client settings are first shown
to succeed against a control server that allows them, so the refusal can only
come from mailwarden and not from the local OpenSSL's own policy.
"""

import contextlib
import datetime
import email.utils
import re
import signal
import smtplib
import socket
import ssl
import subprocess
import warnings

import pytest

from mwharness import (REPLY_TIMEOUT, ConnectionClosed, assert_reply, binary_path, free_port,
                       queue_id_of, send_message, wait_until)
from tlsharness import (TLSConn, SClient, client_context, der_fingerprint, ehlo_keywords,
                        legacy_client_context, need_swaks, openssl_server, pem_blocks,
                        python_tls_server, replace_file, run, s_client_once, sclient_leaf_der,
                        sclient_summary, tls_received)

LISTENERS = {"submission": "starttls-required", "submissions": "implicit", "plain": "none"}
SENDER = "sender@example.net"


def std_certificates(pki):
    return [("mx", [pki.mx_rsa, pki.mx_ecdsa]), ("other", [pki.other])]


@pytest.fixture
def mwtls(tlsd, pki):
    """smtp (starttls) + submission (required) + submissions (implicit) +
    plain (none), certificates mx = RSA + ECDSA and other."""
    return tlsd.start_tls(listeners=LISTENERS, certificates=std_certificates(pki))


def verifying(pki, hostname=True):
    return client_context(ca=pki.ca.cert, check_hostname=hostname)


def msg_for(tag, rcpt="user@mx.test"):
    return (f"From: {SENDER}\r\nTo: {rcpt}\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@example.net>\r\n\r\nbody of {tag}\r\n").encode()


def deliver(conn, tag, rcpt="user@mx.test"):
    """A whole transaction on an EHLO'd connection; returns (queue id, message)."""
    msg = msg_for(tag, rcpt)
    r = send_message(conn, SENDER, [rcpt], msg)
    assert_reply(r, 250, "2.0.0")
    return queue_id_of(r), msg


def client_view(sslsock):
    name, _proto, bits = sslsock.cipher()
    return sslsock.version(), name, bits


def check_tls_received(d, qid, helo, view, rcpt="user@mx.test"):
    """The delivered copy `d` has the contract's TLS Received header and it
    agrees with the client's view (version, cipher, bits) of the session."""
    version, cipher, bits = view
    f = tls_received(d)
    assert f["helo"] == helo, f"Received names HELO {f['helo']!r}, client said {helo!r}: {d.received_raw!r}"
    assert f["ip"] == "127.0.0.1", d.received_raw
    assert f["by"] == "mx.test", d.received_raw
    assert f["proto"] == "ESMTPS", f"protocol {f['proto']!r} over TLS, RFC 3848 wants ESMTPS: {d.received_raw!r}"
    assert f["id"] == qid, f"queue id in Received {f['id']!r} differs from the 250 reply {qid!r}"
    assert f["rcpt"] == rcpt, d.received_raw
    assert f["version"] == version, f"Received says {f['version']}, client negotiated {version}: {d.received_raw!r}"
    assert f["cipher"] == cipher, f"Received says {f['cipher']}, client negotiated {cipher}: {d.received_raw!r}"
    assert int(f["bits"]) == bits, f"Received says {f['bits']} bits, client has {bits}: {d.received_raw!r}"
    assert int(f["algbits"]) >= int(f["bits"]), d.received_raw
    date = email.utils.parsedate_to_datetime(f["date"])
    if date.tzinfo is None:
        date = date.replace(tzinfo=datetime.timezone.utc)
    assert abs((datetime.datetime.now(datetime.timezone.utc) - date).total_seconds()) < 86400, f["date"]
    return f


def check_tls_log(daemon, local_port, view, sni=None):
    """event=tls for the session from `local_port` agrees with the client."""
    version, cipher, bits = view
    sid = daemon.session_id(local_port)
    ev = daemon.wait_event("tls", session=sid)
    assert ev.get("version") == version, f"log version {ev.get('version')!r}, client {version}: {ev}"
    assert ev.get("cipher") == cipher, f"log cipher {ev.get('cipher')!r}, client {cipher}: {ev}"
    assert ev.get("bits") == str(bits), f"log bits {ev.get('bits')!r}, client {bits}: {ev}"
    if sni is not None:
        assert ev.get("sni") == sni, f"log sni {ev.get('sni')!r}, client sent {sni}: {ev}"
    return ev


def check_handshake_failure_logged(daemon, local_port):
    sid = daemon.session_id(local_port)
    ev = daemon.wait_event("tls_error", session=sid)
    assert ev.get("client") == "127.0.0.1", f"tls_error without client=127.0.0.1: {ev}"
    assert ev.get("reason"), f"tls_error without a reason: {ev}"
    return ev


def check_still_serving(daemon, pki, tag):
    """A fresh STARTTLS session still delivers a message."""
    with daemon.starttls_session(ctx=verifying(pki), server_hostname="mx.test") as c:
        view = client_view(c.sock)
        qid, msg = deliver(c, tag, rcpt=f"{tag}@mx.test")
    [d] = daemon.wait_mail("mx.test", tag, 1)
    assert d.message == msg
    check_tls_received(d, qid, "client.test", view, rcpt=f"{tag}@mx.test")


@contextlib.contextmanager
def quiet_deprecation():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


# --------------------------------------------------------------------------
# embedded default and the self-signed certificate


def parse_listeners(text):
    out = {}
    for name, body in re.findall(r"^\s*listen\s+(\S+)\s*\{(.*?)\}", text, re.M | re.S):
        kv = dict(re.findall(r"(\w+)\s*=\s*\"?([^\"\s]+)\"?", body))
        out[name] = (kv.get("address", "127.0.0.1"), int(kv.get("port", "25")), kv.get("tls", "starttls"))
    return out


def test_embedded_default_has_three_tls_listeners(tlsd):
    r = run([binary_path(), "serve", "--print-default-config"])
    text = r.stdout.decode()
    assert parse_listeners(text) == {
        "smtp": ("127.0.0.1", 2525, "starttls"),
        "submission": ("127.0.0.1", 5870, "starttls-required"),
        "submissions": ("127.0.0.1", 4650, "implicit"),
    }, f"embedded default listeners differ from the issue:\n{text}"
    assert not re.search(r"^\s*certificate\s", text, re.M), f"default config names a certificate:\n{text}"

    # Run exactly that text, moved to free ports (the suite never binds fixed ports).
    ports = {"smtp": (free_port(), "starttls"), "submission": (free_port(), "starttls-required"),
             "submissions": (free_port(), "implicit")}
    moved = text
    for name, (port, _) in ports.items():
        moved = re.sub(r"(listen\s+" + name + r"\s*\{[^}]*?port\s*=\s*)\d+", rf"\g<1>{port}", moved)
    assert parse_listeners(moved) == {n: ("127.0.0.1", p, m) for n, (p, m) in ports.items()}, moved
    tlsd.start_text(moved, ports)

    with tlsd.plain("smtp") as c:
        assert c.greeting().code == 220
        assert "STARTTLS" in ehlo_keywords(c.ehlo()), "smtp listener does not offer STARTTLS"
        assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")  # offered, not required
    with tlsd.plain("submission") as c:
        assert c.greeting().code == 220
        assert "STARTTLS" in ehlo_keywords(c.ehlo()), "submission listener does not offer STARTTLS"
        assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 530, "5.7.0")
    with tlsd.implicit_session("submissions") as c:
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    crt = tlsd.data_dir / "tls" / "selfsigned.crt"
    assert crt.is_file() and (tlsd.data_dir / "tls" / "selfsigned.key").is_file(), \
        f"no self-signed certificate in {tlsd.data_dir / 'tls'}"
    ev = tlsd.wait_event("tls_selfsigned")
    assert ev.get("level") == "warn", ev


def test_selfsigned_created_served_and_kept_across_restart(tlsd):
    tlsd.start_tls(listeners={"submissions": "implicit"})
    tls_dir = tlsd.data_dir / "tls"
    crt, key = tls_dir / "selfsigned.crt", tls_dir / "selfsigned.key"
    assert crt.is_file() and key.is_file(), f"expected {crt} and {key}; have {sorted(tls_dir.glob('*')) if tls_dir.is_dir() else 'no tls/'}"
    ev = tlsd.wait_event("tls_selfsigned")
    assert ev.get("level") == "warn", f"self-signed certificate not logged as a warning: {ev}"
    # the key belongs to the certificate
    pub_c = run(["/usr/bin/openssl", "x509", "-in", crt, "-noout", "-pubkey"]).stdout
    pub_k = run(["/usr/bin/openssl", "pkey", "-in", key, "-pubout"]).stdout
    assert pub_c == pub_k, "selfsigned.key does not match selfsigned.crt"
    blocks = pem_blocks(crt.read_text())
    assert blocks, f"{crt} holds no PEM certificate"
    want = der_fingerprint(ssl.PEM_cert_to_DER_cert(blocks[0]))

    with tlsd.starttls_session() as c:
        assert c.peer_fingerprint() == want, "STARTTLS does not serve data/tls/selfsigned.crt"
    with tlsd.implicit_session() as c:
        assert c.peer_fingerprint() == want, "implicit TLS does not serve data/tls/selfsigned.crt"

    crt_bytes, key_bytes = crt.read_bytes(), key.read_bytes()
    assert tlsd.stop() == 0
    tlsd.restart()
    assert crt.read_bytes() == crt_bytes and key.read_bytes() == key_bytes, \
        "the self-signed certificate was regenerated although it existed"
    with tlsd.starttls_session() as c:
        assert c.peer_fingerprint() == want, "a different certificate is served after restart"


# --------------------------------------------------------------------------
# real clients deliver


def test_smtplib_starttls_delivers_with_esmtps(mwtls, pki):
    ctx = verifying(pki)  # also checks the IP SAN: smtplib verifies "127.0.0.1"
    with smtplib.SMTP("127.0.0.1", mwtls.port, local_hostname="client.test", timeout=30) as s:
        s.ehlo()
        assert s.has_extn("starttls"), "STARTTLS not advertised"
        code, resp = s.starttls(context=ctx)
        assert code == 220 and resp == b"2.0.0 Ready to start TLS", (code, resp)
        s.ehlo()
        assert not s.has_extn("starttls"), "STARTTLS still advertised after TLS started"
        view = client_view(s.sock)
        local_port = s.sock.getsockname()[1]
        msg = msg_for("smtplib-starttls")
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("user@mx.test")[0] == 250
        code, resp = s.data(msg)
        assert code == 250, resp
        qid = queue_id_of(resp.decode())
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    assert d.message == msg
    check_tls_received(d, qid, "client.test", view)
    check_tls_log(mwtls, local_port, view)


def test_smtplib_smtp_ssl_implicit_tls_delivers(mwtls, pki):
    ctx = verifying(pki)
    port = mwtls.port_of("submissions")
    with smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="ssl.test", context=ctx, timeout=30) as s:
        code, _ = s.ehlo()
        assert code == 250
        assert not s.has_extn("starttls"), "implicit-TLS listener advertises STARTTLS"
        code, resp = s.docmd("STARTTLS")
        assert code == 503 and resp.startswith(b"5.5.1"), f"STARTTLS inside implicit TLS: {code} {resp}"
        view = client_view(s.sock)
        local_port = s.sock.getsockname()[1]
        msg = msg_for("smtp-ssl")
        assert s.mail(SENDER)[0] == 250
        assert s.rcpt("user@mx.test")[0] == 250
        code, resp = s.data(msg)
        assert code == 250, resp
        qid = queue_id_of(resp.decode())
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    assert d.message == msg
    check_tls_received(d, qid, "ssl.test", view)
    check_tls_log(mwtls, local_port, view)


def test_openssl_s_client_starttls_delivers(tlsd, pki):
    tlsd.start_tls(certificates=[("mx", [pki.mx_rsa])])  # mx-rsa.pem = leaf + CA
    args = ["-connect", f"127.0.0.1:{tlsd.port}", "-starttls", "smtp", "-name", "sclient.test",
            "-servername", "mx.test", "-CAfile", pki.ca.cert, "-verify_return_error",
            "-verify_hostname", "mx.test", "-showcerts", "-crlf", "-nocommands"]
    with SClient(args) as sc:
        m = sc.wait_for(r"^\s*Verify return code: (\d+)")
        assert m.group(1) == "0", f"certificate not verified by s_client:\n{sc.text}"
        summary = sclient_summary(sc.text)
        assert summary, f"no TLS session in s_client output:\n{sc.text}"
        version, cipher = summary
        chain = pem_blocks(sc.text.split("---\nServer certificate")[0] + "\n")
        assert len(chain) == 2, f"expected leaf + CA from mx-rsa.pem, s_client saw {len(chain)} certificates"
        assert der_fingerprint(ssl.PEM_cert_to_DER_cert(chain[0])) == pki.mx_rsa.fingerprint
        assert der_fingerprint(ssl.PEM_cert_to_DER_cert(chain[1])) == pki.ca.fingerprint
        assert re.search(r"^Compression: NONE", sc.text, re.M), f"compression negotiated:\n{sc.text}"

        stale = sc.sync()
        assert all(code == 250 and re.fullmatch(r"[A-Z0-9-]+(?: .*)?", lines[0]) and len(lines) == 1
                   for code, lines in stale), f"unexpected reply after the handshake: {stale}"
        code, lines = sc.cmd("EHLO sclient.test")
        assert code == 250 and lines[0].startswith("mx.test"), (code, lines)
        assert "STARTTLS" not in [l.split()[0].upper() for l in lines[1:]], lines
        assert sc.cmd(f"MAIL FROM:<{SENDER}>")[0] == 250
        assert sc.cmd("RCPT TO:<user@mx.test>")[0] == 250
        assert sc.cmd("DATA")[0] == 354
        for line in ["Subject: via openssl s_client", "Message-ID: <sclient@example.net>", "",
                     "sent by openssl s_client -starttls smtp", "."]:
            sc.send(line)
        code, lines = sc.reply()
        assert code == 250, (code, lines)
        qid = queue_id_of(lines[0])
        assert sc.cmd("QUIT")[0] == 221
        sc.wait()
    [d] = tlsd.wait_mail("mx.test", "user", 1)
    assert d.message == (b"Subject: via openssl s_client\r\nMessage-ID: <sclient@example.net>\r\n\r\n"
                         b"sent by openssl s_client -starttls smtp\r\n")
    f = tls_received(d)
    assert (f["version"], f["cipher"]) == (version, cipher), \
        f"Received {f['version']}/{f['cipher']} but s_client negotiated {version}/{cipher}"
    assert f["proto"] == "ESMTPS" and f["helo"] == "sclient.test" and f["id"] == qid, d.received_raw


def swaks_run(args):
    swaks = need_swaks("tls")
    r = subprocess.run([swaks, *map(str, args)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    return r.returncode, r.stdout.decode("utf-8", "replace")


@pytest.mark.parametrize("mode", ["starttls", "tls-on-connect"])
def test_swaks_tls_delivers(mwtls, pki, mode):
    if mode == "starttls":
        port, flag, rcpt = mwtls.port, "--tls", "swaks@mx.test"
    else:
        port, flag, rcpt = mwtls.port_of("submissions"), "--tls-on-connect", "swakssub@mx.test"
    rc, out = swaks_run(["--server", "127.0.0.1", "--port", port, flag, "--tls-verify",
                         "--tls-ca-path", pki.ca.cert, "--tls-sni", "mx.test",
                         "--ehlo", "swaks.test", "--from", SENDER, "--to", rcpt,
                         "--header", f"X-Test-Id: swaks-{mode}",
                         "--body", "sent by swaks"])
    assert rc == 0, f"swaks {flag} failed ({rc}):\n{out}"
    m = re.search(r"TLS started with cipher (TLSv1\.[23]):([A-Za-z0-9_-]+):(\d+)", out)
    assert m, f"swaks did not report a TLS session:\n{out}"
    q = re.search(r"<~\s+250 .*queued as (\S+)", out)
    assert q, f"no 250 ... queued as over TLS in the swaks transcript:\n{out}"
    user = rcpt.split("@")[0]
    [d] = mwtls.wait_mail("mx.test", user, 1)
    assert d.header("X-Test-Id") == f"swaks-{mode}", d.raw[:600]
    check_tls_received(d, q.group(1), "swaks.test", (m.group(1), m.group(2), int(m.group(3))), rcpt=rcpt)


# --------------------------------------------------------------------------
# STARTTLS state machine


def test_starttls_reply_then_no_second_starttls(mwtls, pki):
    with mwtls.plain() as c:
        assert c.greeting().code == 220
        assert "STARTTLS" in ehlo_keywords(c.ehlo())
        r = c.cmd("STARTTLS")
        assert r.code == 220 and r.lines == ["2.0.0 Ready to start TLS"], r
        c.wrap(verifying(pki), "mx.test")
        r = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(r), f"STARTTLS advertised while TLS is active: {r}"
        assert_reply(c.cmd("STARTTLS"), 503, "5.5.1")
        assert_reply(c.cmd("NOOP"), 250, "2.0.0")  # the session is still usable
        qid, msg = deliver(c, "after-503")
        view = client_view(c.sock)
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    check_tls_received(d, qid, "client.test", view)


def test_starttls_inside_transaction_is_503(mwtls, pki):
    with mwtls.plain() as c:
        assert c.greeting().code == 220
        c.ehlo()
        assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
        assert_reply(c.cmd("STARTTLS"), 503, "5.5.1")
        # still clear text, transaction intact
        assert_reply(c.cmd("RCPT TO:<user@mx.test>"), 250, "2.1.5")
        assert_reply(c.cmd("RSET"), 250, "2.0.0")
        c.starttls(verifying(pki), "mx.test")
        c.ehlo()
        assert c.sock.version() in ("TLSv1.2", "TLSv1.3")


def test_starttls_on_tls_none_listener_is_502(mwtls):
    with mwtls.plain("plain") as c:
        assert c.greeting().code == 220
        r = c.ehlo()
        assert "STARTTLS" not in ehlo_keywords(r), f"tls = none listener advertises STARTTLS: {r}"
        assert_reply(c.cmd("STARTTLS"), 502, "5.5.1")
        qid, msg = deliver(c, "cleartext")   # plain SMTP still works there
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    assert d.received_fields()["proto"] == "ESMTP", d.received_raw
    assert b"using TLS" not in d.received_raw


def test_tls_handshake_forgets_ehlo(mwtls, pki):
    """RFC 3207 4.2: after the handshake the server discards what it knew
    (the EHLO argument): MAIL needs a new EHLO, and the Received header names
    the EHLO given inside TLS."""
    with mwtls.plain() as c:
        assert c.greeting().code == 220
        c.ehlo("before-tls.test")
        c.starttls(verifying(pki), "mx.test")
        assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 503, "5.5.1")
        c.ehlo("after-tls.test")
        qid, msg = deliver(c, "forget")
        view = client_view(c.sock)
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    check_tls_received(d, qid, "after-tls.test", view)


@pytest.mark.parametrize("injected", [b"RSET", b"MAIL FROM:<injected@example.net>",
                                      b"EHLO injected.test\r\nMAIL FROM:<injected@example.net>"])
def test_starttls_command_injection_discarded(mwtls, pki, injected):
    """CVE-2011-0411 style: commands sent in clear text right behind STARTTLS
    (same packet) must never be executed inside the TLS session."""
    with mwtls.plain() as c:
        assert c.greeting().code == 220
        c.ehlo()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.send(b"STARTTLS\r\n" + injected + b"\r\n")  # one send = one segment
        r = c.reply()
        assert r.code == 220 and r.enhanced == "2.0.0", r
        assert c.buf == b"", f"clear-text reply to the injected command: {c.buf!r}"
        c.wrap(verifying(pki), "mx.test")
        r = c.cmd("EHLO after.test")
        assert r.code == 250 and r.lines[0].startswith("mx.test") and len(r.lines) > 1, \
            f"first reply inside TLS is not the EHLO reply, the injected {injected!r} was executed: {r}"
        # no transaction was started by the injected MAIL
        r = c.cmd("RCPT TO:<user@mx.test>")
        assert r.code == 503, f"RCPT after the handshake: {r} (injected MAIL executed?)"
        assert_reply(c.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")
        c.send(b"QUIT\r\n")
        rest = c.read_all_until_closed()
        assert [x.code for x in rest] == [221], f"replies pending besides QUIT's 221: {rest}"
        assert c.buf == b"", c.buf


def test_submission_requires_tls_before_mail(mwtls, pki):
    with mwtls.plain("submission") as c:
        assert c.greeting().code == 220
        r = c.ehlo()
        assert "STARTTLS" in ehlo_keywords(r), f"submission does not offer STARTTLS: {r}"
        for cmd in (f"MAIL FROM:<{SENDER}>", "RCPT TO:<user@mx.test>", "DATA",
                    "VRFY user@mx.test", "EXPN staff", "HELP"):
            r = c.cmd(cmd)
            assert r.code == 530 and r.enhanced == "5.7.0", f"{cmd!r} before TLS on submission: {r}"
        assert_reply(c.cmd("NOOP"), 250)
        assert_reply(c.cmd("RSET"), 250)
        assert c.cmd("HELO client.test").code == 250
        c.ehlo()
        c.starttls(verifying(pki), "mx.test")
        c.ehlo()
        qid, msg = deliver(c, "submission")
        view = client_view(c.sock)
        assert_reply(c.cmd("QUIT"), 221)
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    assert d.message == msg
    check_tls_received(d, qid, "client.test", view)


def test_submission_bdat_before_tls_is_530(mwtls):
    # (mailwarden then closes the connection: a refused BDAT's chunk could
    # otherwise be read as commands; the contract only fixes the reply)
    with mwtls.plain("submission") as c:
        assert c.greeting().code == 220
        c.ehlo()
        assert_reply(c.cmd("BDAT 0 LAST"), 530, "5.7.0")


def test_submission_quit_before_tls(mwtls):
    with mwtls.plain("submission") as c:
        assert c.greeting().code == 220
        assert_reply(c.cmd("QUIT"), 221)
        assert c.wait_closed()


# --------------------------------------------------------------------------
# protocol versions, ciphers, renegotiation, resumption


def test_tls12_and_tls13_forward_secret_no_compression(mwtls, pki):
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(ca=pki.ca.cert, check_hostname=True, minimum=version, maximum=version)
        ctx.options &= ~ssl.OP_NO_COMPRESSION
        for listener in ("smtp", "submissions"):
            if listener == "smtp":
                c = mwtls.starttls_session(ctx=ctx, server_hostname="mx.test")
            else:
                c = mwtls.implicit_session(ctx=ctx, server_hostname="mx.test")
            with c:
                name, _, bits = c.sock.cipher()
                assert c.sock.version() == version.name.replace("_", "."), (listener, c.sock.version())
                if version == ssl.TLSVersion.TLSv1_2:
                    assert name.startswith(("ECDHE-", "DHE-")), f"TLS 1.2 cipher without forward secrecy: {name}"
                assert c.sock.compression() is None, f"TLS compression negotiated: {c.sock.compression()}"
                assert_reply(c.cmd("NOOP"), 250)


def _legacy_control(pki, version):
    """Prove that legacy_client_context(version) really offers `version`."""
    def loosen(ctx):
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with quiet_deprecation(), python_tls_server(pki.mx_rsa, loosen) as (port, results):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            with legacy_client_context(version).wrap_socket(s) as t:
                got = t.version()
    want = {ssl.TLSVersion.TLSv1: "TLSv1", ssl.TLSVersion.TLSv1_1: "TLSv1.1"}[version]
    assert got == want, f"control: the test client does not negotiate {want} (got {got}); the test would prove nothing"


@pytest.mark.parametrize("listener", ["smtp", "submissions"])
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls10_tls11_refused_python(mwtls, pki, version, listener):
    tv = getattr(ssl.TLSVersion, version)
    _legacy_control(pki, tv)
    c = mwtls.plain(listener)
    with c:
        if listener == "smtp":
            assert c.greeting().code == 220
            c.ehlo()
            assert_reply(c.cmd("STARTTLS"), 220, "2.0.0")
        with quiet_deprecation(), pytest.raises((ssl.SSLError, OSError)) as e:
            c.wrap(legacy_client_context(tv), "mx.test")
            c.greeting() if listener != "smtp" else c.cmd("EHLO x.test")
        assert "NO_PROTOCOLS_AVAILABLE" not in str(e.value), f"refused by the local client, not the server: {e.value}"
    check_handshake_failure_logged(mwtls, c.local_port)
    check_still_serving(mwtls, pki, "afterlegacy")


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_tls10_tls11_refused_openssl(mwtls, pki, flag):
    want = {"-tls1": "TLSv1", "-tls1_1": "TLSv1.1"}[flag]
    client = [flag, "-cipher", "DEFAULT@SECLEVEL=0"]
    with openssl_server(pki.mx_rsa, ["-cipher", "DEFAULT@SECLEVEL=0", flag]) as port:
        rc, out = s_client_once(["-connect", f"127.0.0.1:{port}", *client])
    got = sclient_summary(out)
    assert got and got[0] == want, f"control: s_client {' '.join(client)} does not negotiate {want}:\n{out}"

    for listener in ("smtp", "submissions"):
        target = ["-connect", f"127.0.0.1:{mwtls.port_of(listener)}"]
        if listener == "smtp":
            target += ["-starttls", "smtp"]
        rc, out = s_client_once([*target, "-servername", "mx.test", *client])
        assert sclient_summary(out) is None, f"{listener}: {want} handshake completed:\n{out}"
        assert rc != 0, f"{listener}: s_client exit status 0 although no session:\n{out}"
        assert "no protocols available" not in out, f"refused locally, not by the server:\n{out}"
    check_still_serving(mwtls, pki, "afteropenssl")


NON_FS = "AES128-GCM-SHA256:AES256-SHA"


def test_non_forward_secret_ciphers_refused_openssl(mwtls, pki):
    client = ["-tls1_2", "-cipher", NON_FS]
    with openssl_server(pki.mx_rsa, ["-cipher", NON_FS]) as port:
        rc, out = s_client_once(["-connect", f"127.0.0.1:{port}", *client])
    got = sclient_summary(out)
    assert got == ("TLSv1.2", "AES128-GCM-SHA256"), f"control: s_client {' '.join(client)} does not negotiate a static-RSA cipher:\n{out}"
    for listener in ("smtp", "submissions"):
        target = ["-connect", f"127.0.0.1:{mwtls.port_of(listener)}"]
        if listener == "smtp":
            target += ["-starttls", "smtp"]
        rc, out = s_client_once([*target, "-servername", "mx.test", *client])
        assert sclient_summary(out) is None, f"{listener}: non-forward-secret cipher accepted:\n{out}"
        assert rc != 0, out


def test_non_forward_secret_ciphers_refused_python(mwtls, pki):
    def ctx():
        return client_context(maximum=ssl.TLSVersion.TLSv1_2, ciphers=NON_FS)
    with python_tls_server(pki.mx_rsa, lambda s: s.set_ciphers(NON_FS)) as (port, _):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s, ctx().wrap_socket(s) as t:
            assert t.cipher()[0] in ("AES128-GCM-SHA256", "AES256-SHA"), f"control failed: {t.cipher()}"
    with mwtls.plain() as c:
        assert c.greeting().code == 220
        c.ehlo()
        assert_reply(c.cmd("STARTTLS"), 220, "2.0.0")
        with pytest.raises((ssl.SSLError, OSError)):
            c.wrap(ctx(), "mx.test")
            c.cmd("EHLO x.test")
    check_handshake_failure_logged(mwtls, c.local_port)


def test_client_initiated_renegotiation_refused(mwtls, pki):
    def attempt(args):
        """s_client: handshake, 'R' (renegotiate), then EHLO. Returns
        (EHLO answered with 250 after the renegotiation?, output)."""
        with SClient([*args, "-tls1_2", "-crlf"]) as sc:
            sc.wait_for(r"^\s*Verify return code")
            sc.wait_for(r"^---$")
            sc.send("R")
            sc.wait_for(r"^RENEGOTIATING")
            try:
                sc.send("EHLO reneg.test")
                while True:
                    line = sc.line()
                    if re.match(r"^250[ -]mx\.test", line):  # the EHLO reply (not s_client's stale line)
                        return True, sc.text
            except (ConnectionClosed, BrokenPipeError):
                sc.wait()
                return False, sc.text

    # control: a server that allows it renegotiates and keeps talking
    with openssl_server(pki.mx_rsa, ["-client_renegotiation"]) as port:
        with SClient(["-connect", f"127.0.0.1:{port}", "-tls1_2", "-crlf"]) as sc:
            sc.wait_for(r"^---$")
            sc.send("R")
            sc.wait_for(r"^RENEGOTIATING")
            sc.wait_for(r"^verify return:")  # the certificate is checked again: a new handshake
    answered, out = attempt(["-connect", f"127.0.0.1:{mwtls.port}", "-starttls", "smtp",
                             "-servername", "mx.test"])
    assert not answered, f"client-initiated renegotiation was accepted:\n{out}"
    assert "no renegotiation" in out.lower() or "alert" in out.lower(), out
    check_still_serving(mwtls, pki, "afterreneg")


@pytest.mark.parametrize("listener", ["smtp", "submissions"])
@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_session_resumption(mwtls, pki, version, listener):
    tv = getattr(ssl.TLSVersion, version)
    ctx = client_context(ca=pki.ca.cert, check_hostname=True, minimum=tv, maximum=tv)

    def connect(session):
        if listener == "smtp":
            c = TLSConn(mwtls.port)
            assert c.greeting().code == 220
            c.ehlo()
            c.starttls(ctx, "mx.test", session=session)
        else:
            c = TLSConn.implicit(mwtls.port_of(listener), ctx, "mx.test", session=session)
            assert c.greeting().code == 220
        c.ehlo()  # reading a reply also reads TLS 1.3 session tickets
        return c

    with connect(None) as c1:
        assert not c1.sock.session_reused
        sess = c1.sock.session
        assert sess is not None and sess.has_ticket, f"no session ticket issued ({version}, {listener})"
        assert_reply(c1.cmd("QUIT"), 221)
    with connect(sess) as c2:
        assert c2.sock.session_reused, f"{version} session not resumed on {listener}"
        ev = mwtls.wait_event("tls", session=mwtls.session_id(c2.local_port))
        assert ev.get("resumed") == "yes", f"resumed session logged as {ev} (docs/tls.md: resumed=yes|no)"
        qid, msg = deliver(c2, "resumed")
    [d] = mwtls.wait_mail("mx.test", "user", 1)
    assert tls_received(d)["proto"] == "ESMTPS"


# --------------------------------------------------------------------------
# certificates: SNI, RSA + ECDSA


SNI_CASES = [
    # (SNI sent, which certificate, the name it must be valid for)
    ("mx.test", "mx", "mx.test"),
    ("other.test", "other", "other.test"),
    ("a.wild.test", "wild", "a.wild.test"),
    ("a.b.wild.test", "mx", None),   # "*.wild.test" matches one label only
    ("wild.test", "mx", None),
    ("cnonly.test", "cnonly", "cnonly.test"),
    ("unknown.test", "mx", None),
    (None, "mx", None),
]


@pytest.mark.parametrize("listener", ["smtp", "submissions"])
def test_sni_selects_certificate(tlsd, pki, listener):
    tlsd.start_tls(listeners={"submissions": "implicit"},
                   certificates=[("mx", [pki.mx_rsa, pki.mx_ecdsa]), ("other", [pki.other]),
                                 ("wild", [pki.wild]), ("cnonly", [pki.cnonly])])
    expect = {"mx": {pki.mx_rsa.fingerprint, pki.mx_ecdsa.fingerprint}, "other": {pki.other.fingerprint},
              "wild": {pki.wild.fingerprint}, "cnonly": {pki.cnonly.fingerprint}}
    wrong = []
    for sni, section, valid_for in SNI_CASES:
        ctx = client_context(ca=pki.ca.cert, check_hostname=True) if valid_for else client_context()
        try:
            if listener == "smtp":
                c = tlsd.starttls_session(ctx=ctx, server_hostname=sni)
            else:
                c = tlsd.implicit_session(ctx=ctx, server_hostname=sni)
        except ssl.SSLCertVerificationError as e:
            wrong.append(f"SNI {sni}: certificate not valid for {valid_for}: {e}")
            continue
        with c:
            got = c.peer_der()
            if der_fingerprint(got) not in expect[section]:
                wrong.append(f"SNI {sni}: expected section {section}, got {pki.describe(got)}")
            if sni is not None:
                ev = check_tls_log(tlsd, c.local_port, client_view(c.sock))
                if ev.get("sni") != sni:
                    wrong.append(f"SNI {sni}: event=tls logs sni={ev.get('sni')!r}")
    assert not wrong, "\n".join(wrong)


def test_rsa_and_ecdsa_side_by_side_tls12(mwtls, pki):
    cases = [("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384", pki.mx_ecdsa),
             ("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384", pki.mx_rsa)]
    for ciphers, want in cases:
        ctx = client_context(ca=pki.ca.cert, check_hostname=True, maximum=ssl.TLSVersion.TLSv1_2,
                             ciphers=ciphers)
        for listener in ("smtp", "submissions"):
            for sni in ("mx.test", None):
                if listener == "smtp":
                    c = mwtls.starttls_session(ctx=ctx, server_hostname=sni or "127.0.0.1")
                else:
                    c = mwtls.implicit_session(ctx=ctx, server_hostname=sni or "127.0.0.1")
                with c:
                    assert c.peer_fingerprint() == want.fingerprint, \
                        f"{listener} SNI={sni} ciphers {ciphers}: expected {want}, got {pki.describe(c.peer_der())}"
                    assert c.sock.cipher()[0] in ciphers.split(":")


def test_rsa_and_ecdsa_side_by_side_tls13_sigalgs(mwtls, pki):
    cases = [("ecdsa_secp256r1_sha256", pki.mx_ecdsa),
             ("rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512", pki.mx_rsa)]
    for sigalgs, want in cases:
        for listener in ("smtp", "submissions"):
            target = ["-connect", f"127.0.0.1:{mwtls.port_of(listener)}"]
            if listener == "smtp":
                target += ["-starttls", "smtp"]
            rc, out = s_client_once([*target, "-servername", "mx.test", "-tls1_3", "-sigalgs", sigalgs,
                                     "-CAfile", pki.ca.cert, "-verify_return_error"])
            got = sclient_leaf_der(out)
            assert sclient_summary(out) and sclient_summary(out)[0] == "TLSv1.3", \
                f"{listener} sigalgs {sigalgs}: no TLS 1.3 session:\n{out}"
            assert got and der_fingerprint(got) == want.fingerprint, \
                f"{listener} sigalgs {sigalgs}: expected {want}, got {pki.describe(got)}"


# --------------------------------------------------------------------------
# SIGHUP: certificate reload


def reload_and_wait(daemon, result):
    before = len(daemon.log_events("reload"))
    daemon.signal(signal.SIGHUP)
    wait_until(lambda: len(daemon.log_events("reload")) > before, REPLY_TIMEOUT,
               what=f"event=reload after SIGHUP\n{daemon.log_tail()}")
    ev = daemon.log_events("reload")[before]
    assert ev.get("result") == result, f"expected event=reload result={result}, got {ev}"
    return ev


def served(daemon, listener="smtp", sni="mx.test"):
    if daemon.port_of(listener) == daemon.port:
        with daemon.starttls_session(server_hostname=sni) as c:
            return c.peer_fingerprint()
    with daemon.implicit_session(listener, server_hostname=sni) as c:
        return c.peer_fingerprint()


def test_sighup_reloads_certificate_open_session_survives(tlsd, pki, tmp_path):
    live = pki.copy(pki.mx_rsa, tmp_path / "live", "mx")
    tlsd.start_tls(listeners={"submissions": "implicit"}, certificates=[("mx", [live])])
    assert served(tlsd) == pki.mx_rsa.fingerprint
    assert served(tlsd, "submissions") == pki.mx_rsa.fingerprint

    old = tlsd.starttls_session(ctx=verifying(pki), server_hostname="mx.test")
    old_impl = tlsd.implicit_session(ctx=verifying(pki), server_hostname="mx.test")
    with old, old_impl:
        assert_reply(old.cmd(f"MAIL FROM:<{SENDER}>"), 250, "2.1.0")  # transaction spans the reload
        replace_file(live.cert, pki.mx_rsa_renewed.cert)
        replace_file(live.key, pki.mx_rsa_renewed.key)
        reload_and_wait(tlsd, "ok")

        assert served(tlsd) == pki.mx_rsa_renewed.fingerprint, "STARTTLS still serves the old certificate after SIGHUP"
        assert served(tlsd, "submissions") == pki.mx_rsa_renewed.fingerprint, \
            "implicit TLS still serves the old certificate after SIGHUP"

        # the sessions opened before the reload still work
        assert_reply(old.cmd("RCPT TO:<user@mx.test>"), 250, "2.1.5")
        assert_reply(old.cmd("DATA"), 354)
        msg1 = msg_for("before-reload")
        old.send(msg1 + b".\r\n")
        r = old.reply()
        assert_reply(r, 250, "2.0.0")
        qid1 = queue_id_of(r)
        qid2, msg2 = deliver(old_impl, "implicit-before-reload", rcpt="impl@mx.test")
        view = client_view(old.sock)
        assert old.peer_fingerprint() == pki.mx_rsa.fingerprint
        assert_reply(old.cmd("QUIT"), 221)
        assert_reply(old_impl.cmd("QUIT"), 221)
    [d] = tlsd.wait_mail("mx.test", "user", 1)
    assert d.message == msg1
    check_tls_received(d, qid1, "client.test", view)
    [d2] = tlsd.wait_mail("mx.test", "impl", 1)
    assert d2.message == msg2 and tls_received(d2)["id"] == qid2
    assert tlsd.running()


BAD_RELOADS = {
    # name: (what to do to the live files, which file the error must name)
    "mismatched_key": (lambda live, pki: replace_file(live.key, pki.stray_key), "either"),
    "garbage_cert": (lambda live, pki: replace_file(live.cert, pki.garbage), "cert"),
    "missing_key": (lambda live, pki: live.key.unlink(), "key"),
}


@pytest.mark.parametrize("case", sorted(BAD_RELOADS))
def test_sighup_bad_certificate_keeps_old_one(tlsd, pki, tmp_path, case):
    break_files, names = BAD_RELOADS[case]
    live = pki.copy(pki.mx_rsa, tmp_path / "live", "mx")
    tlsd.start_tls(listeners={"submissions": "implicit"}, certificates=[("mx", [live])])
    assert served(tlsd) == pki.mx_rsa.fingerprint
    with tlsd.starttls_session(ctx=verifying(pki), server_hostname="mx.test") as open_session:
        break_files(live, pki)
        ev = reload_and_wait(tlsd, "rejected")
        err = ev.get("error", "")
        files = {"cert": [str(live.cert)], "key": [str(live.key)], "either": [str(live.cert), str(live.key)]}[names]
        assert any(f in err for f in files), f"reload error does not name {' or '.join(files)}: {ev}"
        assert ev.get("level") == "error", f"rejected reload not logged as an error: {ev}"
        assert tlsd.running(), "daemon died on a bad certificate reload"

        assert served(tlsd) == pki.mx_rsa.fingerprint, "old certificate not kept after a bad reload"
        assert served(tlsd, "submissions") == pki.mx_rsa.fingerprint
        qid, msg = deliver(open_session, "open-during-bad-reload")
    [d] = tlsd.wait_mail("mx.test", "user", 1)
    assert d.message == msg
    check_still_serving(tlsd, pki, "afterbadreload")

    # repaired files are picked up by the next SIGHUP
    replace_file(live.cert, pki.mx_rsa_renewed.cert)
    replace_file(live.key, pki.mx_rsa_renewed.key)
    reload_and_wait(tlsd, "ok")
    assert served(tlsd) == pki.mx_rsa_renewed.fingerprint


# --------------------------------------------------------------------------
# failed handshakes


@pytest.mark.parametrize("listener", ["smtp", "submissions"])
def test_failed_handshake_logged_and_daemon_keeps_serving(mwtls, pki, listener):
    garbage = b"this is not a TLS ClientHello at all\r\n" * 4
    with mwtls.plain(listener) as c:
        if listener == "smtp":
            assert c.greeting().code == 220
            c.ehlo()
            assert_reply(c.cmd("STARTTLS"), 220, "2.0.0")
        c.send(garbage)
        assert c.wait_closed(), "connection left open after a failed handshake"
        assert not re.search(rb"^\d{3}[ -]", c.buf, re.M), f"SMTP reply to bytes of a failed handshake: {c.buf!r}"
    check_handshake_failure_logged(mwtls, c.local_port)
    assert mwtls.running()
    check_still_serving(mwtls, pki, "aftergarbage")
    with mwtls.implicit_session(ctx=verifying(pki), server_hostname="mx.test") as c2:
        assert_reply(c2.cmd("NOOP"), 250)


def test_client_closing_during_handshake_does_not_hurt(mwtls, pki):
    """Half a ClientHello, then the client goes away."""
    for listener in ("smtp", "submissions"):
        with mwtls.plain(listener) as c:
            if listener == "smtp":
                assert c.greeting().code == 220
                c.ehlo()
                assert_reply(c.cmd("STARTTLS"), 220, "2.0.0")
            c.send(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
    assert mwtls.running()
    check_still_serving(mwtls, pki, "afterhalfhello")
