"""Helpers for the mailwarden integration tests (stdlib only).

`Daemon` starts one `mailwarden serve` in a private directory on a free
loopback port, collects its stderr log, and reads the Maildirs it writes.
`SMTPConn` is a tiny raw SMTP client that lets a test send exact bytes
(bare CR/LF, pipelined commands, BDAT chunks) and read replies one by one.

No timing is ever a pass/fail criterion: every timeout below only exists to
keep a broken daemon from hanging the suite, and they are generous because
the binary under test may be a sanitizer build.
"""

import os
import re
import signal as _signal
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Generous upper bounds (seconds), only to avoid hangs.
START_TIMEOUT = 60
REPLY_TIMEOUT = 30
DELIVERY_TIMEOUT = 60
EXIT_TIMEOUT = 30


def binary_path():
    return Path(os.environ.get("MAILWARDEN_BIN") or REPO / "build" / "mailwarden")


_given_ports = set()
_port_locks = []
# Below the kernel's ephemeral range (32768-60999 on Debian), so no client
# socket of any test can be sitting on a port we hand to a daemon.
_PORT_LOW, _PORT_HIGH = 20000, 32000
_PORT_LOCK_DIR = Path(os.environ.get("TMPDIR", "/tmp")) / "mailwarden-test-ports"


