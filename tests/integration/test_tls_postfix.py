"""A real peer: a private Postfix instance relays into mailwarden over TLS.

Postfix runs from its own config directory (`postfix -c DIR`) with its own
queue and data directories in the test's tmp dir, listens only on a free
loopback port (its smtpd, where the test submits the message), and relays
everything to `relayhost = [127.0.0.1]:<mailwarden port>` with
`smtp_tls_security_level = encrypt` or `verify` (test CA). It shares nothing
with a system Postfix (no port 25, no /etc/postfix/main.cf, no
/var/spool/postfix).

Negative controls in the same Postfix instance (a second next-hop through
`transport_maps`) show that the TLS levels are really enforced: at `encrypt`
a mailwarden listener with `tls = "none"`, and at `verify` a second
mailwarden whose certificate comes from a CA Postfix does not trust, must both
get the message deferred, with nothing arriving there.
"""

import os
import re
import shutil
import smtplib
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from mwharness import DELIVERY_TIMEOUT, free_port, wait_until
from tlsharness import TLSDaemon, need_tool, tls_received

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"


class PrivatePostfix:
    def __init__(self, base, relay_port, tls):
        """`base`: a directory that the postfix user can traverse (pytest's
        own tmp tree is 0700 root, and Postfix opens data_directory by its
        absolute path after dropping privileges)."""
        self.postfix = need_tool(POSTFIX, "postfix")
        need_tool(POSTCONF, "postfix")
        if os.geteuid() != 0:
            raise AssertionError("the Postfix peer test must run as root (Postfix's master starts as root "
                                 "and drops to mail_owner=postfix)")
        for what, check in (("user postfix", ["id", "-u", "postfix"]), ("group postdrop", ["getent", "group", "postdrop"])):
            if subprocess.run(check, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0:
                raise AssertionError(f"{what} missing: the postfix package is not installed properly")
        self.dir = base / "postfix"
        self.conf = self.dir / "conf"
        self.queue = self.dir / "queue"
        self.data = self.dir / "data"
        self.maillog = self.dir / "maillog"
        self.port = free_port()
        self.relay_port = relay_port
        self.tls = tls
        self.started = False
        self.master_pid = None

    def write_config(self):
        for d in (self.conf, self.queue, self.data):
            d.mkdir(parents=True)
        os.chmod(self.dir, 0o755)
        os.chmod(self.queue, 0o755)
        shutil.chown(self.data, "postfix")
        os.chmod(self.data, 0o700)
        tls_lines = "\n".join(f"{k} = {v}" for k, v in self.tls.items())
        (self.conf / "main.cf").write_text(f"""\
# private instance of the mailwarden TLS tests
compatibility_level = 3.6
config_directory = {self.conf}
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-mwtest
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}

myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination = postfix.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
local_recipient_maps =
alias_maps =
alias_database =
biff = no

relayhost = [127.0.0.1]:{self.relay_port}
smtp_tls_loglevel = 1
smtp_tls_servername = mx.test
{tls_lines}
""")
        (self.conf / "master.cf").write_text(f"""\
127.0.0.1:{self.port} inet n - n - - smtpd
pickup    unix  n - n 60  1 pickup
cleanup   unix  n - n -   0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n -   - trivial-rewrite
bounce    unix  - - n -   0 bounce
defer     unix  - - n -   0 bounce
trace     unix  - - n -   0 bounce
verify    unix  - - n -   1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -   - proxymap
proxywrite unix - - n -   1 proxymap
smtp      unix  - - n -   - smtp
relay     unix  - - n -   - smtp
showq     unix  n - n -   - showq
error     unix  - - n -   - error
retry     unix  - - n -   - error
discard   unix  - - n -   - discard
anvil     unix  - - n -   1 anvil
scache    unix  - - n -   1 scache
postlog   unix-dgram n - n - 1 postlogd
""")

    def pf(self, *args):
        return subprocess.run([self.postfix, "-c", str(self.conf), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=60)

    def start(self):
        self.write_config()
        self.started = True  # from here on teardown always stops it
        r = self.pf("start")
        assert r.returncode == 0, f"postfix -c {self.conf} start failed:\n{r.stdout.decode()}\n{self.log()}"
        pidfile = self.queue / "pid" / "master.pid"
        wait_until(lambda: pidfile.is_file() and pidfile.read_text().strip(), 30, what="Postfix master.pid")
        self.master_pid = int(pidfile.read_text().strip())
        wait_until(self._accepting, 30, interval=0.1, what=f"Postfix smtpd on 127.0.0.1:{self.port}")

    def _accepting(self):
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as s:
                s.noop()
            return True
        except (OSError, smtplib.SMTPException):
            return False

    def stop(self):
        if not self.started:
            return
        self.started = False
        self.pf("stop")
        if self.master_pid and not self._gone(15):
            self.pf("abort")
            if not self._gone(5):
                try:
                    os.kill(self.master_pid, 9)
                except ProcessLookupError:
                    pass

    def _gone(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(self.master_pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def log(self):
        try:
            return self.maillog.read_text(errors="replace")
        except OSError:
            return "(no maillog)"

    def wait_log(self, pattern, what):
        try:
            return wait_until(lambda: re.search(pattern, self.log(), re.M), DELIVERY_TIMEOUT,
                              interval=0.1, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nPostfix maillog:\n{self.log()}")

    def submit(self, rcpt, msgid):
        msg = (f"From: sender@postfix.test\r\nTo: {rcpt}\r\nSubject: relayed by Postfix\r\n"
               f"Message-ID: {msgid}\r\n\r\nrelayed by a private Postfix over TLS\r\n")
        with smtplib.SMTP("127.0.0.1", self.port, local_hostname="submitter.test", timeout=30) as s:
            s.ehlo()
            s.mail("sender@postfix.test")
            code, resp = s.rcpt(rcpt)
            assert code == 250, f"Postfix refused RCPT {rcpt}: {code} {resp}"
            code, resp = s.data(msg.encode())
            assert code == 250, f"Postfix refused the message: {code} {resp}"
        return msg


@pytest.fixture
def postfix_factory(tmp_path):
    """Start private Postfix instances; always stopped and removed in teardown
    (the maillog is kept in the test's tmp_path)."""
    started = []
    bases = []

    def make(relay_port, tls):
        base = Path(tempfile.mkdtemp(prefix="mw-postfix-", dir="/tmp"))
        os.chmod(base, 0o711)
        bases.append(base)
        p = PrivatePostfix(base, relay_port, tls)
        started.append(p)
        p.start()
        return p

    yield make
    for i, p in enumerate(started):
        p.stop()
        try:
            shutil.copyfile(p.maillog, tmp_path / f"postfix-{i}.maillog")
        except OSError:
            pass
    for base in bases:
        shutil.rmtree(base, ignore_errors=True)


TLS_LINE = (r"(?P<trust>\w+) TLS connection established to 127\.0\.0\.1\[127\.0\.0\.1\]:{port}: "
            r"(?P<version>TLSv1\.[0-3]) with cipher (?P<cipher>\S+) \((?P<bits>\d+)/(?P<algbits>\d+) bits\)")

DOMAINS = ["localhost", "mx.test", "plain.test", "untrusted.test"]


@pytest.fixture
def second_tlsd(tmp_path):
    d = TLSDaemon(tmp_path / "mw2")
    yield d
    d.cleanup()


def check_relayed(tlsd, pf, msgid, trust=None):
    """The message Postfix relayed arrived with an ESMTPS Received header
    that agrees with Postfix's own log of the TLS session."""
    m = pf.wait_log(TLS_LINE.format(port=tlsd.port), "Postfix's 'TLS connection established' line")
    if trust:
        assert m.group("trust") == trust, f"Postfix did not verify mailwarden's certificate: {m.group(0)}"
    pf.wait_log(r"to=<user@mx\.test>.*status=sent \(250 ", "Postfix status=sent for user@mx.test")
    [d] = tlsd.wait_mail("mx.test", "user", 1)
    assert d.header("Message-ID") == msgid
    f = tls_received(d)
    assert f["helo"] == "postfix.test", d.received_raw
    assert f["proto"] == "ESMTPS", f"Received from Postfix over TLS is not ESMTPS: {d.received_raw!r}"
    assert (f["version"], f["cipher"], f["bits"], f["algbits"]) == \
        (m.group("version"), m.group("cipher"), m.group("bits"), m.group("algbits")), \
        f"Received {d.received_raw!r} disagrees with Postfix: {m.group(0)}"
    ev = tlsd.wait_event("tls", sni="mx.test")  # Postfix sends SNI mx.test (smtp_tls_servername)
    assert ev.get("version") == m.group("version") and ev.get("cipher") == m.group("cipher"), ev


def test_postfix_encrypt_relays_into_mailwarden(tlsd, pki, postfix_factory):
    tlsd.start_tls(listeners={"plain": "none"}, local_domains=DOMAINS,
                   certificates=[("mx", [pki.mx_rsa, pki.mx_ecdsa]), ("other", [pki.other])])
    pf = postfix_factory(tlsd.port, {
        "smtp_tls_security_level": "encrypt",
        # negative control: the same daemon's listener without STARTTLS
        "transport_maps": f"inline:{{plain.test=smtp:[127.0.0.1]:{tlsd.port_of('plain')}}}",
    })
    pf.submit("user@mx.test", "<postfix-encrypt@postfix.test>")
    pf.submit("user@plain.test", "<postfix-plain@postfix.test>")
    check_relayed(tlsd, pf, "<postfix-encrypt@postfix.test>")
    pf.wait_log(r"to=<user@plain\.test>.*status=deferred .*TLS is required, but was not offered",
                "Postfix deferring user@plain.test (no STARTTLS offered)")
    assert tlsd.mail_files("plain.test", "user") == [], "Postfix at encrypt sent mail in clear text"


def test_postfix_verify_relays_into_mailwarden(tlsd, second_tlsd, pki, postfix_factory):
    tlsd.start_tls(local_domains=DOMAINS,
                   certificates=[("mx", [pki.mx_rsa, pki.mx_ecdsa]), ("other", [pki.other])])
    # negative control: a second mailwarden whose certificate the test CA did not sign
    second_tlsd.start_tls(local_domains=DOMAINS, certificates=[("mx", [pki.mx_untrusted])])
    pf = postfix_factory(tlsd.port, {
        "smtp_tls_security_level": "verify",
        "smtp_tls_CAfile": str(pki.ca.cert),
        "smtp_tls_verify_cert_match": "mx.test",
        "transport_maps": f"inline:{{untrusted.test=smtp:[127.0.0.1]:{second_tlsd.port}}}",
    })
    pf.submit("user@mx.test", "<postfix-verify@postfix.test>")
    pf.submit("user@untrusted.test", "<postfix-untrusted@postfix.test>")
    check_relayed(tlsd, pf, "<postfix-verify@postfix.test>", trust="Verified")
    pf.wait_log(r"to=<user@untrusted\.test>.*status=deferred \(Server certificate not (?:verified|trusted)\)",
                "Postfix deferring user@untrusted.test (untrusted certificate)")
    assert second_tlsd.all_mail_files() == [], "Postfix at verify sent mail to an unverified server"
    assert not second_tlsd.log_events("queued")
