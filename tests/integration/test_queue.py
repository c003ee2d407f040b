"""Deferred delivery, retries and restart: nothing queued is dropped."""

import pytest

from mwharness import assert_reply, make_message, queue_id_of, send_message, wait_until

N = 5


def _send_blocked(mw, n=N):
    sent = {}
    with mw.session() as c:
        for i in range(n):
            msg = make_message(f"<deferred.{i}@example.net>", body=f"deferred {i}\r\n")
            r = send_message(c, "sender@example.net", ["blocked@localhost"], msg)
            assert_reply(r, 250, "2.0.0")
            sent[queue_id_of(r)] = msg
        r = send_message(c, "sender@example.net", ["user@localhost"], make_message("<free@example.net>"))
        assert_reply(r, 250, "2.0.0")
    return sent


def _wait_deferred(mw, qids):
    for qid in qids:
        mw.wait_log(lambda l, q=qid: "event=deferred" in l and f"queue={q}" in l,
                    what=f"event=deferred for {qid}")


def _assert_all_delivered(mw, sent):
    got = mw.wait_mail("localhost", "blocked", len(sent))
    assert len(got) == len(sent), [d.path for d in got]
    by_id = {d.received_fields()["id"]: d for d in got}
    assert set(by_id) == set(sent)
    for qid, msg in sent.items():
        assert by_id[qid].message == msg
        assert by_id[qid].delivered_to == "blocked@localhost"


def test_deferred_then_retried_after_fix(mw):
    mw.block_mailbox("blocked")
    mw.start(retry_min=1, retry_max=2)
    sent = _send_blocked(mw)
    mw.wait_mail("localhost", "user", 1)  # other mailboxes are unaffected
    _wait_deferred(mw, sent)
    assert mw.queue_files(), "deferred messages are not in the queue"
    assert mw.mail_files("localhost", "blocked") == []
    mw.unblock_mailbox("blocked")
    _assert_all_delivered(mw, sent)   # by the retry timer, no restart
    assert mw.running()


@pytest.mark.parametrize("how", ["sigterm", "kill9"])
def test_deferred_delivered_after_restart(mw, how):
    mw.block_mailbox("blocked")
    mw.start(retry_min=3600, retry_max=3600)  # no retry within this test: only a restart delivers
    sent = _send_blocked(mw)
    mw.wait_mail("localhost", "user", 1)
    _wait_deferred(mw, sent)
    if how == "sigterm":
        assert mw.stop() == 0
    else:
        mw.kill9()
    assert mw.queue_files()
    mw.unblock_mailbox("blocked")
    mw.restart()
    # a restart keeps each recipient's next attempt time; the operator
    # who fixed the mailbox asks for the retry now
    mw.queue_cmd("flush")
    _assert_all_delivered(mw, sent)
    if how == "sigterm":  # after a crash a duplicate is allowed, after a clean stop not
        assert len(mw.mail_files("localhost", "user")) == 1


def test_delivered_message_not_redelivered_after_restart(mw):
    mw.start()
    first = make_message("<first@example.net>")
    with mw.session() as c:
        r = send_message(c, "sender@example.net", ["user@localhost"], first)
        qid = queue_id_of(r)
    mw.wait_mail("localhost", "user", 1)
    mw.wait_log(lambda l: "event=delivered" in l and f"queue={qid}" in l, what="event=delivered")
    assert mw.stop() == 0
    mw.restart()
    second = make_message("<second@example.net>")
    with mw.session() as c:
        assert_reply(send_message(c, "sender@example.net", ["other@localhost"], second), 250, "2.0.0")
    mw.wait_mail("localhost", "other", 1)
    assert [d.message for d in mw.read_maildir("localhost", "user")] == [first]


@pytest.mark.parametrize("how", ["retry", "restart"])
def test_partly_delivered_message_not_delivered_twice(mw, how):
    """The recipients of an attempt that failed for another recipient keep
    their one copy, when the timer retries and when a restart does."""
    mw.block_mailbox("blocked")
    if how == "retry":
        mw.start(retry_min=1, retry_max=2)
    else:
        mw.start(retry_min=3600, retry_max=3600)
    msg = make_message("<partly@example.net>")
    with mw.session() as c:
        r = send_message(c, "sender@example.net", ["user@localhost", "blocked@localhost"], msg)
        assert_reply(r, 250, "2.0.0")
        qid = queue_id_of(r)
    mw.wait_mail("localhost", "user", 1)
    _wait_deferred(mw, [qid])
    if how == "retry":
        # Let the timer retry at least once while the mailbox is still blocked.
        mw.wait_log(lambda l: "event=deferred" in l and f"queue={qid}" in l and "attempts=2" in l,
                    what="a second deferred attempt")
    mw.unblock_mailbox("blocked")
    if how == "restart":
        assert mw.stop() == 0
        mw.restart()
        mw.queue_cmd("retry", qid)
    _assert_all_delivered(mw, {qid: msg})
    mw.wait_log(lambda l: "event=delivered" in l and f"queue={qid}" in l and "blocked@" in l,
                what="delivery to blocked@localhost")
    wait_until(lambda: mw.queue_files() == [], 10, what="the queue record removed")
    assert [d.message for d in mw.read_maildir("localhost", "user")] == [msg]
