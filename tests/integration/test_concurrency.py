"""Many simultaneous clients."""

import smtplib
import threading

from mwharness import DELIVERY_TIMEOUT, make_message, wait_until

CLIENTS = 100


def test_100_concurrent_clients_all_delivered(mw):
    mw.start(max_connections=1000, max_connections_per_ip=CLIENTS + 50)
    barrier = threading.Barrier(CLIENTS, timeout=120)
    results = {}
    errors = []
    lock = threading.Lock()

    def client(n):
        msgid = f"<crowd.{n}@example.net>"
        try:
            with smtplib.SMTP("127.0.0.1", mw.port, local_hostname=f"client{n}.test", timeout=60) as s:
                barrier.wait()  # all 100 connected (greeted) at once before anyone sends
                s.ehlo()
                s.mail("sender@example.net")
                code, resp = s.rcpt("crowd@localhost")
                assert code == 250, (code, resp)
                code, resp = s.data(make_message(msgid, body=f"client {n}\r\n"))
                with lock:
                    results[msgid] = (code, resp)
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(f"client {n}: {e!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "client threads hung"
    assert not errors, errors[:10]
    refused = {k: v for k, v in results.items() if v[0] != 250}
    assert not refused, list(refused.items())[:10]
    assert len(results) == CLIENTS

    wait_until(lambda: len(mw.mail_files("localhost", "crowd")) >= CLIENTS, DELIVERY_TIMEOUT * 2,
               what=f"{CLIENTS} deliveries")
    got = mw.read_maildir("localhost", "crowd")
    ids = [d.header("Message-ID") for d in got]
    assert sorted(ids) == sorted(results), "delivered Message-IDs differ from the accepted ones"
    for d in got:
        n = d.header("Message-ID")[len("<crowd."):].split("@")[0]
        assert d.message == make_message(f"<crowd.{n}@example.net>", body=f"client {n}\r\n")
        assert d.received_fields()["helo"] == f"client{n}.test"
