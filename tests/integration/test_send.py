"""`mailwarden send` and the `sendmail` symlink: the secure replacement for
the clear-text smtplib snippet.

Three kinds of tests:

* against a mailwarden daemon with the test CA's certificates: the client
  verifies certificate and name, refuses a server without STARTTLS, and
  (on listeners without AUTH) delivers into the Maildir;
* against `FakeServer`, a scripted SMTP server in this file, where a test
  must see the exact bytes the client sends (no credentials before TLS,
  AUTH PLAIN/LOGIN encoding, dot-stuffing, STARTTLS injection, refusals
  and their exit codes);
* end to end with AUTH on the daemon's submission listeners (starttls and
  implicit), as cron, PHP and git send-email call sendmail.

Exit codes are sysexits.h values, documented in docs/commands.md.
"""

import base64
import contextlib
import os
import re
import socket
import ssl
import subprocess
import threading
import warnings
from pathlib import Path

import pytest

from mwharness import binary_path, free_port
from tlsharness import legacy_client_context, python_tls_server

EX_OK, EX_USAGE, EX_DATAERR, EX_NOUSER, EX_UNAVAILABLE = 0, 64, 65, 67, 69
EX_TEMPFAIL, EX_PROTOCOL, EX_NOPERM, EX_CONFIG = 75, 76, 77, 78

SEND_TIMEOUT = 120  # only keeps a hung client from hanging the suite
PASSWORD = "correct horse battery staple"


# --------------------------------------------------------------------------
# running the client


def sendmail_path():
    """The build's `sendmail -> mailwarden` symlink (a CMake post-build step)."""
    p = binary_path().parent / "sendmail"
    assert p.is_symlink(), f"{p} is not a symlink: the build should create sendmail -> mailwarden"
    assert os.readlink(p) == "mailwarden", f"{p} points to {os.readlink(p)!r}"
    return p


def run_send(args, message=b"", conf=None, as_sendmail=False, env_conf=True, timeout=SEND_TIMEOUT):
    """Run `mailwarden send ARGS` (or `sendmail ARGS`) with `message` on
    stdin and the client config in $MAILWARDEN_SEND_CONF."""
    cmd = [str(sendmail_path())] if as_sendmail else [str(binary_path()), "send"]
    env = {k: v for k, v in os.environ.items() if k != "MAILWARDEN_SEND_CONF"}
    if conf is not None and env_conf:
        env["MAILWARDEN_SEND_CONF"] = str(conf)
    if isinstance(message, str):
        message = message.encode()
    r = subprocess.run(cmd + [str(a) for a in args], input=message, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout, env=env)
    r.err = r.stderr.decode("utf-8", "replace")
    return r


def write_conf(path, mode=0o600, **keys):
    """A send.conf with `keys` (None values left out)."""
    lines = []
    for k, v in keys.items():
        if v is None:
            continue
        if isinstance(v, int):
            lines.append(f"{k} = {v}")
        else:
            s = str(v).replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'{k} = "{s}"')
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    os.chmod(path, mode)
    return path


def password_file(directory, password=PASSWORD, mode=0o600, name="password"):
    p = Path(directory) / name
    p.write_text(password + "\n")
    os.chmod(p, mode)
    return p


def assert_exit(r, code, *fragments):
    assert r.returncode == code, (f"exit {r.returncode}, want {code}\nstderr:\n{r.err}"
                                  f"\nstdout:\n{r.stdout.decode('utf-8', 'replace')}")
    for f in fragments:
        assert f in r.err, f"{f!r} not in stderr:\n{r.err}"


# --------------------------------------------------------------------------
# the daemon


SUBMISSION_LISTENERS = {
    "submission": ("starttls-required", True),   # AUTH
    "submissions": ("implicit", True),           # AUTH
    "mx_implicit": ("implicit", False),          # no AUTH: local delivery only
    "plain": ("none", False),
}


def start_daemon(tlsd, pki, certificate=None):
    """smtp (starttls) plus SUBMISSION_LISTENERS, one certificate section
    (by default mx.test + localhost + 127.0.0.1 from the test CA)."""
    pairs = certificate or [pki.mx_rsa, pki.mx_ecdsa]
    ports = {"smtp": (free_port(), "starttls")}
    ports.update({name: (free_port(), mode) for name, (mode, _) in SUBMISSION_LISTENERS.items()})
    users = tlsd.workdir / "users"
    lines = ['hostname = "mx.test"', 'local_domains = { "localhost", "mx.test" }',
             f'data_dir = "{tlsd.data_dir}"', f'users_file = "{users}"']
    for name, (port, mode) in ports.items():
        auth = SUBMISSION_LISTENERS.get(name, (None, False))[1]
        lines += [f"listen {name} {{", '    address = "127.0.0.1"', f"    port = {port}",
                  f'    tls = "{mode}"'] + (["    auth = true"] if auth else []) + ["}"]
    lines += ["certificate mx {",
              "    cert_file = { " + ", ".join(f'"{p.cert}"' for p in pairs) + " }",
              "    key_file = { " + ", ".join(f'"{p.key}"' for p in pairs) + " }", "}"]
    tlsd.start_text("\n".join(lines) + "\n", ports)
    return tlsd


