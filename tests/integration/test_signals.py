"""SIGTERM (graceful stop) and SIGHUP (config reload)."""

import signal
import smtplib
import threading

from mwharness import (REPLY_TIMEOUT, ConnectionClosed, assert_reply, make_message, parse_logfmt,
                       queue_id_of, send_message, wait_until)


def test_sigterm_idle_sessions_get_421_exit_0_queue_kept(mw):
    mw.block_mailbox("blocked")
    mw.start(retry_min=3600, retry_max=3600)
    msg_b = make_message("<sigterm-blocked@example.net>")
    msg_u = make_message("<sigterm-user@example.net>")
    with mw.session() as c:
        r = send_message(c, "sender@example.net", ["blocked@localhost"], msg_b)
        assert_reply(r, 250, "2.0.0")
        qid_b = queue_id_of(r)
        assert_reply(send_message(c, "sender@example.net", ["user@localhost"], msg_u), 250, "2.0.0")
    mw.wait_mail("localhost", "user", 1)
    mw.wait_log(lambda l: "event=deferred" in l and f"queue={qid_b}" in l, what="deferral of the blocked message")

    idle = mw.session()                      # idle after EHLO
    busy = mw.session()                      # inside a transaction
    assert busy.cmd("MAIL FROM:<sender@example.net>").code == 250
    assert_reply(busy.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")

    mw.signal(signal.SIGTERM)
    r = idle.reply()                         # unsolicited
    assert r.code == 421 and r.enhanced and r.enhanced.startswith("4."), r
    assert idle.wait_closed(), "idle session not closed after 421"
    try:
        busy.send(b"DATA\r\n")
    except OSError:
        pass
    r = busy.reply()
    assert r.code == 421 and r.enhanced and r.enhanced.startswith("4."), r
    idle.close()
    busy.close()

    assert mw.wait_exit() == 0, f"exit status after SIGTERM:\n{mw.log_tail()}"
    assert mw.queue_files(), "deferred message no longer in the queue after SIGTERM"
    assert mw.mail_files("localhost", "blocked") == []

    mw.unblock_mailbox("blocked")
    mw.restart()
    mw.queue_cmd("flush")   # its next attempt is an hour away: now
    [d] = mw.wait_mail("localhost", "blocked", 1)
    assert d.received_fields()["id"] == qid_b
    assert d.message == msg_b
    assert len(mw.mail_files("localhost", "user")) == 1, "delivered message delivered again after restart"


def test_sigterm_acknowledged_in_flight_message_not_lost(mw):
    mw.start(retry_min=3600, retry_max=3600)
    msg = make_message("<inflight@example.net>", body="x" * 70 + "\r\n")
    c = mw.session()
    assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
    assert_reply(c.cmd("RCPT TO:<user@localhost>"), 250, "2.1.5")
    assert c.cmd("DATA").code == 354
    c.send(msg[:40])
    mw.signal(signal.SIGTERM)
    acked = False
    try:
        c.send(msg[40:] + b".\r\n")
        r = c.reply()
        assert r.code in (250, 421, 451), r
        acked = r.code == 250
    except (ConnectionClosed, OSError):
        pass
    c.close()
    assert mw.wait_exit() == 0
    if acked:  # a 250 must never be lost, whatever happens next
        if not mw.mail_files("localhost", "user"):
            mw.restart()
        [d] = mw.wait_mail("localhost", "user", 1)
        assert d.message == msg


def rcpt_reply(mw, rcpt):
    with mw.session() as c:
        assert c.cmd("MAIL FROM:<sender@example.net>").code == 250
        return c.cmd(f"RCPT TO:<{rcpt}>")


def ehlo_size(mw):
    with mw.connect() as c:
        c.greeting()
        for line in c.ehlo().lines[1:]:
            if line.upper().startswith("SIZE "):
                return int(line.split()[1])
    return None


def test_sighup_good_reload_adds_local_domain(mw):
    mw.start(local_domains=["localhost"], max_message_size=100000)
    assert_reply(rcpt_reply(mw, "u@new.test"), 554, "5.7.1")
    assert ehlo_size(mw) == 100000
    mw.settings["local_domains"] = ["localhost", "new.test"]
    mw.settings["max_message_size"] = 200000
    mw.write_config()
    mw.signal(signal.SIGHUP)
    wait_until(lambda: rcpt_reply(mw, "u@new.test").code == 250, REPLY_TIMEOUT, interval=0.2,
               what="RCPT to the newly added domain accepted after SIGHUP")
    assert ehlo_size(mw) == 200000, "max_message_size not reloaded"
    assert_reply(rcpt_reply(mw, "u@new.test"), 250, "2.1.5")
    assert_reply(rcpt_reply(mw, "u@localhost"), 250, "2.1.5")
    msg = make_message("<reloaded@example.net>")
    with mw.session() as c:
        assert_reply(send_message(c, "sender@example.net", ["u@new.test"], msg), 250, "2.0.0")
    [d] = mw.wait_mail("new.test", "u", 1)
    assert d.message == msg
    assert mw.running()


def test_sighup_bad_reload_keeps_old_config(mw):
    mw.start(local_domains=["localhost"])
    good_text = mw.config_path.read_text()
    bad = ('hostname = "changed.test"\n'
           'local_domains = { "localhost", "new.test" }\n'
           'no_such_option = 1\n'
           + "\n".join(l for l in good_text.splitlines() if not l.startswith(("hostname", "local_domains")))
           + "\n")
    mw.write_config(text=bad)
    mw.signal(signal.SIGHUP)
    line = mw.wait_log(lambda l: "event=reload" in l and "level=error" in l,
                       what="level=error event=reload log line")
    fields = parse_logfmt(line)
    assert fields.get("level") == "error" and fields.get("event") == "reload", line
    assert f"{mw.config_path}:3" in line, f"reload error lacks file:line ({mw.config_path}:3): {line}"

    assert mw.running(), "daemon died on a bad reload"
    with mw.connect() as c:
        g = c.greeting()
        assert g.code == 220 and "mx.test" in g.lines[0] and "changed.test" not in g.text, g
    assert_reply(rcpt_reply(mw, "u@localhost"), 250, "2.1.5")
    assert_reply(rcpt_reply(mw, "u@new.test"), 554, "5.7.1")
    msg = make_message("<after-bad-reload@example.net>")
    with mw.session() as c:
        assert_reply(send_message(c, "sender@example.net", ["u@localhost"], msg), 250, "2.0.0")
    [d] = mw.wait_mail("localhost", "u", 1)
    assert d.message == msg

    # a later good reload still works
    mw.settings["local_domains"] = ["localhost", "new.test"]
    mw.write_config()
    mw.signal(signal.SIGHUP)
    wait_until(lambda: rcpt_reply(mw, "u@new.test").code == 250, REPLY_TIMEOUT, interval=0.2,
               what="good reload after a bad one")


def test_sigterm_under_load_loses_nothing(mw):
    """SIGTERM while 10 clients are sending: every 250 is delivered (after a
    restart if need be), exactly once, and the daemon exits 0."""
    mw.start(max_connections_per_ip=50, retry_min=3600, retry_max=3600)
    acked = []
    lock = threading.Lock()
    some = threading.Event()
    stop = threading.Event()

    def sender(t):
        try:
            s = smtplib.SMTP("127.0.0.1", mw.port, local_hostname="load.test", timeout=60)
            s.ehlo()
            for i in range(1000):
                if stop.is_set():
                    break
                msgid = f"<term.{t}.{i}@example.net>"
                s.mail("sender@example.net")
                s.rcpt("load@localhost")
                code, _ = s.data(make_message(msgid))
                if code != 250:
                    break
                with lock:
                    acked.append(msgid)
                    if len(acked) >= 100:
                        some.set()
        except (smtplib.SMTPException, OSError):
            pass

    threads = [threading.Thread(target=sender, args=(t,), daemon=True) for t in range(10)]
    for t in threads:
        t.start()
    some.wait(timeout=60)
    mw.signal(signal.SIGTERM)
    rc = mw.wait_exit()
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert rc == 0, f"exit status {rc} after SIGTERM under load"
    with lock:
        acknowledged = list(acked)
    assert len(acknowledged) >= 100

    mw.restart()
    mw.wait_mail("localhost", "load", len(acknowledged))
    ids = [d.header("Message-ID") for d in mw.read_maildir("localhost", "load")]
    missing = set(acknowledged) - set(ids)
    assert not missing, f"{len(missing)} acknowledged messages lost after SIGTERM: {sorted(missing)[:10]}"
    dups = sorted({i for i in ids if ids.count(i) > 1})
    assert not dups, f"duplicate deliveries after a clean stop: {dups[:10]}"
