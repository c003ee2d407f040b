"""SMTP AUTH (RFC 4954) and what hangs on it: AUTH only inside TLS, the
user database written by `mailwarden user`, brute-force back-off per client
IP and per account, sender binding (envelope and header From), the
per-user message rate, and the audit log (never a password).

Real clients: Python's smtplib (starttls + login, SMTP_SSL) and swaks.
"""

import base64
import re
import smtplib
import socket
import ssl
import stat
import subprocess
import time

import pytest

from mwharness import REPLY_TIMEOUT, SMTPConn, assert_reply, binary_path, free_port
from tlsharness import TLSConn, client_context, ehlo_keywords, need_swaks

ALICE, ALICE_PW = "alice@localhost", "correct horse battery"
BOB, BOB_PW = "bob@localhost", "s3cret-Bob"
LISTENERS = {"submission": "starttls-required", "submissions": "implicit"}
GRANTS = 'user "alice@localhost" { senders = { "sales@localhost", "@example.org" } }'


def add_user(daemon, user, password):
    r = subprocess.run([str(binary_path()), "user", "add", user, "-c", str(daemon.config_path)],
                       input=(password + "\n").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    assert r.returncode == 0, f"mailwarden user add {user}: {r.stdout.decode()}"


def start(tlsd, pki, auth_listeners=("submission", "submissions", "smtp"), **settings):
    tlsd.auth_listeners = set(auth_listeners)
    tlsd.extra = GRANTS
    settings.setdefault("auth_failures", 3)
    settings.setdefault("auth_backoff", 30)
    tlsd.start_tls(listeners=LISTENERS, certificates=[("mx", [pki.mx_ecdsa])], **settings)
    add_user(tlsd, ALICE, ALICE_PW)
    add_user(tlsd, BOB, BOB_PW)
    return tlsd


@pytest.fixture
def sub(tlsd, pki):
    return start(tlsd, pki)


def ctx_for(pki):
    return client_context(ca=pki.ca.cert, check_hostname=True)


def smtp_starttls(daemon, pki, listener="submission", source=None):
    s = smtplib.SMTP("127.0.0.1", daemon.port_of(listener), local_hostname="client.test",
                     timeout=REPLY_TIMEOUT, source_address=(source, 0) if source else None)
    s.ehlo()
    s.starttls(context=ctx_for(pki))
    s.ehlo()
    return s


def message(sender, rcpt, subject):
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@test>\r\n\r\nbody {subject}\r\n").encode()


def auth_events(daemon, **fields):
    return daemon.events("auth", **fields)


def no_password_logged(daemon):
    log = daemon.log
    for pw in (ALICE_PW, BOB_PW, "wrong-password", "wrong-1", "wrong-2", "wrong-3"):
        assert pw not in log, f"a password appears in the log"


# ------------------------------------------------------------------ syntax


def test_auth_syntax_and_the_mail_parameter_before_tls(sub, pki):
    # On the smtp listener AUTH is not advertised before TLS: its MAIL
    # parameter is then unknown (555, RFC 4954 5) rather than accepted.
    with SMTPConn(sub.port_of("smtp")) as c:
        assert c.greeting().code == 220
        assert "AUTH" not in " ".join(c.ehlo().lines).upper()
        assert_reply(c.cmd(f"MAIL FROM:<{ALICE}> AUTH=<>"), 555, "5.5.4")
        assert_reply(c.cmd(f"MAIL FROM:<{ALICE}> AUTH={ALICE}"), 555, "5.5.4")
    s = smtp_starttls(sub, pki, listener="smtp")
    code, resp = s.docmd("AUTH")          # no mechanism: a syntax error
    assert code == 501 and resp.startswith(b"5.5.4"), resp
    code, resp = s.docmd("AUTH", "NOSUCH")
    assert code == 504 and resp.startswith(b"5.5.4"), resp
    code, resp = s.docmd("MAIL", "FROM:<x@example.net> AUTH=<>")   # advertised inside TLS
    assert code == 250, resp
    s.quit()


# ------------------------------------------------------------------ delivery


def test_smtplib_starttls_login_delivers(sub, pki):
    s = smtplib.SMTP("127.0.0.1", sub.port_of("submission"), local_hostname="client.test",
                     timeout=REPLY_TIMEOUT)
    s.ehlo()
    assert not s.has_extn("auth"), "AUTH advertised before TLS"
    s.starttls(context=ctx_for(pki))
    s.ehlo()
    assert s.has_extn("auth"), "AUTH not advertised inside TLS"
    assert set(s.esmtp_features["auth"].upper().split()) == {"PLAIN", "LOGIN"}
    code, _ = s.login(ALICE, ALICE_PW)
    assert code == 235
    msg = message(ALICE, BOB, "smtplib-login")
    s.sendmail(ALICE, [BOB], msg)
    s.quit()
    [d] = sub.wait_mail("localhost", "bob", 1)
    assert d.message == msg
    ar = d.authres
    assert "auth=pass" in ar and "smtp.auth=alice@localhost" in ar, ar
    assert re.search(r"with ESMTPSA id", d.received_raw.decode()), d.received_raw
    ev = sub.wait_event("auth", user=ALICE, result="pass")
    assert ev.get("mech") in ("PLAIN", "LOGIN") and ev.get("client") == "127.0.0.1", ev
    no_password_logged(sub)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_smtp_ssl_each_mechanism(sub, pki, mech):
    with smtplib.SMTP_SSL("127.0.0.1", sub.port_of("submissions"), local_hostname="client.test",
                          context=ctx_for(pki), timeout=REPLY_TIMEOUT) as s:
        s.ehlo()
        s.user, s.password = BOB, BOB_PW
        code, _ = s.auth(mech, getattr(s, "auth_" + mech.lower()), initial_response_ok=(mech == "PLAIN"))
        assert code == 235
        s.sendmail(BOB, [ALICE], message(BOB, ALICE, f"ssl-{mech}"))
    sub.wait_mail("localhost", "alice", 1)
    sub.wait_event("auth", user=BOB, mech=mech, result="pass")


def test_authenticated_client_may_relay(sub, pki):
    s = smtp_starttls(sub, pki)
    s.login(ALICE, ALICE_PW)
    assert s.mail(ALICE)[0] == 250
    code, resp = s.rcpt("someone@far-away.example")
    assert code == 250, resp
    s.quit()
    ev = sub.wait_event("rcpt", rcpt="someone@far-away.example")
    assert ev.get("relay") == "allowed" and ev.get("user") == ALICE, ev


def test_swaks_auth(sub, pki):
    swaks = need_swaks("tls", "auth")
    for mech in ("PLAIN", "LOGIN"):
        r = subprocess.run([swaks, "--server", "127.0.0.1", "--port", str(sub.port_of("submission")),
                            "--tls", "--tls-verify", "--tls-ca-path", str(pki.ca.cert),
                            "--tls-sni", "localhost", "--ehlo", "swaks.test",
                            "--auth", mech, "--auth-user", ALICE, "--auth-password", ALICE_PW,
                            "--from", ALICE, "--to", BOB, "--header", f"Subject: swaks {mech}"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode("utf-8", "replace")
        assert r.returncode == 0, out
        assert re.search(r"<~\s+235 2\.7\.0", out), out
    mails = sub.wait_mail("localhost", "bob", 2)
    assert {m.header("Subject") for m in mails} == {"swaks PLAIN", "swaks LOGIN"}


# ------------------------------------------------------------------ TLS only


def test_auth_refused_before_tls(sub, pki):
    # Port-25 style listener (STARTTLS optional) that allows AUTH: not offered
    # and refused in clear text; offered after STARTTLS.
    with TLSConn(sub.port_of("smtp")) as c:
        c.greeting()
        r = c.ehlo("client.test")
        assert "AUTH" not in ehlo_keywords(r)
        assert_reply(c.cmd("AUTH PLAIN AGFsaWNlQGxvY2FsaG9zdABjb3JyZWN0"), 538, "5.7.11")
        c.starttls(ctx_for(pki), "localhost")
        r = c.ehlo("client.test")
        assert "AUTH" in ehlo_keywords(r), r
    # Submission: TLS before anything else.
    with TLSConn(sub.port_of("submission")) as c:
        c.greeting()
        c.ehlo("client.test")
        assert_reply(c.cmd("AUTH LOGIN"), 530, "5.7.0")
    assert auth_events(sub) == [], "a clear-text AUTH reached the credential check"


def test_auth_not_offered_where_listener_disallows(tlsd, pki):
    start(tlsd, pki, auth_listeners=("submissions",))
    with TLSConn(tlsd.port_of("smtp")) as c:
        c.greeting()
        c.ehlo("client.test")
        c.starttls(ctx_for(pki), "localhost")
        r = c.ehlo("client.test")
        assert "AUTH" not in ehlo_keywords(r)
        assert_reply(c.cmd("AUTH PLAIN AGFsaWNlQGxvY2FsaG9zdABjb3JyZWN0"), 502, "5.5.1")


# ------------------------------------------------------------------ throttling


def try_login(daemon, pki, user, password, source=None):
    """One AUTH PLAIN attempt (smtplib's login() would go on to try LOGIN)."""
    s = smtp_starttls(daemon, pki, source=source)
    try:
        s.user, s.password = user, password
        code, text = s.auth("PLAIN", s.auth_plain)
        return code, text
    except smtplib.SMTPAuthenticationError as e:
        return e.smtp_code, e.smtp_error
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            pass


def test_wrong_passwords_throttle_ip(sub, pki):
    for i in range(3):
        code, text = try_login(sub, pki, ALICE, f"wrong-{i + 1}")
        assert code == 535, (code, text)
    # Now even the right password is not checked: back-off for this IP.
    code, text = try_login(sub, pki, ALICE, ALICE_PW)
    assert code == 454 and b"4.7.0" in text, (code, text)
    code, text = try_login(sub, pki, BOB, BOB_PW)
    assert code == 454, "the IP back-off must cover other accounts too"
    # Another client address is not throttled for another account.
    code, _ = try_login(sub, pki, BOB, BOB_PW, source="127.0.0.2")
    assert code == 235
    fails = auth_events(sub, result="fail")
    assert len(fails) == 3 and all(f.get("user") == ALICE for f in fails), fails
    throttled = auth_events(sub, result="throttled")
    assert len(throttled) == 2 and all(int(t["wait"]) > 0 for t in throttled), throttled
    no_password_logged(sub)


def open_tls_sessions(daemon, pki, n):
    """n implicit-TLS sessions on submissions, greeted and EHLO'd."""
    conns = []
    for _ in range(n):
        sock = socket.create_connection(("127.0.0.1", daemon.port_of("submissions")), timeout=60)
        c = ctx_for(pki).wrap_socket(sock, server_hostname="localhost")
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO burst.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        conns.append((c, f))
    return conns


def auth_plain_line(user, password):
    return b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{password}".encode()) + b"\r\n"


def test_parallel_wrong_passwords_get_at_most_auth_failures_checks(tlsd, pki):
    # 40 sessions from one address: 39 wrong passwords at once, then the
    # right one 5 ms later. Attempts count when they start, so only
    # auth_failures (5) of them reach a password check.
    start(tlsd, pki, auth_failures=5, auth_backoff=30, max_connections_per_ip=100)
    conns = open_tls_sessions(tlsd, pki, 40)
    for c, _ in conns[:39]:
        c.sendall(auth_plain_line(ALICE, "wrong-password"))
    time.sleep(0.005)
    conns[39][0].sendall(auth_plain_line(ALICE, ALICE_PW))
    codes = [int(f.readline()[:3]) for _, f in conns]
    for c, _ in conns:
        c.close()
    checked = auth_events(tlsd, result="fail")
    throttled = auth_events(tlsd, result="throttled")
    print(f"burst of 39 wrong + 1 right: {len(checked)} password checks, "
          f"replies {sorted((k, codes.count(k)) for k in set(codes))}")
    assert len(checked) <= 5, checked
    assert codes[39] == 454, "the right password during the back-off must not be checked"
    assert codes.count(535) == len(checked) and codes.count(454) == 40 - len(checked), codes
    assert len(throttled) == 40 - len(checked)
    assert not auth_events(tlsd, result="pass")


def test_good_login_gives_its_attempt_back(tlsd, pki):
    # a successful (or temporarily failed) check is not a failure: many
    # good logins in a row from one address are never throttled
    start(tlsd, pki, auth_failures=2)
    for _ in range(6):
        assert try_login(tlsd, pki, ALICE, ALICE_PW)[0] == 235
    code, _ = try_login(tlsd, pki, ALICE, "wrong")
    assert code == 535
    assert try_login(tlsd, pki, BOB, BOB_PW)[0] == 235


def users_entries(daemon):
    out = {}
    for line in (daemon.data_dir / "users").read_text().splitlines():
        if line and not line.startswith("#"):
            user, _, h = line.partition(":")
            out[user] = h
    return out


def set_hash(daemon, user, new_hash):
    path = daemon.data_dir / "users"
    lines = [l for l in path.read_text().splitlines() if not l.startswith(user + ":")]
    path.write_text("\n".join(lines + [f"{user}:{new_hash}"]) + "\n")


@pytest.mark.parametrize("method", ["bcrypt", "sha512crypt", "yescrypt-cost-3"])
def test_imported_hash_replaced_by_default_at_good_login(tlsd, pki, method):
    # A wrong password costs per method (bcrypt ~250 ms, sha512crypt ~3 ms,
    # default yescrypt ~20 ms): accounts with an imported hash could be told
    # apart, so the first good login rehashes to the default.
    import crypt
    start(tlsd, pki)
    salt = {"bcrypt": crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 12),
            "sha512crypt": crypt.mksalt(crypt.METHOD_SHA512),
            "yescrypt-cost-3": "$y$j7T$" + crypt.mksalt(crypt.METHOD_SHA512)[3:19] + "$"}[method]
    old = crypt.crypt(ALICE_PW, salt)
    assert old and old.startswith(salt[:4]), (salt, old)
    set_hash(tlsd, ALICE, old)
    bob_before = users_entries(tlsd)[BOB]
    assert try_login(tlsd, pki, ALICE, "wrong")[0] == 535
    assert users_entries(tlsd)[ALICE] == old, "a failed login must not rehash"
    assert try_login(tlsd, pki, ALICE, ALICE_PW)[0] == 235
    ev = tlsd.wait_event("auth_rehash", user=ALICE)
    assert ev["from"] == method.split("-")[0] if method != "yescrypt-cost-3" else \
        ev["from"] == "yescrypt-other-cost", ev
    new = users_entries(tlsd)
    assert new[ALICE].startswith("$y$j9T$") and new[ALICE] != old, new
    assert new[BOB] == bob_before
    assert stat.S_IMODE((tlsd.data_dir / "users").stat().st_mode) == 0o600
    assert try_login(tlsd, pki, ALICE, ALICE_PW)[0] == 235   # the new hash works
    assert len(tlsd.events("auth_rehash")) == 1


def test_password_of_255_bytes_logs_in(tlsd, pki):
    # what `mailwarden user add` accepts, AUTH PLAIN can carry
    start(tlsd, pki)
    pw = "p" * 255
    add_user(tlsd, "long@localhost", pw)
    assert try_login(tlsd, pki, "long@localhost", pw)[0] == 235


def test_unknown_user_is_a_failure_like_any_other(sub, pki):
    code, _ = try_login(sub, pki, "nobody@localhost", "wrong-password")
    assert code == 535
    assert auth_events(sub, user="nobody@localhost", result="fail")


def test_account_throttled_across_addresses(sub, pki):
    for i, src in enumerate(("127.0.0.3", "127.0.0.4", "127.0.0.5")):
        code, _ = try_login(sub, pki, BOB, f"wrong-{i + 1}", source=src)
        assert code == 535
    code, text = try_login(sub, pki, BOB, BOB_PW, source="127.0.0.6")
    assert code == 454, "the account back-off must hold from a new address"
    code, _ = try_login(sub, pki, ALICE, ALICE_PW, source="127.0.0.6")
    assert code == 235, "other accounts from that address are not affected"


# ------------------------------------------------------------------ sender binding


def test_envelope_sender_binding(sub, pki):
    s = smtp_starttls(sub, pki)
    s.login(ALICE, ALICE_PW)
    code, resp = s.mail("mallory@localhost")
    assert code == 553 and resp.startswith(b"5.7.1"), (code, resp)
    s.rset()
    assert s.mail("BOB@localhost")[0] == 553
    s.rset()
    for granted in (ALICE, "Alice@LOCALHOST", "sales@localhost", "anyone@example.org"):
        code, resp = s.mail(granted)
        assert code == 250, (granted, code, resp)
        s.rset()
    s.quit()
    refused = sub.events("sender", result="refused")
    assert len(refused) == 2 and refused[0].get("user") == ALICE, refused


def test_header_from_must_match(sub, pki):
    s = smtp_starttls(sub, pki)
    s.login(ALICE, ALICE_PW)
    forged = message("The CEO <ceo@localhost>", BOB, "forged-header")
    with pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail(ALICE, [BOB], forged)
    assert e.value.smtp_code == 553 and e.value.smtp_error.startswith(b"5.7.1"), e.value
    # the obsolete "From :" form is no way around the check
    obsolete = message(ALICE, BOB, "obsolete-from").replace(b"From: ", b"From : ceo@localhost\r\nX: ", 1)
    with pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail(ALICE, [BOB], obsolete)
    assert e.value.smtp_code == 553, e.value
    ok = message('"Sales" <sales@localhost>', BOB, "granted-header")
    s.sendmail(ALICE, [BOB], ok)
    s.quit()
    [d] = sub.wait_mail("localhost", "bob", 1)
    assert d.header("Subject") == "granted-header"
    ev = sub.wait_event("sender", where="header", result="refused")
    assert ev.get("user") == ALICE


# The sender binding reads the header as DMARC does (msg_author): every
# spelling that could show the CEO as the author is refused for alice.
BINDING_SPOOFS = [
    "From : ceo@localhost\r\n",
    f"From: {ALICE}\r\nFrom : ceo@localhost\r\n",
    f"From: {ALICE}\r\nfrom\t: ceo@localhost\r\n",
    f" From: ceo@localhost\r\nFrom: {ALICE}\r\n",
    f"From: {ALICE}\r\nFrom ceo@localhost\r\n",
    f"From: <@localhost:{ALICE}>\r\n",
    "From: =?utf-8?q?ceo=40localhost?=@localhost\r\n",
    f"From: {ALICE}\r\nSender: {ALICE}\r\nSender: ceo@localhost\r\n",
    f"From: {ALICE}, ceo@localhost\r\n",
]


@pytest.mark.parametrize("head", BINDING_SPOOFS, ids=range(len(BINDING_SPOOFS)))
def test_header_from_binding_reads_every_spelling(sub, pki, head):
    s = smtp_starttls(sub, pki)
    s.login(ALICE, ALICE_PW)
    data = (head + f"To: {BOB}\r\nSubject: spoof\r\n\r\nbody\r\n").encode()
    with pytest.raises(smtplib.SMTPDataError) as e:
        s.sendmail(ALICE, [BOB], data)
    assert e.value.smtp_code == 553 and e.value.smtp_error.startswith(b"5.7.1"), e.value
    s.sendmail(ALICE, [BOB], message(ALICE, BOB, "own-from"))
    s.quit()
    [d] = sub.wait_mail("localhost", "bob", 1)
    assert d.header("Subject") == "own-from"


def test_header_from_check_can_be_turned_off(tlsd, pki):
    start(tlsd, pki, sender_header_match=False)
    s = smtp_starttls(tlsd, pki)
    s.login(ALICE, ALICE_PW)
    s.sendmail(ALICE, [BOB], message("ceo@localhost", BOB, "header-off"))
    s.quit()
    tlsd.wait_mail("localhost", "bob", 1)


# ------------------------------------------------------------------ limits


def test_message_rate_per_user(tlsd, pki):
    start(tlsd, pki, max_message_rate=2)
    s = smtp_starttls(tlsd, pki)
    s.login(BOB, BOB_PW)
    for i in range(2):
        s.sendmail(BOB, [ALICE], message(BOB, ALICE, f"rate-{i}"))
    code, resp = s.mail(BOB)
    assert code == 451 and resp.startswith(b"4.7.1"), (code, resp)
    s.quit()
    ev = tlsd.wait_event("limit", limit="max_message_rate")
    assert ev.get("user") == BOB


def test_connection_rate_per_ip(tlsd, pki):
    start(tlsd, pki, max_connection_rate=3)
    src = "127.0.0.9"   # the start-up probes came from 127.0.0.1
    for _ in range(3):
        with SMTPConn(tlsd.port, source=src) as c:
            assert c.greeting().code == 220
            c.cmd("QUIT")
    with SMTPConn(tlsd.port, source=src) as c:
        r = c.greeting()
        assert_reply(r, 421, "4.7.0")
    with SMTPConn(tlsd.port, source="127.0.0.10") as c:
        assert c.greeting().code == 220
        c.cmd("QUIT")
    ev = tlsd.wait_event("limit", limit="max_connection_rate")
    assert ev.get("client") == src