def add_user(tlsd, address, password=PASSWORD):
    """`mailwarden user add ADDRESS`, the password on standard input."""
    r = subprocess.run([str(binary_path()), "user", "add", "-c", str(tlsd.config_path), address],
                       input=(password + "\n").encode(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=SEND_TIMEOUT)
    assert r.returncode == 0, (f"mailwarden user add {address} failed ({r.returncode}):\n"
                               f"{r.stdout.decode('utf-8', 'replace')}")


def client_conf(tmp_path, tlsd, pki, listener="submissions", name="send.conf", **keys):
    mode = SUBMISSION_LISTENERS.get(listener, ("starttls", False))[0]
    settings = dict(server="localhost", port=tlsd.port_of(listener),
                    tls="implicit" if mode == "implicit" else "starttls",
                    ca_file=pki.ca.cert, domain="localhost", helo="client.test", timeout=30)
    settings.update(keys)
    return write_conf(tmp_path / name, **settings)


def auth_conf(tmp_path, tlsd, pki, listener="submissions", **keys):
    return client_conf(tmp_path, tlsd, pki, listener, user="alice@localhost",
                       password_file=password_file(tmp_path), **keys)


def nothing_delivered(tlsd):
    assert tlsd.all_mail_files() == [], f"mail was delivered: {tlsd.all_mail_files()}"
    assert not any(f.get("event") == "queued" for f in tlsd.log_events()), tlsd.log_tail()


@pytest.fixture
def mwsend(tlsd, pki):
    return start_daemon(tlsd, pki)


# --------------------------------------------------------------------------
# a scripted server


class FakeServer(threading.Thread):
    """One SMTP session on a loopback port, scripted by the arguments,
    recording every byte the client sends (self.wire) and what it meant."""

    def __init__(self, pki=None, implicit=False, starttls=True, mechs=("PLAIN", "LOGIN"),
                 inject=b"", greeting=b"220 fake.test ESMTP\r\n", auth_reply=b"235 2.7.0 ok\r\n",
                 rcpt_replies=None, silent=False, starttls_reply=None, mail_reply=None,
                 data_reply=None):
        super().__init__(daemon=True)
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(60)
        self.port = self.lsock.getsockname()[1]
        self.ctx = None
        if pki is not None:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(str(pki.mx_rsa.cert), str(pki.mx_rsa.key))
            self.ctx.sni_callback = self._sni
        self.sni = "(no handshake)"
        self.implicit, self.starttls, self.mechs = implicit, starttls, mechs
        self.inject, self.greeting, self.auth_reply = inject, greeting, auth_reply
        self.rcpt_replies = rcpt_replies or {}
        self.silent = silent
        self.starttls_reply, self.mail_reply, self.data_reply = starttls_reply, mail_reply, data_reply
        self.wire = b""          # everything received, clear and TLS
        self.clear = b""         # what was received before any TLS
        self.commands = []       # command lines (DATA content excluded)
        self.auth = None         # (mechanism, user, password)
        self.mail_from, self.rcpts, self.data = None, [], None
        self.tls = False
        self.error = None
        self.start()

    # ---------------------------------------------------------- I/O
    def _readline(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.wire += chunk
            if not self.tls:
                self.clear += chunk
            self.buf += chunk
            assert len(self.buf) < 1 << 20
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r")

    def _send(self, data):
        self.sock.sendall(data)

    def _sni(self, sslobj, name, ctx):
        self.sni = name

    def _wrap(self):
        self.sock = self.ctx.wrap_socket(self.sock, server_side=True)
        self.tls = True

    def run(self):
        try:
            self.sock, _ = self.lsock.accept()
            self.sock.settimeout(60)
            self.buf = b""
            if self.implicit:
                self._wrap()
            if self.silent:
                self._readline()  # waits until the client gives up
                return
            self._send(self.greeting)
            while self._step():
                pass
        except (EOFError, OSError, ssl.SSLError) as e:
            self.error = e
        finally:
            try:
                self.sock.close()
            except Exception:
                pass
            self.lsock.close()

    # ---------------------------------------------------------- SMTP
    def _ehlo(self):
        caps = ["fake.test", "PIPELINING", "SIZE 10000000", "8BITMIME", "ENHANCEDSTATUSCODES"]
        if self.starttls and not self.tls:
            caps.append("STARTTLS")
        if self.tls and self.mechs:
            caps.append("AUTH " + " ".join(self.mechs))
        self._send("".join(f"250{'-' if i + 1 < len(caps) else ' '}{c}\r\n"
                           for i, c in enumerate(caps)).encode())

    def _b64line(self):
        line = self._readline()
        return base64.b64decode(line, validate=True).decode()

    def _auth(self, words):
        mech = words[1].upper()
        if mech == "PLAIN":
            raw = base64.b64decode(words[2], validate=True).decode() if len(words) > 2 else None
            if raw is None:
                self._send(b"334 \r\n")
                raw = self._b64line()
            _, user, pw = raw.split("\0")
        elif mech == "LOGIN":
            self._send(b"334 VXNlcm5hbWU6\r\n")
            user = self._b64line()
            self._send(b"334 UGFzc3dvcmQ6\r\n")
            pw = self._b64line()
        else:
            self._send(b"504 5.5.4 unknown mechanism\r\n")
            return
        self.auth = (mech, user, pw)
        self._send(self.auth_reply)

    def _data(self):
        self._send(b"354 go ahead\r\n")
        lines = []
        while True:
            line = self._readline()
            if line == b".":
                break
            lines.append(line)
        self.data = b"\r\n".join(lines) + b"\r\n"  # still dot-stuffed
        self._send(self.data_reply or b"250 2.0.0 queued as FAKE\r\n")

    def _step(self):
        line = self._readline()
        self.commands.append(line.decode("utf-8", "replace"))
        words = line.decode("utf-8", "replace").split()
        verb = words[0].upper() if words else ""
        if verb == "EHLO":
            self._ehlo()
        elif verb == "STARTTLS" and self.starttls_reply:
            self._send(self.starttls_reply)
        elif verb == "STARTTLS":
            self._send(b"220 2.0.0 go ahead\r\n" + self.inject)
            self._wrap()
        elif verb == "AUTH":
            self._auth(words)
        elif verb == "MAIL":
            self.mail_from = line.decode()
            self._send(self.mail_reply or b"250 2.1.0 ok\r\n")
        elif verb == "RCPT":
            addr = re.search(r"<([^>]*)>", line.decode()).group(1)
            self.rcpts.append(addr)
            self._send(self.rcpt_replies.get(addr, b"250 2.1.5 ok\r\n"))
        elif verb == "DATA":
            self._data()
        elif verb == "RSET":
            self._send(b"250 2.0.0 ok\r\n")
        elif verb == "QUIT":
            self._send(b"221 2.0.0 bye\r\n")
            return False
        else:
            self._send(b"500 5.5.2 what?\r\n")
        return True

    def finish(self):
        self.join(timeout=SEND_TIMEOUT)
        assert not self.is_alive(), "fake server still running"
        return self


def fake_conf(tmp_path, fake, tls="implicit", pki=None, **keys):
    settings = dict(server="localhost", port=fake.port, tls=tls,
                    ca_file=pki.ca.cert if pki else None, domain="example.org",
                    helo="client.test", timeout=30)
    settings.update(keys)
    return write_conf(tmp_path / "fake.conf", **settings)


def unstuff(data):
    return re.sub(rb"(^|\r\n)\.", rb"\1", data)


# ==========================================================================
# command line and configuration (no server needed)


@pytest.mark.parametrize("args", [["-Z", "root"], ["-bs"], ["-bp"], ["-q"], ["--from", "x"], [],
                                  ["root", "-f"]])
def test_usage_error_is_64(tmp_path, args):
    conf = write_conf(tmp_path / "send.conf", server="127.0.0.1", port=free_port())
    for as_sendmail in (False, True):
        r = run_send(args, b"Subject: x\n\nbody\n", conf=conf, as_sendmail=as_sendmail)
        assert_exit(r, EX_USAGE, "usage:")
        assert r.err.startswith("sendmail: " if as_sendmail else "mailwarden send: "), r.err


def test_help_is_0(tmp_path):
    r = run_send(["--help"])
    assert r.returncode == 0 and b"usage:" in r.stdout, r


def test_missing_config_is_78(tmp_path):
    r = run_send(["root"], b"x\n", conf=tmp_path / "nope.conf")
    assert_exit(r, EX_CONFIG, f"{tmp_path / 'nope.conf'}:0: cannot read file")


def test_config_errors_name_file_and_line(tmp_path):
    cases = [
        ('server = "localhost"\nport = 70000\n', ":2: port = 70000 is out of range"),
        ('server = "localhost"\n\ntls = "maybe"\n', ':3: tls = "maybe": expected implicit or starttls'),
        ('server = "localhost"\nsmarthost = "x"\n', ":2:"),
        ('server = "local host"\n', ":1: server"),
        ('port = 25\n', ":0: server is not set"),
        ('server = "localhost"\nuser = "a@b"\n', "neither password nor password_file"),
        ('server = "localhost"\npassword_file = "/x"\n', "no user"),
        ('server = "localhost"\ntimeout = 0\n', ":2: timeout = 0 is out of range"),
        ('server = "localhost"\ndomain = "a>b"\n', ':2: domain = "a>b" is not a domain name'),
        ('server = "localhost"\n\nhelo = "x y"\n', ':3: helo = "x y" is not a domain name'),
    ]
    for text, fragment in cases:
        conf = tmp_path / "bad.conf"
        conf.write_text(text)
        os.chmod(conf, 0o600)
        r = run_send(["root"], b"x\n", conf=conf)
        assert_exit(r, EX_CONFIG, str(conf), fragment)


def test_c_option_and_environment_select_the_config(tmp_path):
    good = write_conf(tmp_path / "a.conf", server="127.0.0.1", port=free_port())
    bad = tmp_path / "b.conf"
    bad.write_text("port = 99999\n")
    # -C wins over the environment
    r = run_send(["-C", good, "root"], b"x\n", conf=bad)
    assert_exit(r, EX_UNAVAILABLE, "cannot connect to 127.0.0.1")
    r = run_send([f"-C{bad}", "root"], b"x\n", conf=good)
    assert_exit(r, EX_CONFIG, str(bad))
    r = run_send(["root"], b"x\n", conf=bad)
    assert_exit(r, EX_CONFIG, str(bad))


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o601])
def test_password_file_open_to_others_is_refused(tmp_path, mode):
    port = free_port()  # nothing listens: the refusal must come first
    pw = password_file(tmp_path, mode=mode)
    conf = write_conf(tmp_path / "send.conf", server="127.0.0.1", port=port, user="a@b.example",
                      password_file=pw)
    r = run_send(["root"], b"x\n", conf=conf)
    assert_exit(r, EX_CONFIG, str(pw), f"mode {mode:04o}")
    assert "cannot connect" not in r.err


