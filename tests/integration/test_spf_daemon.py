"""SPF in the daemon: evaluated at MAIL over the resolver, recorded in a
Received-SPF header and in the queue envelope, with the reject/defer knobs,
and never blocking other sessions while lookups are outstanding."""

import socket
import threading
import time

from mwharness import assert_reply, free_port, make_message, queue_id_of, send_message

ZONE = """\
$ORIGIN example.net.
@        IN TXT "v=spf1 ip4:127.0.0.1 -all"
bad      IN TXT "v=spf1 ip4:192.0.2.1 -all"
expl     IN TXT "v=spf1 -all exp=why.example.net"
why      IN TXT "%{i} is not one of %{d}'s servers"
soft     IN TXT "v=spf1 ~all"
helo     IN TXT "v=spf1 a -all"
helo     IN A 127.0.0.1
$TEMPFAIL slow TXT
"""


def start(mw, tmp_path, **conf):
    zone = tmp_path / "spf.zone"
    zone.write_text(ZONE)
    return mw.start(extra_args=("--dns-zone", str(zone)), **conf)


def deliver(mw, sender, helo="client.test", rcpt="user@localhost"):
    with mw.session(helo=helo) as c:
        msg = make_message(f"<{sender or 'null'}.{time.monotonic_ns()}@t>")
        r = send_message(c, sender, [rcpt], msg)
        assert_reply(r, 250, "2.0.0")
        qid = queue_id_of(r)
    files = mw.wait_mail("localhost", "user", 1)
    [d] = [f for f in files if qid in f.received]
    return d


def test_pass_fail_softfail_headers(mw, tmp_path):
    start(mw, tmp_path)
    cases = [
        ("a@example.net", "pass", "mechanism=\"ip4:127.0.0.1\""),
        ("a@bad.example.net", "fail", "mechanism=-all"),
        ("a@soft.example.net", "softfail", "mechanism=~all"),
        ("a@none.example.net", "none", None),
    ]
    for i, (sender, result, detail) in enumerate(cases):
        with mw.session(helo="client.test") as c:
            msg = make_message(f"<spf{i}@t>")
            r = send_message(c, sender, ["user@localhost"], msg)
            assert_reply(r, 250, "2.0.0")
        [d] = [f for f in mw.wait_mail("localhost", "user", i + 1) if f.header("Message-ID") == f"<spf{i}@t>"]
        assert d.received_spf, f"no Received-SPF for {sender}"
        assert d.received_spf.startswith(f"Received-SPF: {result} "), d.received_spf
        assert "client-ip=127.0.0.1;" in d.received_spf
        assert f'envelope-from="{sender}"' in d.received_spf
        assert "identity=mailfrom" in d.received_spf
        if detail:
            assert detail in d.received_spf, d.received_spf
        # the envelope records it too
        mw.wait_log(lambda l: "event=spf" in l and "identity=mailfrom" in l
                    and f"result={result}" in l and sender.split("@")[1] in l, what=f"spf {result} log")


def test_null_sender_uses_helo_identity(mw, tmp_path):
    start(mw, tmp_path)
    d = deliver(mw, "", helo="helo.example.net")
    assert d.received_spf.startswith("Received-SPF: pass "), d.received_spf
    assert "identity=helo" in d.received_spf
    assert "helo=helo.example.net" in d.received_spf


def test_queue_envelope_records_spf(mw, tmp_path):
    start(mw, tmp_path, retry_min=3600)
    # make delivery fail so the queue file stays to be read
    mw.block_mailbox("localhost", "user")
    with mw.session() as c:
        r = send_message(c, "a@bad.example.net", ["user@localhost"], make_message("<env@t>"))
        assert_reply(r, 250, "2.0.0")
        qid = queue_id_of(r)
    qfile = mw.queue_file(qid)
    text = qfile.read_bytes().split(b"\n\n", 1)[0].decode()
    assert "spf fail bad.example.net" in text.splitlines(), text


def test_reject_fail_and_explanation(mw, tmp_path):
    start(mw, tmp_path, spf_reject_fail=True)
    with mw.session() as c:
        assert_reply(c.cmd("MAIL FROM:<a@bad.example.net>"), 550, "5.7.23")
        assert_reply(c.cmd("MAIL FROM:<a@expl.example.net>"), 550, "5.7.23",
                     contains="127.0.0.1 is not one of expl.example.net's servers")
        # softfail and pass are still accepted
        assert_reply(c.cmd("MAIL FROM:<a@soft.example.net>"), 250, "2.1.0")
        assert_reply(c.cmd("RSET"), 250)
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), 250, "2.1.0")
    mw.wait_log(lambda l: "event=mail_rejected" in l and "spf fail" in l, what="reject log")


def test_default_accepts_fail(mw, tmp_path):
    start(mw, tmp_path)
    with mw.session() as c:
        assert_reply(c.cmd("MAIL FROM:<a@bad.example.net>"), 250, "2.1.0")


def test_temperror_defer_knob(mw, tmp_path):
    start(mw, tmp_path, spf_temperror_defer=True)
    with mw.session() as c:
        assert_reply(c.cmd("MAIL FROM:<a@slow.example.net>"), 451, "4.4.3")
        assert_reply(c.cmd("MAIL FROM:<a@example.net>"), 250, "2.1.0")
    mw.stop()
    start(mw, tmp_path)  # default: temperror is recorded, not refused
    with mw.session() as c:
        assert_reply(c.cmd("MAIL FROM:<a@slow.example.net>"), 250, "2.1.0")
    mw.wait_log(lambda l: "event=spf" in l and "result=temperror" in l, what="temperror log")


def test_lookups_do_not_block_other_sessions(mw, tmp_path):
    """A resolver that never answers: the waiting client gets temperror after
    spf_timeout, and meanwhile another session completes a whole message."""
    blackhole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blackhole.bind(("127.0.0.1", 0))
    port = blackhole.getsockname()[1]
    try:
        extra = f'dns {{\n    forwarders = {{ "127.0.0.1@{port}" }}\n    trust_anchor_file = ""\n}}\n'
        mw.settings = mw.make_settings(spf_timeout=4)
        mw.port = free_port()
        mw.data_dir.mkdir(parents=True, exist_ok=True)
        mw.write_config(extra=extra)
        mw._spawn(())
        slow = mw.session()
        result = {}

        def waiting_mail():
            result["reply"] = slow.cmd("MAIL FROM:<a@example.net>")

        t = threading.Thread(target=waiting_mail)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "MAIL was answered although the resolver never replied"
        # another session is served meanwhile
        with mw.session() as other:
            assert_reply(other.cmd("NOOP"), 250, "2.0.0")
            assert_reply(other.cmd("VRFY x"), 252)
        assert t.is_alive(), "the first session should still be waiting"
        t.join(timeout=30)
        assert result["reply"].code == 250, result
        mw.wait_log(lambda l: "event=spf" in l and "result=temperror" in l
                    and "did not finish in time" in l, what="deadline temperror")
        slow.close()
    finally:
        blackhole.close()
