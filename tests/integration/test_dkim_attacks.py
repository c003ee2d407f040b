"""DKIM under attack, end to end: a message built to make verification
expensive, junk signature fields that would use up the signature slots, key
servers that fail, answer slowly or not at all, and a q= list with an
unknown method. victim.test publishes p=reject and signs its mail;
attacker.example has no DMARC record.

The slow and silent key servers are a stub DNS server of this file's own
on loopback (stdlib sockets), behind the daemon's libunbound resolver: it
answers every _domainkey question after a delay (or never), and everything
else at once with NXDOMAIN.
"""

import base64
import hashlib
import re
import socket
import struct
import subprocess
import threading
import time

import pytest

from mwharness import assert_reply, binary_path, free_port, send_message

ZONE = """
_dmarc.victim.test.   IN TXT "v=DMARC1; p=reject"
_dmarc.relaxed.test.  IN TXT "v=DMARC1; p=none"
$TEMPFAIL down._domainkey.victim.test.
$TEMPFAIL down._domainkey.relaxed.test.
"""


def keygen(tmp_path, domain="victim.test", selector="s0"):
    key = tmp_path / f"{domain}-{selector}.key"
    out = subprocess.run([str(binary_path()), "dkim", "keygen", "--domain", domain, "--selector",
                          selector, "--algo", "ed25519", "--out", str(key)],
                         capture_output=True, check=True)
    return key, out.stdout.decode()


def sign(key, msg, domain="victim.test", selector="s0"):
    return subprocess.run([str(binary_path()), "dkim", "sign", "--domain", domain, "--selector",
                           selector, "--key", str(key)],
                          input=msg, capture_output=True, check=True).stdout


def message(frm="CEO <ceo@victim.test>", subject="signed", extra=b""):
    return (f"From: {frm}\r\nTo: bob@localhost\r\nSubject: {subject}\r\n".encode() + extra +
            f"Message-ID: <{subject}@victim.test>\r\n\r\nthe body of {subject}\r\n".encode())


def start(mw, tmp_path, records="", **settings):
    zone = tmp_path / "dkim-attacks.zone"
    zone.write_text(ZONE + records)
    settings.setdefault("dmarc_reject_bad_from", True)
    return mw.start(extra_args=("--dns-zone", str(zone)), **settings)


def send(mw, data, sender="ceo@victim.test"):
    with mw.session() as c:
        return send_message(c, sender, ["bob@localhost"], data)


# ---------------------------------------------------------------- junk and q=