def test_config_with_password_open_to_others_is_refused(tmp_path):
    conf = write_conf(tmp_path / "send.conf", mode=0o644, server="127.0.0.1", port=free_port(),
                      user="a@b.example", password=PASSWORD)
    r = run_send(["root"], b"x\n", conf=conf)
    assert_exit(r, EX_CONFIG, str(conf), "mode 0644")
    assert PASSWORD not in r.err
    # without a password in it, a readable config is fine (nothing listens: 69)
    conf = write_conf(tmp_path / "send.conf", mode=0o644, server="127.0.0.1", port=free_port())
    assert_exit(run_send(["root"], b"x\n", conf=conf), EX_UNAVAILABLE, "cannot connect")
    # but never a world-writable one
    os.chmod(conf, 0o666)
    assert_exit(run_send(["root"], b"x\n", conf=conf), EX_CONFIG, str(conf), "writable")


def test_bad_recipient_or_header_is_65(tmp_path):
    conf = write_conf(tmp_path / "send.conf", server="127.0.0.1", port=free_port(),
                      domain="example.org")
    assert_exit(run_send(["a@b@c"], b"x\n", conf=conf), EX_DATAERR, "not a valid e-mail address")
    assert_exit(run_send(["-t"], b"To: John Doe\n\nx\n", conf=conf), EX_DATAERR, "To header")
    assert_exit(run_send(["-t"], b"Subject: nobody\n\nx\n", conf=conf), EX_DATAERR, "no recipients")
    assert_exit(run_send(["root"], b"a\0b\n", conf=conf), EX_DATAERR, "NUL")


