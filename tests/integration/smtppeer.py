"""A small SMTP server of the tests' own, to receive what mailwarden sends
out: every session's commands and every message are recorded exactly as
they arrived (the data with its dot-stuffing removed, nothing else
changed). Replies can be chosen per stage, so a test can refuse a
recipient, fail the end of DATA, drop the connection, or leave out
extensions (PIPELINING, 8BITMIME, SIZE, SMTPUTF8, STARTTLS).

Binds only to loopback addresses; stop() closes everything it opened.
"""

import socket
import ssl
import threading
import time


class Message:
    def __init__(self, mail_from, rcpts, data, mail_line, tls, user=None):
        self.mail_from = mail_from
        self.rcpts = rcpts
        self.data = data          # bytes, dot-unstuffed, CRLF as sent
        self.mail_line = mail_line
        self.tls = tls
        self.user = user


class Peer:
    def __init__(self, host="127.0.0.2", port=0, ehlo=("PIPELINING", "8BITMIME", "SIZE 100000000"),
                 greeting="220 peer.test ESMTP", certfile=None, keyfile=None,
                 break_tls=False, auth=None):
        self.host = host
        self.ehlo_keywords = list(ehlo)
        self.greeting = greeting
        self.rcpt_reply = lambda rcpt: "250 2.1.5 ok"
        self.data_reply = lambda msg: "250 2.0.0 queued"
        self.messages = []
        self.sessions = 0
        self.commands = []        # every command line, all sessions
        self.lock = threading.Lock()
        self.tls_ctx = None
        self.break_tls = break_tls   # say 220 to STARTTLS, then hang up
        self.auth = auth             # {user: password}: AUTH PLAIN after TLS
        self.auth_seen = []          # (user, password, accepted)
        if certfile:
            self.tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_ctx.load_cert_chain(certfile, keyfile)
        if certfile or break_tls:
            self.ehlo_keywords.append("STARTTLS")
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.running = True
        self.threads = []
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        try:
            # a thread blocked in accept() keeps a closed socket listening:
            # shutdown() wakes it
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.close()
            except OSError:
                pass

    def wait_messages(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        with self.lock:
            raise AssertionError(f"peer got {len(self.messages)} of {n} messages; commands: "
                                 f"{self.commands[-20:]}")

    def _accept(self):
        while self.running:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.sessions += 1
                self.conns.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _serve(self, c):
        try:
            self._session(c)
        except (OSError, ssl.SSLError, ConnectionError):
            pass
        finally:
            try:
                c.close()
            except OSError:
                pass

    def _session(self, c):
        f = c.makefile("rb")
        tls = False
        user = None

        def send(line):
            c.sendall(line.encode() + b"\r\n")

        send(self.greeting)
        if not self.greeting.startswith("220"):
            return
        mail_from, rcpts, mail_line = None, [], None
        while True:
            line = f.readline(4096)
            if not line:
                return
            cmd = line.rstrip(b"\r\n").decode("utf-8", "replace")
            with self.lock:
                self.commands.append(cmd)
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                if verb == "EHLO" and self.ehlo_keywords is not None:
                    kws = [k for k in self.ehlo_keywords if not (tls and k == "STARTTLS")]
                    if self.auth and tls:
                        kws.append("AUTH PLAIN")
                    lines = ["peer.test"] + kws
                    for i, l in enumerate(lines):
                        send(("250 " if i == len(lines) - 1 else "250-") + l)
                elif verb == "EHLO":
                    send("502 5.5.1 no EHLO here")
                else:
                    send("250 peer.test")
            elif verb == "STARTTLS" and self.break_tls and not tls:
                # no handshake follows: the client's TLS fails. (Bytes sent
                # after the 220 would be a response injection instead,
                # which the client treats as a broken host.)
                send("220 2.0.0 go ahead")
                return
            elif verb == "STARTTLS" and self.tls_ctx and not tls:
                send("220 2.0.0 go ahead")
                c = self.tls_ctx.wrap_socket(c, server_side=True)
                f = c.makefile("rb")
                tls = True
            elif verb == "AUTH" and self.auth and tls:
                import base64
                parts = cmd.split(" ")
                raw = base64.b64decode(parts[2]).split(b"\0") if len(parts) == 3 else []
                u = raw[1].decode() if len(raw) == 3 else None
                pw = raw[2].decode() if len(raw) == 3 else None
                ok = u is not None and self.auth.get(u) == pw
                with self.lock:
                    self.auth_seen.append((u, pw, ok))
                if ok:
                    user = u
                    send("235 2.7.0 authenticated")
                else:
                    send("535 5.7.8 authentication credentials invalid")
            elif verb == "MAIL" and self.auth and user is None:
                send("530 5.7.0 authentication required")
            elif verb == "MAIL":
                mail_line = cmd
                mail_from = cmd[cmd.index("<") + 1:cmd.index(">")]
                rcpts = []
                send("250 2.1.0 ok")
            elif verb == "RCPT":
                rcpt = cmd[cmd.index("<") + 1:cmd.index(">")]
                r = self.rcpt_reply(rcpt)
                if r.startswith("2"):
                    rcpts.append(rcpt)
                if r == "DROP":
                    return
                send(r)
            elif verb == "DATA":
                if not rcpts:
                    send("554 5.5.1 no valid recipients")
                    continue
                send("354 go ahead")
                data = []
                while True:
                    l = f.readline(100000)
                    if not l:
                        return
                    if l == b".\r\n":
                        break
                    if l.startswith(b"."):
                        l = l[1:]
                    data.append(l)
                msg = Message(mail_from, rcpts, b"".join(data), mail_line, tls, user)
                r = self.data_reply(msg)
                if r == "DROP":
                    return
                if r.startswith("2"):
                    with self.lock:
                        self.messages.append(msg)
                send(r)
            elif verb == "BDAT":
                # RFC 3030: "BDAT <n> [LAST]", then exactly n bytes
                parts = cmd.split()
                n = int(parts[1])
                chunk = f.read(n)
                bdat = getattr(self, "_bdat", b"") + chunk
                if len(parts) > 2 and parts[2].upper() == "LAST":
                    self._bdat = b""
                    if not rcpts:
                        send("554 5.5.1 no valid recipients")
                        continue
                    msg = Message(mail_from, rcpts, bdat, mail_line, tls, user)
                    msg.chunked = True
                    r = self.data_reply(msg)
                    if r.startswith("2"):
                        with self.lock:
                            self.messages.append(msg)
                    send(r)
                else:
                    self._bdat = bdat
                    send("250 2.0.0 chunk ok")
            elif verb == "RSET":
                mail_from, rcpts = None, []
                send("250 2.0.0 ok")
            elif verb == "NOOP":
                send("250 2.0.0 ok")
            elif verb == "QUIT":
                send("221 2.0.0 bye")
                return
            else:
                send("500 5.5.2 what")
