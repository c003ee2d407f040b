"""TLS helpers for the mailwarden integration tests (stdlib + openssl CLI).

* `TestPKI` builds, with the `openssl` command, a private test CA and the
  server certificates the TLS tests need (RSA and ECDSA for one name, other
  names for SNI, a wildcard, a CN-only certificate, a renewed certificate for
  reload tests, a key that matches nothing).
* `TLSDaemon` is a `mwharness.Daemon` whose config also has TLS listeners
  (starttls, starttls-required, implicit, none) and `certificate` sections.
* `TLSConn` is `mwharness.SMTPConn` that can run STARTTLS or connect with
  implicit TLS, using Python's `ssl` module.
* `SClient` drives an interactive `openssl s_client`; `openssl_server` and
  `python_tls_server` are *control* servers that prove a restricted client
  really offers what a test says it offers (old protocol versions, static-RSA
  ciphers), so that a refusal can only come from mailwarden.

As in mwharness, timeouts only keep a broken daemon from hanging the suite.
"""

import contextlib
import hashlib
import os
import queue
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

from mwharness import (REPLY_TIMEOUT, START_TIMEOUT, ConnectionClosed, Daemon, SMTPConn, free_port,
                       parse_logfmt, wait_until)

OPENSSL = "/usr/bin/openssl"
TOOL_TIMEOUT = 60


def need_tool(path, package):
    """The path of a required command-line tool; a clear failure if missing
    (the TLS tests must not silently skip)."""
    p = Path(path)
    if not (p.is_file() and os.access(p, os.X_OK)):
        found = shutil.which(p.name)
        if found:
            return found
        raise AssertionError(f"required tool {path} is missing: install the Debian package "
                             f"'{package}' (scripts/setup installs it for CI)")
    return str(p)


SWAKS_CAPABILITIES = {
    # what a test asks of swaks -> (the line `swaks --support` prints, the package)
    "tls": ("TLS supported", "libnet-ssleay-perl"),
    "auth": ("Basic AUTH supported", "swaks"),
    "cram-md5": ("AUTH CRAM-MD5 supported", "libauthen-sasl-perl"),
    "ipv6": ("IPv6 supported", "libio-socket-inet6-perl"),
}