# ==========================================================================
# certificate and STARTTLS refusals against the daemon


def test_certificate_for_another_name_is_refused(tlsd, pki, tmp_path):
    start_daemon(tlsd, pki, certificate=[pki.other])  # other.test, from the trusted CA
    for listener in ("mx_implicit", "smtp"):
        conf = client_conf(tmp_path, tlsd, pki, listener)
        r = run_send(["user@localhost"], b"Subject: x\n\nsecret\n", conf=conf)
        assert_exit(r, EX_PROTOCOL, "does not verify", "not issued for this host name")
    # an IP literal must be in the certificate's IP addresses
    conf = client_conf(tmp_path, tlsd, pki, "mx_implicit", server="127.0.0.1")
    r = run_send(["user@localhost"], b"Subject: x\n\nsecret\n", conf=conf)
    assert_exit(r, EX_PROTOCOL, "does not verify", "not issued for this address")
    nothing_delivered(tlsd)


def test_certificate_from_an_unknown_ca_is_refused(mwsend, pki, tmp_path):
    for listener in ("mx_implicit", "smtp"):
        conf = client_conf(tmp_path, mwsend, pki, listener, ca_file=pki.other_ca.cert)
        r = run_send(["user@localhost"], b"Subject: x\n\nsecret\n", conf=conf)
        assert_exit(r, EX_PROTOCOL, "does not verify")
    nothing_delivered(mwsend)


def test_system_store_is_the_default(mwsend, pki, tmp_path):
    """No ca_file: the system store, which does not hold the test CA."""
    conf = client_conf(tmp_path, mwsend, pki, "mx_implicit", ca_file=None)
    r = run_send(["user@localhost"], b"Subject: x\n\nsecret\n", conf=conf)
    assert_exit(r, EX_PROTOCOL, "does not verify")
    nothing_delivered(mwsend)


def test_server_without_starttls_is_refused(mwsend, pki, tmp_path):
    conf = client_conf(tmp_path, mwsend, pki, "plain", server="127.0.0.1", tls="starttls",
                       user="alice@localhost", password_file=password_file(tmp_path))
    port = mwsend.port_of("plain")
    r = run_send(["-v", "user@localhost"], b"Subject: x\n\nsecret\n", conf=conf)
    assert_exit(r, EX_PROTOCOL, f"mailwarden send: 127.0.0.1:{port} does not offer STARTTLS; "
                                "refusing to send mail or credentials in clear text")
    assert "C: EHLO client.test" in r.err
    assert not re.search(r"C: (AUTH|MAIL|RCPT|DATA)", r.err), r.err
    nothing_delivered(mwsend)