def test_junk_fields_do_not_push_out_the_real_signature(mw, tmp_path):
    key, rec = keygen(tmp_path)
    start(mw, tmp_path, rec)
    signed = sign(key, message(subject="junk"))
    junk = b"DKIM-Signature: x\r\n" * 16
    unaligned = b"".join(b"DKIM-Signature: v=1; a=rsa-sha256; d=attacker%d.example; s=s; "
                         b"h=from; bh=x; b=x\r\n" % i for i in range(16))
    assert_reply(send(mw, junk + unaligned + signed), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert re.search(r"dkim=pass[^;]*header\.d=victim\.test", d.authres), d.authres
    assert "dmarc=pass" in d.authres, d.authres
    assert "17 more DKIM-Signature fields not evaluated" in d.authres, d.authres


def test_unknown_query_method_is_ignored(mw, tmp_path):
    # q=dns/txt:foo/bar names dns/txt among others: the signature is checked
    # (and fails here: q= was added after signing), not refused for q=
    key, rec = keygen(tmp_path)
    start(mw, tmp_path, rec)
    signed = sign(key, message(frm="x@attacker.example", subject="q"))
    signed = signed.replace(b"d=victim.test;", b"q=dns/txt:foo/bar; d=victim.test;", 1)
    assert_reply(send(mw, signed, sender="x@attacker.example"), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert re.search(r"dkim=fail \(signature did not verify\)", d.authres), d.authres


# ---------------------------------------------------------------- temperror

def test_temporary_key_failure_defers_rather_than_rejects(mw, tmp_path):
    # a correctly signed message whose key lookup fails temporarily: DMARC
    # temperror, 451 4.7.5, the sender retries; never 550
    key, _ = keygen(tmp_path, selector="down")
    start(mw, tmp_path)
    r = send(mw, sign(key, message(subject="down"), selector="down"))
    assert_reply(r, 451, "4.7.5")
    ev = mw.wait_event("dmarc", from_domain="victim.test")
    assert ev["result"] == "temperror" and ev["action"] == "defer", ev
    # under p=none the message is accepted and says temperror
    key2, _ = keygen(tmp_path, domain="relaxed.test", selector="down")
    msg = sign(key2, message(frm="a@relaxed.test", subject="relaxed"), domain="relaxed.test",
               selector="down")
    assert_reply(send(mw, msg, sender="a@relaxed.test"), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "bob", 1)
    assert "dkim=temperror" in d.authres and "dmarc=temperror" in d.authres, d.authres


# ---------------------------------------------------------------- cost

def test_expensive_header_is_verified_and_accepted(mw, tmp_path):
    # 16 junk signatures, each h= naming 127 absent fields, over 400,000
    # short header lines (about 6 MB): verification is linear in the message
    # and runs off the event loop (the latency is measured in bench/dkim-stall)
    start(mw, tmp_path)
    names = ":".join(f"x-absent-{i}" for i in range(126)) + ":from"
    # the right body hash, so that each signature gets as far as its h= fields
    bh = base64.b64encode(hashlib.sha256(b"the body of big\r\n").digest()).decode()
    sigs = b"".join(f"DKIM-Signature: v=1; a=rsa-sha256; d=junk{i}.example; s=s; h={names}; "
                    f"bh={bh}; b=AAAA\r\n".encode() for i in range(16))
    lines = b"".join(b"X-Line: %08d\r\n" % i for i in range(400000))
    data = message(frm="x@attacker.example", subject="big", extra=sigs + lines)
    assert len(data) > 6_000_000
    with mw.session() as c, mw.session() as other:
        assert c.cmd("MAIL FROM:<x@attacker.example>").code == 250
        assert c.cmd("RCPT TO:<bob@localhost>").code == 250
        assert c.cmd("DATA").code == 354
        c.send(data + b".\r\n")
        assert_reply(other.cmd("NOOP"), 250, "2.0.0")
        assert_reply(c.reply(), 250, "2.0.0")
    evs = mw.events("dkim")
    assert len(evs) == 16 and all(e["result"] == "permerror" for e in evs), evs[:3]
    assert all(e["reason"] == "no key for signature" for e in evs), evs[:3]


# ---------------------------------------------------------------- slow key servers

class StubDNS:
    """UDP DNS on loopback: TXT for *._domainkey.* from `keys` after
    `delay` seconds (None: never); at once, an empty answer (NOERROR) for
    a name that has key names below it, NXDOMAIN for everything else. (An
    NXDOMAIN for attacker.example would say that nothing exists below it,
    RFC 8020, and a resolver may then refuse the keys.)"""

    def __init__(self, keys, delay):
        self.keys, self.delay = keys, delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.asked = []
        self.stopping = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.sock.settimeout(0.2)
        while not self.stopping:
            try:
                q, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.handle(q, addr)

    def handle(self, q, addr):
        qid, _flags, qd = struct.unpack("!HHH", q[:6])
        if qd != 1:
            return
        i, labels = 12, []
        while q[i] != 0:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype, = struct.unpack("!H", q[i + 1:i + 3])
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        if "_domainkey" in labels and qtype == 16:
            self.asked.append((time.monotonic(), name))
            txt = self.keys.get(name)
            if self.delay is None or txt is None:
                return   # a silent key server
            body = b"".join(bytes([len(txt[k:k + 255])]) + txt[k:k + 255].encode()
                            for k in range(0, len(txt), 255))
            answer = struct.pack("!HHHIH", 0xC00C, 16, 1, 60, len(body)) + body
            reply = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + answer
            threading.Timer(self.delay, self.sock.sendto, (reply, addr)).start()
        elif any(k.endswith("." + name) for k in self.keys):
            self.sock.sendto(struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question, addr)
        else:
            self.sock.sendto(struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question, addr)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.sock.close()


def start_with_stub(mw, stub, **settings):
    extra = (f'dns {{\n    forwarders = {{ "127.0.0.1@{stub.port}" }}\n'
             f'    trust_anchor_file = ""\n}}\n')
    mw.settings = mw.make_settings(dmarc_reject_bad_from=True, **settings)
    mw.port = free_port()
    mw.data_dir.mkdir(parents=True, exist_ok=True)
    mw.write_config(extra=extra)
    mw._spawn(())


def sixteen_signatures(tmp_path):
    key, rec = keygen(tmp_path)
    txt = re.search(r'IN TXT "(.*)"', rec).group(1)
    msg = message(frm="x@attacker.example", subject="sixteen")
    for i in range(16):
        msg = sign(key, msg, domain="attacker.example", selector=f"s{i}")
    return msg, {f"s{i}._domainkey.attacker.example": txt for i in range(16)}


def test_keys_are_asked_for_at_once(mw, tmp_path):
    # 16 key servers that each take 2 s: asked together, all answer within
    # dkim_timeout (20 s); one after the other they would need 32 s. (Each
    # answer comes 2 s after its query, and the resolver drops an answer to
    # a query it has already sent again: how many seconds the whole takes
    # depends on its retransmission timer, which the other lookups of the
    # session train; 20 s leaves room for that and none for 16 in a row.)
    msg, keys = sixteen_signatures(tmp_path)
    stub = StubDNS(keys, delay=2)
    try:
        start_with_stub(mw, stub, dkim_timeout=20)
        t0 = time.monotonic()
        assert_reply(send(mw, msg, sender="x@attacker.example"), 250, "2.0.0")
        print(f"16 keys answering in 2 s each: reply after {time.monotonic() - t0:.1f} s")
        firsts = {}
        for t, n in stub.asked:          # unbound may ask again while it waits
            firsts.setdefault(n, t)
        print("first asks:", sorted(round(t - min(firsts.values()), 2) for t in firsts.values()))
        assert len(firsts) == 16
        assert max(firsts.values()) - min(firsts.values()) < 1.5, "the keys were not asked together"
        [d] = mw.wait_mail("localhost", "bob", 1)
        assert len(re.findall(r"dkim=pass", d.authres)) == 16, d.authres
    finally:
        stub.close()


def test_silent_key_servers_end_at_dkim_timeout(mw, tmp_path):
    msg, keys = sixteen_signatures(tmp_path)
    stub = StubDNS(keys, delay=None)
    try:
        start_with_stub(mw, stub, dkim_timeout=3)
        t0 = time.monotonic()
        assert_reply(send(mw, msg, sender="x@attacker.example"), 250, "2.0.0")
        print(f"16 silent key servers: reply after {time.monotonic() - t0:.1f} s")
        [d] = mw.wait_mail("localhost", "bob", 1)
        assert len(re.findall(r"dkim=temperror \(key lookup did not finish in time\)",
                              d.authres)) == 16, d.authres
        mw.wait_event("dkim_timeout")
    finally:
        stub.close()