def free_port():
    """A loopback port nothing listens on, never the same twice in this
    process and never the one another test process holds: CTest runs the
    suites in parallel, and two daemons handed one port race to bind it.
    Each port is claimed with an flock() held until this process exits, so
    a crashed run leaves nothing behind."""
    import fcntl
    import random
    _PORT_LOCK_DIR.mkdir(mode=0o1777, exist_ok=True)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(5000):
        port = rng.randrange(_PORT_LOW, _PORT_HIGH)
        if port in _given_ports:
            continue
        fd = os.open(_PORT_LOCK_DIR / str(port), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            os.close(fd)
            continue
        _port_locks.append(fd)
        _given_ports.add(port)
        return port
    raise AssertionError("no free loopback port in %d-%d" % (_PORT_LOW, _PORT_HIGH))


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll predicate() until it returns a truthy value; return it.

    Raises AssertionError naming `what` if it never becomes true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# configuration


def _conf_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(_conf_value(v) for v in value) + " }"
    s = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def render_config(settings, port, address="127.0.0.1", extra=""):
    """Render a libConfuse config file: `key = value` lines then the listener."""
    lines = [f"{k} = {_conf_value(v)}" for k, v in settings.items() if v is not None]
    lines.append("listen smtp {")
    lines.append(f'    address = "{address}"')
    lines.append(f"    port = {port}")
    lines.append("}")
    if extra:
        lines.append(extra)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# raw SMTP client


class Reply:
    ENH = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")

    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN " of each line

    @property
    def text(self):
        return "\n".join(self.lines)

    @property
    def enhanced(self):
        """The RFC 3463 code at the start of the first line, or None."""
        m = self.ENH.match(self.lines[0]) if self.lines else None
        return m.group(0).strip() if m else None

    def __repr__(self):
        return f"Reply({self.code}, {self.lines!r})"

    def __str__(self):
        return "\n".join(f"{self.code} {line}" for line in self.lines)


class ConnectionClosed(Exception):
    pass


class SMTPConn:
    def __init__(self, port, host="127.0.0.1", source=None, timeout=REPLY_TIMEOUT):
        src = (source, 0) if source else None
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=src)
        self.buf = b""
        self.timeout = timeout

    # context manager
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.sendall(data)

    def readline(self):
        """One reply line without its CRLF; raises ConnectionClosed at EOF."""
        while b"\n" not in self.buf:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise ConnectionClosed(f"connection reset (pending {self.buf!r})") from e
            if not chunk:
                raise ConnectionClosed(f"connection closed (pending {self.buf!r})")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        assert line.endswith(b"\r"), f"server reply line not ended by CRLF: {line!r}"
        return line[:-1].decode("utf-8", "replace")

    def reply(self):
        lines = []
        code = None
        while True:
            line = self.readline()
            m = re.match(r"^(\d{3})([ -])(.*)$", line)
            assert m, f"malformed reply line {line!r}"
            if code is None:
                code = int(m.group(1))
            else:
                assert int(m.group(1)) == code, f"mixed codes in multiline reply: {lines!r} + {line!r}"
            lines.append(m.group(3))
            if m.group(2) == " ":
                return Reply(code, lines)

    def cmd(self, line):
        if isinstance(line, str):
            line = line.encode("utf-8")
        self.send(line + b"\r\n")
        return self.reply()

    def greeting(self):
        return self.reply()

    def ehlo(self, name="client.test"):
        r = self.cmd(f"EHLO {name}")
        assert r.code == 250, f"EHLO refused: {r}"
        return r

    def wait_closed(self, timeout=REPLY_TIMEOUT):
        """True once the server has closed the connection (data before EOF is
        returned in self.buf for inspection)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        finally:
            self.sock.settimeout(self.timeout)


def assert_reply(reply, code, enhanced=None, contains=None):
    assert reply.code == code, f"expected {code} {enhanced or ''}, got {reply}"
    if enhanced is not None:
        assert reply.enhanced == enhanced, f"expected enhanced code {enhanced}, got {reply}"
    if contains is not None:
        assert contains in reply.text, f"expected {contains!r} in {reply}"


def assert_has_enhanced(reply):
    assert reply.enhanced is not None, f"reply lacks an RFC 3463 enhanced status code: {reply}"
    assert reply.enhanced[0] == str(reply.code)[0], f"enhanced class differs from reply class: {reply}"


QUEUED_RE = re.compile(r"queued as (\S+)")


def queue_id_of(reply):
    m = QUEUED_RE.search(reply.text if isinstance(reply, Reply) else reply)
    assert m, f"no 'queued as <ID>' in {reply}"
    return m.group(1)


# --------------------------------------------------------------------------
# delivered messages


class Delivered:
    """One Maildir file split into the trace fields mailwarden prepends and
    the message bytes that follow them."""

    def __init__(self, path, data):
        self.path = Path(path)
        self.raw = data
        m = re.match(rb"Return-Path: ([^\r\n]*)\r\n", data)
        assert m, f"{path}: does not start with a Return-Path line: {data[:200]!r}"
        self.return_path = m.group(1).decode("utf-8", "replace")
        pos = m.end()
        m = re.compile(rb"Delivered-To: ([^\r\n]*)\r\n").match(data, pos)
        assert m, f"{path}: second line is not Delivered-To: {data[pos:pos + 200]!r}"
        self.delivered_to = m.group(1).decode("utf-8", "replace")
        pos = m.end()
        # Our Authentication-Results (RFC 8601) comes first...
        m = re.compile(rb"Authentication-Results: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*").match(data, pos)
        self.authres_raw = m.group(0) if m else b""
        self.authres = (re.sub(r"\r\n[ \t]+", " ", m.group(0).decode("utf-8", "replace")).strip()
                        if m else None)
        if m:
            pos = m.end()
        # ...then Received-SPF (RFC 7208 9.1), above our Received field.
        m = re.compile(rb"Received-SPF: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*").match(data, pos)
        self.received_spf_raw = m.group(0) if m else b""
        self.received_spf = (re.sub(r"\r\n[ \t]+", " ", m.group(0).decode("utf-8", "replace")).strip()
                             if m else None)
        if m:
            pos = m.end()
        # Received: first line plus folded continuation lines (start with WSP)
        m = re.compile(rb"Received: [^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*").match(data, pos)
        assert m, f"{path}: third header is not Received: {data[pos:pos + 300]!r}"
        self.received_raw = m.group(0)
        self.received = re.sub(r"\r\n[ \t]+", " ", m.group(0).decode("utf-8", "replace")).strip()
        self.message = data[m.end():]

    RECEIVED_RE = re.compile(
        r"^Received: from (?P<helo>\S+) \(\[(?P<ip>[^\]]+)\]\) by (?P<by>\S+) \(mailwarden\)"
        r" with (?P<proto>\S+) id (?P<id>[^\s;]+)(?: for <(?P<for>[^>]*)>)?\s*;\s*(?P<date>.+)$"
    )

    def received_fields(self):
        m = self.RECEIVED_RE.match(self.received)
        assert m, f"{self.path}: Received header does not match the contract: {self.received!r}"
        return m.groupdict()

    def header(self, name):
        """Value of the first header `name` in the message part (unfolded)."""
        head = self.message.split(b"\r\n\r\n", 1)[0]
        head = re.sub(rb"\r\n[ \t]+", b" ", head)
        for line in head.split(b"\r\n"):
            k, sep, v = line.partition(b":")
            if sep and k.strip().lower() == name.lower().encode():
                return v.strip().decode("utf-8", "replace")
        return None


# --------------------------------------------------------------------------
# the daemon


class Daemon:
    """One mailwarden daemon under test, living in `workdir`."""

    DEFAULTS = {
        "hostname": "mx.test",
        "local_domains": ["localhost", "example.org"],
        # Transport tests send arbitrary bytes, often without a From field;
        # the daemon's default refuses those (RFC 7489 6.6.1), and the
        # tests of From handling (test_dmarc_daemon.py) turn it back on.
        "dmarc_reject_bad_from": False,
    }

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.bin = binary_path()
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "mailwarden.conf"
        self.settings = None
        self.proc = None
        self.port = None
        self.logs = []  # one file per start
        self._log_handle = None

    # ---------------------------------------------------------- config
    def make_settings(self, **overrides):
        settings = dict(self.DEFAULTS)
        settings["data_dir"] = str(self.data_dir)
        settings.update(overrides)
        return settings

    def write_config(self, settings=None, port=None, extra="", text=None):
        if text is None:
            text = render_config(settings if settings is not None else self.settings,
                                 port if port is not None else self.port, extra=extra)
        self.config_path.write_text(text)
        return text

    # ---------------------------------------------------------- lifecycle
    def start(self, port=None, extra_args=(), **overrides):
        """Write the config (defaults + overrides) and start the daemon."""
        assert self.proc is None or self.proc.poll() is not None, "daemon already running"
        self.settings = self.make_settings(**overrides)
        self.port = port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self._extra_args = tuple(extra_args)
        self._spawn(extra_args)
        return self

    def restart(self, new_port=True):
        """Start again on the same data dir and config (after stop/kill9)."""
        assert self.proc is None or self.proc.poll() is not None, "daemon still running"
        if new_port:
            self.port = free_port()
            self.write_config()
        self._spawn(getattr(self, "_extra_args", ()))   # the same --dns-zone, say
        return self

    def _spawn(self, extra_args):
        assert self.bin.exists(), f"mailwarden binary not found at {self.bin} (set MAILWARDEN_BIN)"
        log_path = self.workdir / f"daemon-{len(self.logs)}.log"
        self.logs.append(log_path)
        self._log_handle = open(log_path, "wb")
        args = [str(self.bin), "serve", "-c", str(self.config_path),
                "--data-dir", str(self.data_dir), *extra_args]
        # Tests never use live DNS (DESIGN: offline DNS): unless a test gives
        # its own zone, every lookup answers from an empty zone (NXDOMAIN).
        if "--dns-zone" not in extra_args and "dns {" not in self.config_path.read_text():
            zone = self.workdir / "offline.zone"
            if not zone.exists():
                zone.write_text("; no records: every name is NXDOMAIN\n")
            args += ["--dns-zone", str(zone)]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log_handle,
                                     stderr=self._log_handle, cwd=self.workdir,
                                     start_new_session=True)
        self.wait_for_port()

    def wait_for_port(self, timeout=START_TIMEOUT):
        """Poll until the listener accepts; the probe session says QUIT and
        waits for the close so it is not left counted against limits."""
        deadline = time.monotonic() + timeout
        log_path = self.logs[-1]
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"mailwarden exited with {self.proc.returncode} before listening:\n{self.log_tail()}")
            # Only a daemon that said it started owns the port: a probe
            # alone could reach someone else's listener there.
            if b"event=started " not in log_path.read_bytes():
                if time.monotonic() >= deadline:
                    raise AssertionError(f"mailwarden did not start after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.02)
                continue
            try:
                with SMTPConn(self.port, timeout=10) as c:
                    try:
                        c.readline()
                        c.send(b"QUIT\r\n")
                        c.wait_closed(timeout=10)
                    except (ConnectionClosed, OSError):
                        pass
                return
            except (ConnectionRefusedError, socket.timeout):
                pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"mailwarden not listening on {self.port} after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=EXIT_TIMEOUT):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"mailwarden did not exit within {timeout}s:\n{self.log_tail()}")

    def stop(self, sig=_signal.SIGTERM, timeout=EXIT_TIMEOUT):
        """Send `sig` to the daemon and return its exit status."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.signal(sig)
        rc = self.wait_exit(timeout)
        self._close_log()
        return rc

    def kill9(self):
        """Crash the daemon: SIGKILL to its whole process group (it may have
        helper processes; they all were started by this harness)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, _signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=EXIT_TIMEOUT)
        self._close_log()

    def cleanup(self):
        """Fixture teardown: never leave a daemon (or its helpers) behind."""
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(_signal.SIGTERM)
                    self.proc.wait(timeout=5)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    pass
            try:
                os.killpg(self.proc.pid, _signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=EXIT_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        self._close_log()

    def _close_log(self):
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    # ---------------------------------------------------------- log
    @property
    def log(self):
        return "".join(p.read_bytes().decode("utf-8", "replace") for p in self.logs if p.exists())

    def log_tail(self, n=60):
        return "\n".join(self.log.splitlines()[-n:])

    def log_events(self, event=None):
        out = []
        for line in self.log.splitlines():
            fields = parse_logfmt(line)
            if event is None or fields.get("event") == event:
                out.append(fields)
        return out

    def wait_log(self, predicate, timeout=REPLY_TIMEOUT, what="log line"):
        def find():
            for line in self.log.splitlines():
                if predicate(line):
                    return line
            return None
        try:
            return wait_until(find, timeout, what=what)
        except AssertionError as e:
            raise AssertionError(f"{e}\nlog:\n{self.log_tail()}")

    def wait_event(self, event, what=None, **fields):
        """The first log line with event= and all the given field values."""
        def match(line):
            f = parse_logfmt(line)
            return f.get("event") == event and all(f.get(k) == str(v) for k, v in fields.items())
        desc = what or f"event={event} " + " ".join(f"{k}={v}" for k, v in fields.items())
        return parse_logfmt(self.wait_log(match, what=desc))

    def events(self, event, **fields):
        return [f for f in self.log_events(event) if all(f.get(k) == str(v) for k, v in fields.items())]

    # ---------------------------------------------------------- control
    def queue_cmd(self, *args, check=True, user=None):
        """`mailwarden queue ARGS --data-dir <ours>` against this daemon;
        the CompletedProcess. user: run it as that uid (setpriv)."""
        cmd = [str(self.bin), "queue", *args, "--data-dir", str(self.data_dir)]
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
        r = subprocess.run(cmd, capture_output=True, timeout=60)
        if check:
            assert r.returncode == 0, f"queue {args}: {r.returncode} {r.stderr!r}"
        return r

    # ---------------------------------------------------------- SMTP
    def connect(self, **kw):
        return SMTPConn(self.port, **kw)

    def session(self, helo="client.test", **kw):
        """Connected, greeted (220 asserted) and EHLO'd session (helo=None:
        no EHLO)."""
        c = SMTPConn(self.port, **kw)
        g = c.greeting()
        assert g.code == 220, f"greeting: {g}"
        if helo is not None:
            c.ehlo(helo)
        return c

    # ---------------------------------------------------------- storage
    @property
    def mail_root(self):
        return self.data_dir / "mail"

    @property
    def queue_dir(self):
        return self.data_dir / "queue"

    def maildir(self, domain, user):
        return self.mail_root / domain / user

    def mail_files(self, domain, user):
        new = self.maildir(domain, user) / "new"
        if not new.is_dir():
            return []
        return sorted(p for p in new.iterdir() if p.is_file())

    def read_maildir(self, domain, user):
        return [Delivered(p, p.read_bytes()) for p in self.mail_files(domain, user)]

    def all_mail_files(self):
        """Every file under mail/*/*/new and mail/*/*/cur."""
        if not self.mail_root.is_dir():
            return []
        out = []
        for sub in ("new", "cur"):
            out.extend(p for p in self.mail_root.glob(f"*/*/{sub}/*") if p.is_file())
        return sorted(out)

    def read_all_mail(self):
        return [Delivered(p, p.read_bytes()) for p in self.all_mail_files()]

    def wait_mail(self, domain, user, count=1, timeout=DELIVERY_TIMEOUT):
        """Wait for at least `count` files in the Maildir; return them parsed."""
        try:
            wait_until(lambda: len(self.mail_files(domain, user)) >= count, timeout,
                       what=f"{count} message(s) in {domain}/{user}/new")
        except AssertionError as e:
            raise AssertionError(f"{e}\nmail files: {self.all_mail_files()}\nlog:\n{self.log_tail()}")
        return self.read_maildir(domain, user)

    def block_mailbox(self, user, domain="localhost"):
        """Put a regular file where the user's Maildir directory would go, so
        delivery to it fails (and is deferred) until unblock_mailbox()."""
        d = self.mail_root / domain
        d.mkdir(parents=True, exist_ok=True)
        (d / user).write_text("not a maildir\n")

    def unblock_mailbox(self, user, domain="localhost"):
        (self.mail_root / domain / user).unlink()

    def queue_files(self):
        """Slot files holding a queued message (spent and empty slots are
        not messages), and anything moved to queue/corrupt/."""
        if not self.queue_dir.is_dir():
            return []
        live = [p for p in self.queue_dir.glob("slot.*")
                if p.is_file() and p.read_bytes()[:6] == b"MWQ 2\n"]
        corrupt = self.queue_dir / "corrupt"
        bad = [p for p in corrupt.iterdir() if p.is_file()] if corrupt.is_dir() else []
        return sorted(live + bad)

    def queue_file(self, qid):
        """The slot file holding the queued message qid."""
        for p in self.queue_files():
            if p.read_bytes().startswith(f"MWQ 2\nid {qid}\n".encode()):
                return p
        raise AssertionError(f"no queue file holds {qid}: {self.queue_files()}")


# --------------------------------------------------------------------------
# logfmt


_LOGFMT_RE = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_logfmt(line):
    fields = {}
    for k, v in _LOGFMT_RE.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        fields[k] = v
    return fields


# --------------------------------------------------------------------------
# a simple SMTP transaction over SMTPConn


def send_message(conn, sender, rcpts, data, terminate=True):
    """MAIL/RCPT/DATA with `data` (bytes ending in CRLF, already dot-stuffed
    as the test wants them), then ".\r\n". Returns the reply to the final dot."""
    assert data.endswith(b"\r\n")
    r = conn.cmd(f"MAIL FROM:<{sender}>")
    assert r.code == 250, f"MAIL: {r}"
    for rcpt in rcpts:
        r = conn.cmd(f"RCPT TO:<{rcpt}>")
        assert r.code == 250, f"RCPT {rcpt}: {r}"
    r = conn.cmd("DATA")
    assert r.code == 354, f"DATA: {r}"
    conn.send(data + (b".\r\n" if terminate else b""))
    return conn.reply()


def make_message(msgid, subject="test", body="hello\r\n", extra_headers=""):
    return (f"From: sender@example.net\r\nTo: user@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: {msgid}\r\n{extra_headers}\r\n{body}").encode("utf-8")