def test_implicit_tls_against_a_clear_text_listener_fails(mwsend, pki, tmp_path):
    conf = client_conf(tmp_path, mwsend, pki, "plain", tls="implicit")
    r = run_send(["user@localhost"], b"Subject: x\n\nsecret\n", conf=conf)
    assert_exit(r, EX_PROTOCOL, "TLS handshake with localhost:")
    nothing_delivered(mwsend)


def test_nothing_listening_is_69(tmp_path):
    conf = write_conf(tmp_path / "send.conf", server="127.0.0.1", port=free_port())
    assert_exit(run_send(["root"], b"x\n", conf=conf), EX_UNAVAILABLE, "cannot connect to 127.0.0.1:")


# ==========================================================================
# delivery through the daemon (listeners without AUTH: local recipients)


def test_send_delivers_over_implicit_tls_and_starttls(mwsend, pki, tmp_path):
    for n, listener in enumerate(("mx_implicit", "smtp")):
        for server in ("localhost", "127.0.0.1"):
            conf = client_conf(tmp_path, mwsend, pki, listener, server=server)
            user = f"u{n}{server[0]}"
            r = run_send(["-f", "sender@example.net", user], b"Subject: hello\n\nline one\n",
                         conf=conf)
            assert_exit(r, EX_OK)
            assert r.err == "", r.err
            [d] = mwsend.wait_mail("localhost", user, 1)
            assert d.return_path == "<sender@example.net>"
            assert d.header("Subject") == "hello"
            assert d.header("From") == "sender@example.net"
            assert re.fullmatch(r"<\d{14}\.[0-9a-f]{24}@localhost>", d.header("Message-ID")), d.raw
            assert re.fullmatch(r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}",
                                d.header("Date")), d.raw
            assert d.message.endswith(b"\r\n\r\nline one\r\n"), d.message
            assert "ESMTPS" in d.received, d.received


def test_dots_line_endings_and_8bit(mwsend, pki, tmp_path):
    conf = client_conf(tmp_path, mwsend, pki, "mx_implicit")
    body = "Subject: dots\nContent-Type: text/plain; charset=utf-8\n\n.\n..two\n.x\nGr\u00fc\u00dfe\r\nlast"
    r = run_send(["-i", "-f", "s@example.net", "dots"], body.encode(), conf=conf)
    assert_exit(r, EX_OK)
    [d] = mwsend.wait_mail("localhost", "dots", 1)
    assert d.message.split(b"\r\n\r\n", 1)[1] == ".\r\n..two\r\n.x\r\nGr\u00fc\u00dfe\r\nlast\r\n".encode()
    # without -i, a lone "." ends the message (classic sendmail)
    r = run_send(["-f", "s@example.net", "dots2"], b"Subject: cut\n\nkept\n.\ndropped\n", conf=conf)
    assert_exit(r, EX_OK)
    [d] = mwsend.wait_mail("localhost", "dots2", 1)
    assert d.message.endswith(b"\r\n\r\nkept\r\n") and b"dropped" not in d.message, d.message


def test_t_removes_bcc_and_delivers_to_all(mwsend, pki, tmp_path):
    conf = client_conf(tmp_path, mwsend, pki, "smtp")
    msg = (b"From: Sender <s@example.net>\nTo: to1, Two <to2@localhost>\nCc: cc1@localhost\n"
           b"Bcc: hidden@localhost,\n  hidden2\nSubject: t\n\nbody\n")
    r = run_send(["-t", "-i"], msg, conf=conf, as_sendmail=True)
    assert_exit(r, EX_OK)
    for user in ("to1", "to2", "cc1", "hidden", "hidden2"):
        [d] = mwsend.wait_mail("localhost", user, 1)
        assert d.header("Bcc") is None and b"hidden" not in d.message, d.message
        assert d.header("To") == "to1, Two <to2@localhost>"
        assert d.header("From") == "Sender <s@example.net>"


def test_refused_recipient_sends_nothing(mwsend, pki, tmp_path):
    conf = client_conf(tmp_path, mwsend, pki, "smtp")
    r = run_send(["-f", "s@example.net", "ok@localhost", "someone@elsewhere.example"],
                 b"Subject: relay\n\nx\n", conf=conf)
    assert_exit(r, EX_NOUSER, "RCPT TO:<someone@elsewhere.example>", "was not sent")
    nothing_delivered(mwsend)


# ==========================================================================
# the exact bytes on the wire (scripted server)


def test_no_credentials_or_mail_before_tls(pki, tmp_path):
    fake = FakeServer(pki, starttls=False)
    conf = fake_conf(tmp_path, fake, tls="starttls", pki=pki, server="127.0.0.1",
                     user="alice@example.org", password_file=password_file(tmp_path))
    r = run_send(["bob@example.org"], b"Subject: secret\n\ntop secret\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_PROTOCOL, f"127.0.0.1:{fake.port} does not offer STARTTLS; "
                                "refusing to send mail or credentials in clear text")
    assert fake.commands == ["EHLO client.test"], fake.commands
    b64pw = base64.b64encode(f"\0alice@example.org\0{PASSWORD}".encode())
    for secret in (PASSWORD.encode(), b64pw, b"top secret", b"bob@example.org"):
        assert secret not in fake.wire


