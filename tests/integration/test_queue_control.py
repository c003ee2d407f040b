"""`mailwarden queue` against a running daemon, over its control socket:
list and show each recipient's state, flush, retry, hold and release,
remove (with a bounce, or silently), and what happens to requests that
are malformed, unknown, too long, or from another user.
"""

import email
import email.policy
import json
import os
import socket


from mwharness import free_port, send_message, wait_until
from smtppeer import Peer

ZONE = """
example.net.     IN MX 10 mx.example.net.
mx.example.net.  IN A 127.0.0.2
"""


def start(mw, tmp_path, **settings):
    z = tmp_path / "q.zone"
    z.write_text(ZONE)
    peer = Peer(port=free_port())
    peer.rcpt_reply = lambda r: "451 4.2.1 mailbox busy, try later"
    settings.setdefault("relay_networks", ["127.0.0.0/8"])
    settings.setdefault("retry_min", 3600)
    settings.setdefault("retry_max", 3600)
    mw.start(extra_args=("--dns-zone", str(z)), outbound_port=peer.port, **settings)
    return peer


def submit(mw, rcpts, subject="q"):
    data = (f"From: sender@example.org\r\nTo: x@example.net\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.org>\r\n\r\nbody\r\n").encode()
    with mw.session() as c:
        r = send_message(c, "sender@example.org", rcpts, data)
        assert r.code == 250, r
        return r.text.rsplit(" ", 1)[-1]


def listed(mw):
    r = mw.queue_cmd("list", "--json")
    doc = json.loads(r.stdout)
    assert doc["ok"] is True
    return {m["id"]: m for m in doc["messages"]}


def test_list_and_show_each_recipient(mw, tmp_path):
    peer = start(mw, tmp_path)
    try:
        qid = submit(mw, ["user@example.net", "bob@localhost"], "listme")
        mw.wait_event("delivery", queue=qid, status="deferred")
        mw.wait_event("deferred", queue=qid)
        m = listed(mw)[qid]
        assert m["from"] == "sender@example.org"
        assert m["held"] is False and m["next_attempt"] > 0
        rc = {r["address"]: r for r in m["recipients"]}
        assert rc["bob@localhost"]["state"] == "delivered"
        u = rc["user@example.net"]
        assert u["state"] == "deferred"
        assert u["attempts"] == 1
        assert u["code"] == 451 and u["dsn"] == "4.2.1"
        assert u["last_reply"] == "mailbox busy, try later"
        assert u["relay"].startswith("mx.example.net[127.0.0.2]:")
        assert u["next_attempt"] > 0
        # the human form says the same
        out = mw.queue_cmd("show", qid).stdout.decode()
        assert qid in out and "deferred" in out and "mailbox busy, try later" in out
        out = mw.queue_cmd("list").stdout.decode()
        assert "1 message in the queue" in out
    finally:
        peer.stop()


def test_retry_flush_hold_release(mw, tmp_path):
    peer = start(mw, tmp_path)
    try:
        qid = submit(mw, ["user@example.net"], "hold")
        mw.wait_event("deferred", queue=qid)
        sessions = peer.sessions
        # retry: an hour early, at once
        mw.queue_cmd("retry", qid)
        wait_until(lambda: peer.sessions > sessions, 30, what="the retried session")
        mw.wait_event("deferred", queue=qid, attempts=2)
        # hold: a held message is not tried, not even by a flush
        mw.queue_cmd("hold", qid)
        assert listed(mw)[qid]["held"] is True
        r = mw.queue_cmd("retry", qid, check=False)
        assert r.returncode == os.EX_DATAERR and b"held" in r.stderr
        peer.rcpt_reply = lambda r: "250 2.1.5 ok"
        sessions = peer.sessions
        mw.queue_cmd("flush")
        mw.queue_cmd("flush", "example.net")
        assert peer.sessions == sessions and peer.messages == []
        # a hold survives a restart
        mw.stop()
        mw.restart()
        wait_until(lambda: qid in listed(mw) and listed(mw)[qid]["held"], 30, what="still held")
        assert peer.messages == []
        # release: delivered
        mw.queue_cmd("release", qid)
        peer.wait_messages(1)
        mw.wait_event("delivery", queue=qid, status="sent")
        wait_until(lambda: qid not in listed(mw), 30, what="gone from the list")
    finally:
        peer.stop()


def test_remove_bounces_unless_silent(mw, tmp_path):
    peer = start(mw, tmp_path)
    try:
        loud = submit(mw, ["user@example.net"], "loud")
        quiet = submit(mw, ["user@example.net"], "quiet")
        mw.wait_event("deferred", queue=loud)
        mw.wait_event("deferred", queue=quiet)
        mw.queue_cmd("remove", quiet, "--silent")
        mw.queue_cmd("remove", loud)
        mw.wait_event("removed", queue=loud, bounce="yes")
        mw.wait_event("removed", queue=quiet, bounce="no")
        files = wait_until(lambda: mw.mail_files("example.org", "sender"), 30, what="the bounce")
        assert len(files) == 1
        msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.compat32)
        r = msg.get_payload()[1].get_payload()[1]
        assert r["Action"] == "failed" and r["Status"] == "5.0.0"
        assert "removed from the queue by the operator" in r["Diagnostic-Code"]
        assert "Message-ID: <loud@example.org>" in msg.get_payload()[2].get_payload()
        left = listed(mw)
        assert loud not in left and quiet not in left
        r = mw.queue_cmd("remove", loud, check=False)
        assert r.returncode == os.EX_DATAERR and b"no such message" in r.stderr
    finally:
        peer.stop()


def raw(mw, data):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(str(mw.data_dir / "control.sock"))
    s.sendall(data)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
    s.close()
    return json.loads(out)


def test_bad_requests_get_errors_and_the_daemon_stays(mw, tmp_path):
    peer = start(mw, tmp_path)
    try:
        assert raw(mw, b"frobnicate\n") == {"ok": False, "error": raw(mw, b"x\n")["error"]}
        assert "unknown command" in raw(mw, b"frobnicate\n")["error"]
        assert raw(mw, b"A" * 5000)["error"] == "request too long"
        assert raw(mw, b"show ../../etc/passwd\n")["ok"] is False
        assert raw(mw, b"retry\n")["error"] == "a queue id is needed"
        assert raw(mw, b"show 0123456789ABCDEF\n")["error"] == "no such message"
        assert raw(mw, b"hold \xff\xfe\n")["ok"] is False
        assert raw(mw, b"\n")["ok"] is False
        r = mw.queue_cmd("bogus", check=False)
        assert r.returncode == os.EX_USAGE
        assert mw.running()
        assert listed(mw) == {}
    finally:
        peer.stop()


def test_refused_for_another_user(mw, tmp_path):
    peer = start(mw, tmp_path)
    try:
        assert os.stat(mw.data_dir / "control.sock").st_mode & 0o777 == 0o600
        r = mw.queue_cmd("list", user=65534, check=False)
        assert r.returncode == os.EX_UNAVAILABLE
        assert b"Permission denied" in r.stderr
        assert mw.running()
        assert mw.queue_cmd("list").returncode == 0
    finally:
        peer.stop()