def need_swaks(*capabilities):
    """The path of swaks, after checking with `swaks --support` that it has
    every capability named (keys of SWAKS_CAPABILITIES). A swaks without one
    is a clear failure naming the package, never a skip: swaks quietly drops
    TLS when Net::SSLeay is missing, a Recommends that --no-install-recommends
    leaves out."""
    swaks = need_tool("/usr/bin/swaks", "swaks")
    out = subprocess.run([swaks, "--support"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=TOOL_TIMEOUT).stdout.decode("utf-8", "replace")
    supported = {l[4:].strip() for l in out.splitlines() if l.startswith("=== ")}
    for cap in capabilities:
        line, package = SWAKS_CAPABILITIES[cap]
        if line not in supported:
            raise AssertionError(f"swaks lacks {cap}: `swaks --support` does not say '{line}'; "
                                 f"install the Debian package '{package}' (scripts/setup installs "
                                 f"it)\n{out}")
    return swaks


def run(args, input=None, timeout=TOOL_TIMEOUT, check=True, env=None):
    r = subprocess.run([str(a) for a in args], input=input, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError(f"command failed ({r.returncode}): {' '.join(map(str, args))}\n"
                             f"{r.stdout.decode('utf-8', 'replace')}")
    return r


# --------------------------------------------------------------------------
# certificates


def pem_blocks(text):
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", text, re.S)


def der_fingerprint(der):
    return hashlib.sha256(der).hexdigest()


class CertPair:
    """One certificate (leaf, maybe followed by its chain) and its key."""

    def __init__(self, name, cert, key, dns_names, key_type):
        self.name = name
        self.cert = Path(cert)
        self.key = Path(key)
        self.dns_names = list(dns_names)
        self.key_type = key_type  # "rsa" | "ecdsa"
        self.refresh()

    def refresh(self):
        leaf_pem = pem_blocks(self.cert.read_text())[0]
        self.leaf_pem = leaf_pem
        self.der = ssl.PEM_cert_to_DER_cert(leaf_pem)
        self.fingerprint = der_fingerprint(self.der)

    def __repr__(self):
        return f"<cert {self.name} {self.key_type} {self.dns_names} sha256={self.fingerprint[:16]}>"


class TestPKI:
    """A test CA and server certificates, made with the openssl CLI."""

    __test__ = False  # not a pytest class

    def __init__(self, directory):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.openssl = need_tool(OPENSSL, "openssl")
        self._serial = 1000
        self.ca = self._ca("ca", "mailwarden Test CA")
        # a CA that signed nothing here: a client trusting only it must refuse our servers
        self.other_ca = self._ca("other-ca", "Unrelated Test CA", "ecdsa")
        mx_names = ["mx.test", "localhost"]
        self.mx_rsa = self._leaf("mx-rsa", "mx.test", mx_names, ["127.0.0.1"], "rsa", chain=True)
        self.mx_ecdsa = self._leaf("mx-ecdsa", "mx.test", mx_names, ["127.0.0.1"], "ecdsa")
        self.other = self._leaf("other", "other.test", ["other.test"], [], "rsa")
        self.wild = self._leaf("wild", "wild.test", ["*.wild.test"], [], "ecdsa")
        self.cnonly = self._leaf("cnonly", "cnonly.test", [], [], "ecdsa")
        # the same names as mx-rsa with a new key: what a renewal looks like
        self.mx_rsa_renewed = self._leaf("mx-rsa-renewed", "mx.test", mx_names, ["127.0.0.1"], "rsa")
        # mx.test again, but from the unrelated CA: what a client trusting only self.ca must refuse
        self.mx_untrusted = self._leaf("mx-untrusted", "mx.test", mx_names, ["127.0.0.1"], "ecdsa",
                                       ca=self.other_ca)
        self.stray_key = self._key(self.dir / "stray.key", "rsa")  # matches no certificate
        self.garbage = self.dir / "garbage.pem"
        self.garbage.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n"
                                "-----END CERTIFICATE-----\n")

    # ---------------------------------------------------------------- openssl
    def _key(self, path, key_type):
        if key_type == "rsa":
            run([self.openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", path])
        else:
            run([self.openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-pkeyopt", "ec_param_enc:named_curve", "-out", path])
        os.chmod(path, 0o600)
        return Path(path)

    def _ca(self, name, cn, key_type="rsa"):
        key = self._key(self.dir / f"{name}.key", key_type)
        cert = self.dir / f"{name}.pem"
        run([self.openssl, "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "3650",
             "-sha256", "-subj", f"/O=mailwarden tests/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash"])
        return CertPair(name, cert, key, [], key_type)

    def _leaf(self, name, cn, dns, ips, key_type, chain=False, ca=None):
        ca = ca or self.ca
        key = self._key(self.dir / f"{name}.key", key_type)
        csr = self.dir / f"{name}.csr"
        cert = self.dir / f"{name}.pem"
        ext = self.dir / f"{name}.ext"
        ku = "digitalSignature,keyEncipherment" if key_type == "rsa" else "digitalSignature"
        lines = ["basicConstraints=critical,CA:FALSE", f"keyUsage=critical,{ku}",
                 "extendedKeyUsage=serverAuth", "subjectKeyIdentifier=hash",
                 "authorityKeyIdentifier=keyid"]
        san = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
        if san:
            lines.append("subjectAltName=" + ",".join(san))
        ext.write_text("\n".join(lines) + "\n")
        run([self.openssl, "req", "-new", "-key", key, "-out", csr, "-subj",
             f"/O=mailwarden tests/OU={name}/CN={cn}"])
        self._serial += 1
        run([self.openssl, "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
             "-set_serial", str(self._serial), "-days", "825", "-sha256", "-extfile", ext,
             "-out", cert])
        if chain:  # leaf first, then the chain
            cert.write_text(cert.read_text() + ca.cert.read_text())
        return CertPair(name, cert, key, dns or [cn], key_type)

    def by_fingerprint(self, fp):
        for c in (self.mx_rsa, self.mx_ecdsa, self.other, self.wild, self.cnonly,
                  self.mx_rsa_renewed, self.mx_untrusted, self.ca, self.other_ca):
            if c.fingerprint == fp:
                return c
        return None

    def describe(self, der):
        c = self.by_fingerprint(der_fingerprint(der)) if der else None
        if c is not None:
            return repr(c)
        if not der:
            return "<no certificate>"
        r = run([self.openssl, "x509", "-inform", "DER", "-noout", "-subject", "-ext", "subjectAltName"],
                input=der, check=False)
        return "<unknown certificate: " + r.stdout.decode("utf-8", "replace").strip() + ">"

    def copy(self, pair, directory, name=None):
        """A copy of a cert/key pair under `directory` (tests that rewrite
        files in place must not touch the session-wide originals)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = name or pair.name
        cert = directory / f"{name}.pem"
        key = directory / f"{name}.key"
        shutil.copyfile(pair.cert, cert)
        shutil.copyfile(pair.key, key)
        os.chmod(key, 0o600)
        return CertPair(name, cert, key, pair.dns_names, pair.key_type)


def replace_file(dst, src_path=None, data=None):
    """Atomically replace `dst` with a copy of `src_path` (or `data`)."""
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    if data is None:
        data = Path(src_path).read_bytes()
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, dst)


# --------------------------------------------------------------------------
# client contexts


def client_context(ca=None, check_hostname=False, minimum=None, maximum=None, ciphers=None):
    """A Python TLS client context. With `ca`, the server certificate must
    chain to it (and match the name if `check_hostname`)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca is not None:
        ctx.load_verify_locations(cafile=str(ca))
        ctx.check_hostname = check_hostname
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    if minimum is not None:
        ctx.minimum_version = minimum
    if maximum is not None:
        ctx.maximum_version = maximum
    return ctx


def legacy_client_context(version):
    """A client that offers exactly `version` (TLSv1 or TLSv1_1), with every
    cipher allowed (security level 0, so the local OpenSSL offers it)."""
    ctx = client_context(ciphers="DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = version
    ctx.maximum_version = version
    return ctx


# --------------------------------------------------------------------------
# SMTP over TLS


class TLSConn(SMTPConn):
    """SMTPConn plus STARTTLS / implicit TLS (Python ssl)."""

    def __init__(self, port, host="127.0.0.1", timeout=REPLY_TIMEOUT, **kw):
        super().__init__(port, host=host, timeout=timeout, **kw)
        self.local_port = self.sock.getsockname()[1]

    def wrap(self, ctx, server_hostname=None, session=None):
        assert self.buf == b"", f"unread bytes before the TLS handshake: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname, session=session)
        return self.sock

    def starttls(self, ctx=None, server_hostname=None, session=None):
        """STARTTLS (asserting the contract reply) then the handshake."""
        r = self.cmd("STARTTLS")
        assert r.code == 220 and r.enhanced == "2.0.0", f"STARTTLS refused: {r}"
        self.wrap(ctx or client_context(), server_hostname, session)
        return r

    @classmethod
    def implicit(cls, port, ctx=None, server_hostname=None, session=None, **kw):
        c = cls(port, **kw)
        try:
            c.wrap(ctx or client_context(), server_hostname, session)
        except BaseException:
            c.close()
            raise
        return c

    @property
    def tls(self):
        return isinstance(self.sock, ssl.SSLSocket)

    def peer_der(self):
        return self.sock.getpeercert(binary_form=True)

    def peer_fingerprint(self):
        return der_fingerprint(self.peer_der())

    def read_all_until_closed(self):
        """Every reply the server sends until it closes the connection."""
        replies = []
        while True:
            try:
                replies.append(self.reply())
            except ConnectionClosed:
                return replies
            except ssl.SSLError:
                return replies


def ehlo_keywords(reply):
    return {l.split()[0].upper(): l.split()[1:] for l in reply.lines[1:] if l.strip()}


# --------------------------------------------------------------------------
# the daemon with TLS listeners and certificates


class TLSDaemon(Daemon):
    """A Daemon whose config has TLS listeners and certificate sections.

    The primary listener `smtp` (self.port) is what Daemon.wait_for_port
    probes in clear text, so it is always starttls or none; the others are
    in self.listeners = {name: (port, mode)}."""

    DEFAULTS = {"hostname": "mx.test", "local_domains": ["localhost", "mx.test"],
                "dmarc_reject_bad_from": False}  # as in mwharness.Daemon

    def __init__(self, workdir):
        super().__init__(workdir)
        self.smtp_tls = "starttls"
        self.listeners = {}
        self.certificates = []  # [(section name, [CertPair, ...])]
        # listeners that offer AUTH, as the embedded default config does
        self.auth_listeners = {"submission", "submissions"}
        self.extra = ""  # config text appended as is (e.g. user sections)

    def start_tls(self, listeners=None, certificates=None, smtp_tls="starttls", **overrides):
        """listeners: {name: mode}; certificates: [(section, [CertPair, ...])]."""
        assert smtp_tls in ("starttls", "none", None)
        self.smtp_tls = smtp_tls
        self.listeners = {name: (free_port(), mode) for name, mode in (listeners or {}).items()}
        self.certificates = list(certificates or [])
        self.start(**overrides)
        for name, (port, mode) in self.listeners.items():
            self.wait_for_listener(port, mode)
        return self

    def start_text(self, text, ports):
        """Start on a complete config `text`; `ports` = {listener: (port, mode)}
        must include "smtp" (clear-text greeting, probed like wait_for_port)."""
        self.settings = {}
        self.port = ports["smtp"][0]
        self.listeners = {k: v for k, v in ports.items() if k != "smtp"}
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config(text=text)
        self._spawn(())
        for name, (port, mode) in self.listeners.items():
            self.wait_for_listener(port, mode)
        return self

    def restart(self, new_port=True):
        super().restart(new_port=new_port)
        for name, (port, mode) in self.listeners.items():
            self.wait_for_listener(port, mode)
        return self

    def port_of(self, name):
        return self.port if name == "smtp" else self.listeners[name][0]

    def render(self, settings=None, port=None):
        settings = settings if settings is not None else self.settings
        port = port if port is not None else self.port
        from mwharness import _conf_value
        lines = [f"{k} = {_conf_value(v)}" for k, v in settings.items() if v is not None]
        lines += ["listen smtp {", '    address = "127.0.0.1"', f"    port = {port}"]
        if self.smtp_tls:
            lines.append(f'    tls = "{self.smtp_tls}"')
        if "smtp" in self.auth_listeners:
            lines.append("    auth = true")
        lines.append("}")
        for name, (lport, mode) in self.listeners.items():
            lines += [f"listen {name} {{", '    address = "127.0.0.1"', f"    port = {lport}",
                      f'    tls = "{mode}"']
            if name in self.auth_listeners:
                lines.append("    auth = true")
            lines.append("}")
        for section, pairs in self.certificates:
            lines += [f"certificate {section} {{",
                      "    cert_file = " + _conf_value([str(p.cert) for p in pairs]),
                      "    key_file = " + _conf_value([str(p.key) for p in pairs]),
                      "}"]
        if self.extra:
            lines.append(self.extra)
        return "\n".join(lines) + "\n"

    def write_config(self, settings=None, port=None, extra="", text=None):
        if text is None:
            text = self.render(settings, port) + (extra + "\n" if extra else "")
        self.config_path.write_text(text)
        return text

    def wait_for_listener(self, port, mode, timeout=START_TIMEOUT):
        """Like wait_for_port, for any TLS mode (an implicit-TLS probe does a
        full handshake so that it is not logged as a failed one)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"mailwarden exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if mode == "implicit":
                    c = TLSConn.implicit(port, timeout=10)
                else:
                    c = TLSConn(port, timeout=10)
                with c:
                    try:
                        c.readline()
                        c.send(b"QUIT\r\n")
                        c.wait_closed(timeout=10)
                    except (ConnectionClosed, OSError):
                        pass
                return
            except (ConnectionRefusedError, socket.timeout):
                pass
            except (ssl.SSLError, OSError) as e:
                raise AssertionError(f"listener on port {port} ({mode}): {e!r}\n{self.log_tail()}")
            if time.monotonic() >= deadline:
                raise AssertionError(f"mailwarden not listening on {port} after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    # ---------------------------------------------------------- connections
    def plain(self, listener="smtp", **kw):
        return TLSConn(self.port_of(listener), **kw)

    def starttls_session(self, listener="smtp", ctx=None, server_hostname=None, helo="client.test",
                         ehlo_after=True):
        """Greeting, EHLO, STARTTLS, handshake, and (by default) EHLO again."""
        c = TLSConn(self.port_of(listener))
        try:
            g = c.greeting()
            assert g.code == 220, f"greeting: {g}"
            r = c.ehlo(helo)
            assert "STARTTLS" in ehlo_keywords(r), f"STARTTLS not advertised on {listener}: {r}"
            c.starttls(ctx, server_hostname)
            if ehlo_after:
                c.ehlo(helo)
        except BaseException:
            c.close()
            raise
        return c

    def implicit_session(self, listener="submissions", ctx=None, server_hostname=None,
                         helo="client.test", ehlo=True):
        c = TLSConn.implicit(self.port_of(listener), ctx, server_hostname)
        try:
            g = c.greeting()
            assert g.code == 220, f"greeting over implicit TLS: {g}"
            if ehlo:
                c.ehlo(helo)
        except BaseException:
            c.close()
            raise
        return c

    # ---------------------------------------------------------- log
    def session_id(self, local_port, listener=None):
        """The daemon's session id of our connection from `local_port`.

        Linux reuses a local port for connections to *different* server
        ports, so several connect lines may name it: ours is the latest
        (call this after the connection has had its greeting or handshake,
        both of which come after the daemon logs event=connect)."""
        def matches(line):
            f = parse_logfmt(line)
            return (f.get("event") == "connect" and f.get("port") == str(local_port)
                    and (listener is None or f.get("listener") == listener))
        self.wait_log(matches, what=f"event=connect port={local_port}")
        line = [l for l in self.log.splitlines() if matches(l)][-1]
        sid = parse_logfmt(line).get("session")
        assert sid, f"event=connect without session=: {line}"
        return sid


# --------------------------------------------------------------------------
# Received header with TLS


TLS_RECEIVED_RE = re.compile(
    rb"Received: from (?P<helo>\S+) \(\[(?P<ip>[^\]]+)\]\)\r\n"
    rb"\t\(using (?P<version>TLSv1\.[23]) with cipher (?P<cipher>[A-Za-z0-9_-]+)"
    rb" \((?P<bits>\d+)/(?P<algbits>\d+) bits\)\)\r\n"
    rb"\tby (?P<by>\S+) \(mailwarden\) with (?P<proto>\S+) id (?P<id>[^\s;]+)"
    rb"(?:\r\n\tfor <(?P<rcpt>[^>]*)>)?; (?P<date>[^\r\n]+)\r\n$")


def tls_received(delivered):
    m = TLS_RECEIVED_RE.match(delivered.received_raw)
    assert m, f"{delivered.path}: Received header does not match the TLS contract: {delivered.received_raw!r}"
    return {k: (v.decode("utf-8", "replace") if v is not None else None) for k, v in m.groupdict().items()}


# --------------------------------------------------------------------------
# openssl s_client / s_server


class SClient:
    """An interactive `openssl s_client`: send lines, read SMTP replies."""

    def __init__(self, args):
        self.args = [need_tool(OPENSSL, "openssl"), "s_client", *map(str, args)]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines = queue.Queue()
        self.output = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.output.append(line)
            self.lines.put(line)
        self.lines.put(None)

    @property
    def text(self):
        return "\n".join(self.output)

    def send(self, line):
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def line(self, timeout=REPLY_TIMEOUT):
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from openssl s_client within {timeout}s:\n{self.text}")
        if line is None:
            self.lines.put(None)
            raise ConnectionClosed(f"openssl s_client ended:\n{self.text}")
        return line

    def wait_for(self, pattern, timeout=REPLY_TIMEOUT):
        """Skip output lines until one matches `pattern`; return the match."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.line(max(0.1, deadline - time.monotonic()))
            m = re.search(pattern, line)
            if m:
                return m

    def reply(self, timeout=REPLY_TIMEOUT):
        """Next SMTP reply (skipping s_client's own chatter): (code, lines)."""
        lines = []
        while True:
            line = self.line(timeout)
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            if not m:
                if lines:
                    raise AssertionError(f"broken multiline reply {lines!r} + {line!r}")
                continue
            lines.append(m.group(3))
            if m.group(2) == " ":
                return int(m.group(1)), lines

    def cmd(self, line):
        self.send(line)
        return self.reply()

    def sync(self):
        """Send NOOP and read up to its reply. openssl s_client 3.0 prints a
        stale copy of the last line of the clear-text EHLO reply it parsed
        for -starttls smtp (e.g. "250 CHUNKING") right after the handshake,
        although nothing of the kind is on the wire (checked with -debug).
        Returns the replies skipped before the NOOP's."""
        self.send("NOOP")
        skipped = []
        while True:
            code, lines = self.reply()
            if code == 250 and lines[0].startswith("2.0.0"):
                return skipped
            skipped.append((code, lines))
            if len(skipped) > 1:
                raise AssertionError(f"unexpected replies before NOOP's: {skipped}\n{self.text}")

    def wait(self, timeout=REPLY_TIMEOUT):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"openssl s_client did not exit within {timeout}s:\n{self.text}")
        self._reader.join(timeout=5)
        return rc

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._reader.join(timeout=5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def s_client_once(args, timeout=TOOL_TIMEOUT):
    """Run `openssl s_client ARGS` with stdin at EOF; (returncode, output)."""
    r = subprocess.run([need_tool(OPENSSL, "openssl"), "s_client", *map(str, args)],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


@contextlib.contextmanager
def openssl_server(cert, extra_args=()):
    """A control `openssl s_server` on a free loopback port; yields the port."""
    port = free_port()
    args = [need_tool(OPENSSL, "openssl"), "s_server", "-accept", f"127.0.0.1:{port}",
            "-cert", str(cert.cert), "-key", str(cert.key), "-naccept", "1", *map(str, extra_args)]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    out = []

    def reader():
        for raw in proc.stdout:
            out.append(raw.decode("utf-8", "replace"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        wait_until(lambda: "ACCEPT" in "".join(out) or proc.poll() is not None, 30,
                   what="openssl s_server to listen")
        assert proc.poll() is None, f"openssl s_server failed: {' '.join(args)}\n{''.join(out)}"
        yield port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        t.join(timeout=5)


@contextlib.contextmanager
def python_tls_server(cert, configure):
    """A control Python TLS server (one handshake per connection) on a free
    loopback port. `configure(ctx)` loosens the server context as needed.
    Yields (port, results) where results collects (version, cipher) or the
    handshake exception of each connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    configure(ctx)
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(0.2)
    port = lsock.getsockname()[1]
    results = []
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                s, _ = lsock.accept()
            except (socket.timeout, OSError):
                continue
            s.settimeout(30)
            try:
                with ctx.wrap_socket(s, server_side=True) as t:
                    results.append((t.version(), t.cipher()))
                    t.sendall(b"ok")
            except (ssl.SSLError, OSError) as e:
                results.append(e)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield port, results
    finally:
        stop.set()
        th.join(timeout=10)
        lsock.close()


def sclient_summary(output):
    """(protocol, cipher) of the session s_client established, or None.

    The protocol comes from the SSL-Session block when there is one (TLS 1.3
    prints it only when a ticket arrives), else from the "New, VERSION,
    Cipher is X" line, whose version is that of the cipher: exact for
    TLS 1.2 and 1.3, which is all mailwarden may negotiate."""
    new = re.search(r"^(?:New|Reused), (\S+), Cipher is (\S+)", output, re.M)
    proto = re.search(r"^\s*Protocol\s*:\s*(\S+)", output, re.M)
    cipher = re.search(r"^\s*Cipher\s*:\s*(\S+)", output, re.M)
    if new and new.group(2) != "(NONE)":
        return (proto.group(1) if proto else new.group(1)), new.group(2)
    if proto and cipher and cipher.group(1) not in ("0000", "(NONE)"):
        return proto.group(1), cipher.group(1)
    return None


def sclient_leaf_der(output):
    """DER of the first certificate s_client printed (the server's leaf)."""
    blocks = pem_blocks(output)
    return ssl.PEM_cert_to_DER_cert(blocks[0]) if blocks else None