def test_starttls_response_injection_is_refused(pki, tmp_path):
    fake = FakeServer(pki, inject=b"250-injected\r\n250 AUTH PLAIN\r\n")
    conf = fake_conf(tmp_path, fake, tls="starttls", pki=pki, user="alice@example.org",
                     password_file=password_file(tmp_path))
    r = run_send(["bob@example.org"], b"Subject: x\n\nx\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_PROTOCOL, "after its reply to STARTTLS")
    assert fake.auth is None and not fake.tls
    assert PASSWORD.encode() not in fake.wire


def test_starttls_refused_by_the_server(pki, tmp_path):
    fake = FakeServer(pki, starttls_reply=b"454 4.7.0 TLS not available\r\n")
    conf = fake_conf(tmp_path, fake, tls="starttls", pki=pki, user="alice@example.org",
                     password_file=password_file(tmp_path))
    r = run_send(["bob@example.org"], b"Subject: x\n\nx\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_PROTOCOL, "refused STARTTLS: 454 4.7.0 TLS not available; "
                                "refusing to send mail or credentials in clear text")
    assert fake.commands == ["EHLO client.test", "STARTTLS"], fake.commands


def test_starttls_then_auth_plain_and_message_on_the_wire(pki, tmp_path):
    fake = FakeServer(pki)
    conf = fake_conf(tmp_path, fake, tls="starttls", pki=pki, user="alice@example.org",
                     password_file=password_file(tmp_path))
    msg = b"Subject: wire\n\n.\n..\n.dot\nend"
    r = run_send(["-i", "-v", "-f", "alice@example.org", "bob@example.org"], msg, conf=conf)
    fake.finish()
    assert_exit(r, EX_OK)
    assert fake.clear.decode() == "EHLO client.test\r\nSTARTTLS\r\n", fake.clear
    assert fake.auth == ("PLAIN", "alice@example.org", PASSWORD)
    assert [c.split()[0] for c in fake.commands] == ["EHLO", "STARTTLS", "EHLO", "AUTH", "MAIL",
                                                     "RCPT", "DATA", "QUIT"], fake.commands
    assert re.fullmatch(r"MAIL FROM:<alice@example\.org> SIZE=\d+", fake.mail_from), fake.mail_from
    assert fake.rcpts == ["bob@example.org"]
    body = fake.data.split(b"\r\n\r\n", 1)[1]
    assert body == b"..\r\n...\r\n..dot\r\nend\r\n", body  # stuffed on the wire
    assert b"\n" not in fake.data.replace(b"\r\n", b""), "bare LF on the wire"
    # -v shows the dialogue with AUTH masked
    assert "C: AUTH PLAIN ****" in r.err and "S: 235 2.7.0 ok" in r.err, r.err
    b64 = base64.b64encode(f"\0alice@example.org\0{PASSWORD}".encode()).decode()
    assert PASSWORD not in r.err and b64 not in r.err
    assert "TLS: TLSv1." in r.err and "certificate verified for localhost" in r.err
    assert fake.sni == "localhost"


def test_ip_literal_verified_without_sni(pki, tmp_path):
    fake = FakeServer(pki, implicit=True)
    r = run_send(["b@example.org"], b"x\n", conf=fake_conf(tmp_path, fake, pki=pki,
                                                           server="127.0.0.1"))
    fake.finish()
    assert_exit(r, EX_OK)
    assert fake.sni is None, f"SNI {fake.sni!r} sent for an IP literal (RFC 6066 3)"
    assert fake.data is not None


def test_tls_below_1_2_is_refused(pki, tmp_path):
    """A server that speaks at most TLS 1.1. Control: a client that allows
    TLS 1.1 completes the handshake, so the refusal is ours."""
    def tls11_only(ctx):
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with contextlib.ExitStack() as stack:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            port, _ = stack.enter_context(python_tls_server(pki.mx_rsa, tls11_only))
            with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
                with legacy_client_context(ssl.TLSVersion.TLSv1_1).wrap_socket(raw) as t:
                    assert t.version() == "TLSv1.1"
        conf = write_conf(tmp_path / "send.conf", server="localhost", port=port, tls="implicit",
                          ca_file=pki.ca.cert, timeout=30)
        r = run_send(["b@example.org"], b"x\n", conf=conf)
        assert_exit(r, EX_PROTOCOL, f"TLS handshake with localhost:{port} failed")


def test_auth_login_when_plain_is_not_offered(pki, tmp_path):
    fake = FakeServer(pki, implicit=True, mechs=("CRAM-MD5", "LOGIN"))
    conf = fake_conf(tmp_path, fake, pki=pki, user="alice@example.org",
                     password_file=password_file(tmp_path))
    r = run_send(["-v", "bob"], b"Subject: x\n\nx\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_OK)
    assert fake.auth == ("LOGIN", "alice@example.org", PASSWORD)
    assert fake.rcpts == ["bob@example.org"]  # unqualified: the configured domain
    assert r.err.count("C: ****") == 2 and PASSWORD not in r.err, r.err
    for secret in (PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
                   base64.b64encode(b"alice@example.org").decode()):
        assert secret not in r.err


def test_password_in_config_file(pki, tmp_path):
    fake = FakeServer(pki, implicit=True)
    conf = fake_conf(tmp_path, fake, pki=pki, user="alice@example.org", password=PASSWORD)
    r = run_send(["bob@example.org"], b"Subject: x\n\nx\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_OK)
    assert fake.auth == ("PLAIN", "alice@example.org", PASSWORD)


def test_no_usable_mechanism_is_77(pki, tmp_path):
    fake = FakeServer(pki, implicit=True, mechs=("CRAM-MD5", "XOAUTH2"))
    conf = fake_conf(tmp_path, fake, pki=pki, user="a@example.org", password_file=password_file(tmp_path))
    r = run_send(["bob@example.org"], b"x\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_NOPERM, "no AUTH mechanism we can use")
    assert fake.mail_from is None


def test_auth_refused_is_77(pki, tmp_path):
    fake = FakeServer(pki, implicit=True, auth_reply=b"535 5.7.8 authentication failed\r\n")
    conf = fake_conf(tmp_path, fake, pki=pki, user="a@example.org", password_file=password_file(tmp_path))
    r = run_send(["bob@example.org"], b"x\n", conf=conf)
    fake.finish()
    assert_exit(r, EX_NOPERM, "refused AUTH PLAIN: 535 5.7.8 authentication failed")
    assert fake.mail_from is None


@pytest.mark.parametrize("reply,code", [(b"550 5.1.1 no such user\r\n", EX_NOUSER),
                                        (b"451 4.3.0 try later\r\n", EX_TEMPFAIL)])
def test_refused_recipient_abandons_the_transaction(pki, tmp_path, reply, code):
    fake = FakeServer(pki, implicit=True, rcpt_replies={"bad@example.org": reply})
    conf = fake_conf(tmp_path, fake, pki=pki)
    r = run_send(["good@example.org", "bad@example.org", "also@example.org"], b"x\n", conf=conf)
    fake.finish()
    assert_exit(r, code, "RCPT TO:<bad@example.org>", reply.decode().strip(), "was not sent")
    assert fake.rcpts == ["good@example.org", "bad@example.org", "also@example.org"]
    assert fake.data is None and "RSET" in fake.commands and fake.commands[-1] == "QUIT"


@pytest.mark.parametrize("mail,data,code,fragment", [
    (b"550 5.7.1 not your address\r\n", None, EX_NOPERM, "refused MAIL FROM:<"),
    (b"452 4.3.1 out of space\r\n", None, EX_TEMPFAIL, "refused MAIL FROM:<"),
    (b"553 5.1.8 bad sender domain\r\n", None, EX_UNAVAILABLE, "refused MAIL FROM:<"),
    (None, b"554 5.6.0 message content rejected\r\n", EX_DATAERR, "refused the message"),
    (None, b"550 5.7.1 spam\r\n", EX_NOPERM, "refused the message"),
    (None, b"451 4.3.0 queue trouble\r\n", EX_TEMPFAIL, "refused the message"),
    (None, b"554 5.0.0 no\r\n", EX_UNAVAILABLE, "refused the message"),
])
def test_sender_and_message_refusals(pki, tmp_path, mail, data, code, fragment):
    fake = FakeServer(pki, implicit=True, mail_reply=mail, data_reply=data)
    r = run_send(["b@example.org"], b"x\n", conf=fake_conf(tmp_path, fake, pki=pki))
    fake.finish()
    assert_exit(r, code, fragment, (mail or data).decode().strip())


def test_greeting_refusal_and_garbage(pki, tmp_path):
    fake = FakeServer(pki, implicit=True, greeting=b"554 5.3.2 go away\r\n")
    r = run_send(["b@example.org"], b"x\n", conf=fake_conf(tmp_path, fake, pki=pki))
    fake.finish()
    assert_exit(r, EX_UNAVAILABLE, "refused the session: 554 5.3.2 go away")
    fake = FakeServer(pki, implicit=True, greeting=b"HTTP/1.1 400 Bad Request\r\n")
    r = run_send(["b@example.org"], b"x\n", conf=fake_conf(tmp_path, fake, pki=pki))
    fake.finish()
    assert_exit(r, EX_PROTOCOL, "malformed greeting")
    fake = FakeServer(pki, implicit=True, greeting=b"220 " + b"x" * 5000 + b"\r\n")
    r = run_send(["b@example.org"], b"x\n", conf=fake_conf(tmp_path, fake, pki=pki))
    fake.finish()
    assert_exit(r, EX_PROTOCOL, "too long")


def test_silent_server_times_out(pki, tmp_path):
    fake = FakeServer(pki, implicit=True, silent=True)
    r = run_send(["b@example.org"], b"x\n", conf=fake_conf(tmp_path, fake, pki=pki, timeout=2))
    fake.finish()
    assert_exit(r, EX_TEMPFAIL, "timed out waiting for the greeting")


# ==========================================================================
# end to end with AUTH on the submission listeners
# (user alice@localhost, password from a password_file)


@pytest.fixture
def authd(mwsend):
    add_user(mwsend, "alice@localhost")
    return mwsend


@pytest.mark.parametrize("listener", ["submissions", "submission"])
def test_auth_send_delivers(authd, pki, tmp_path, listener):
    conf = auth_conf(tmp_path, authd, pki, listener)
    r = run_send(["-f", "alice@localhost", "-F", "Alice Example", "bob@localhost"],
                 b"Subject: authenticated\n\nhello bob\n", conf=conf)
    assert_exit(r, EX_OK)
    [d] = authd.wait_mail("localhost", "bob", 1)
    assert d.return_path == "<alice@localhost>"
    assert d.header("From") == "Alice Example <alice@localhost>"
    assert d.message.endswith(b"\r\n\r\nhello bob\r\n")


@pytest.mark.parametrize("listener", ["submissions", "submission"])
def test_auth_sendmail_t_removes_bcc(authd, pki, tmp_path, listener):
    conf = auth_conf(tmp_path, authd, pki, listener)
    msg = (b"From: alice@localhost\nTo: bob@localhost\nCc: carol\nBcc: dave@localhost\n"
           b"Subject: php\n\nfrom PHP mail()\n")
    r = run_send(["-t", "-i"], msg, conf=conf, as_sendmail=True)  # PHP's sendmail_path
    assert_exit(r, EX_OK)
    for user in ("bob", "carol", "dave"):
        [d] = authd.wait_mail("localhost", user, 1)
        assert d.header("Bcc") is None and b"dave" not in d.message, d.message
        assert d.header("Cc") == "carol"
        assert d.return_path == "<alice@localhost>"


def test_auth_cron_style(authd, pki, tmp_path):
    """Debian cron: sendmail -FCronDaemon -i -B8BITMIME -oem root (no From)."""
    conf = auth_conf(tmp_path, authd, pki)
    msg = b"Subject: Cron <alice@host> run-parts\nTo: bob\n\noutput\n.\nmore output\n"
    r = run_send(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "bob"], msg, conf=conf,
                 as_sendmail=True)
    assert_exit(r, EX_OK)
    [d] = authd.wait_mail("localhost", "bob", 1)
    assert d.return_path == "<alice@localhost>"  # the configured user
    assert d.header("From") == "CronDaemon <alice@localhost>"
    assert d.message.endswith(b"\r\n\r\noutput\r\n.\r\nmore output\r\n"), d.message


def test_auth_git_send_email_style(authd, pki, tmp_path):
    """git send-email: sendmail -i -f ADDR RCPT... with a complete message."""
    conf = auth_conf(tmp_path, authd, pki, "submission")
    msg = (b"From: Alice <alice@localhost>\nTo: bob@localhost\nCc: carol@localhost\n"
           b"Subject: [PATCH] fix\nDate: Mon, 1 Jan 2024 00:00:00 +0000\n"
           b"Message-ID: <patch-1@localhost>\n\n---\n a | 1 +\n.\n-- \n2.39.2\n")
    r = run_send(["-i", "-f", "alice@localhost", "bob@localhost", "carol@localhost"], msg,
                 conf=conf, as_sendmail=True)
    assert_exit(r, EX_OK)
    for user in ("bob", "carol"):
        [d] = authd.wait_mail("localhost", user, 1)
        assert d.header("Message-ID") == "<patch-1@localhost>"
        assert d.header("Date") == "Mon, 1 Jan 2024 00:00:00 +0000"
        assert d.message.count(b"\r\nFrom:") + d.message.startswith(b"From:") == 1
        assert b"\r\n.\r\n-- \r\n2.39.2\r\n" in d.message


def test_auth_wrong_password_is_77(authd, pki, tmp_path):
    conf = client_conf(tmp_path, authd, pki, "submissions", user="alice@localhost",
                       password_file=password_file(tmp_path, "wrong password"))
    r = run_send(["bob@localhost"], b"Subject: x\n\nx\n", conf=conf)
    assert_exit(r, EX_NOPERM, "refused AUTH")
    nothing_delivered(authd)


def test_auth_verbose_masks_credentials(authd, pki, tmp_path):
    conf = auth_conf(tmp_path, authd, pki, "submission")
    r = run_send(["-v", "bob@localhost"], b"Subject: v\n\nx\n", conf=conf)
    assert_exit(r, EX_OK)
    assert "C: STARTTLS" in r.err and "C: AUTH PLAIN ****" in r.err, r.err
    assert re.search(r"S: 235", r.err), r.err
    assert PASSWORD not in r.err
    assert base64.b64encode(f"\0alice@localhost\0{PASSWORD}".encode()).decode() not in r.err
    authd.wait_mail("localhost", "bob", 1)
