"""DMARC aggregate reports (RFC 7489 7.2, appendix C), end to end over a
zone file: the daemon turns the rows of evaluated messages into gzipped
XML reports mailed through its own queue every dmarc_report_interval
seconds; each report validates against the schema in
$MW_TESTDATA/mail-dmarc-perl/rua-schema.xsd (xmllint from libxml2-utils)
and counts what was sent; an external destination is used only with its
_report._dmarc authorization record (7.1), a DNS failure keeps the rows
for the next period, a processing file left by a crash is sent at start,
and `mailwarden dmarc report --dry-run` prints the same XML and changes
nothing.

The schema as shipped does not compile in a namespace-aware validator: it
declares targetNamespace="urn:ietf:params:xml:ns:dmarc-2.0" but no default
namespace, so its own type references (type="DateRangeType") resolve to no
namespace ("References from this schema to components in no namespace are
not allowed"). Upstream (mail-dmarc) only ever validates with a
namespace-ignorant validator. When xmllint refuses the original, the tests
validate against a copy with that one attribute removed, in the test's
temporary directory; the original file is never changed. Everything else
in the schema (element order, required elements, enumerations, the IP
pattern, no <pct> in policy_published) is enforced as written.
"""

import email
import gzip
import os
import re
import shutil
import subprocess
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from mwharness import assert_reply, binary_path, render_config, send_message, wait_until

ZONE = """
good.test.          IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.good.test.   IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@localhost"
reject.test.        IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.reject.test. IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@localhost{extra_rua}"
quar.test.          IN TXT "v=spf1 -all"
_dmarc.quar.test.   IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@localhost"
; localhost is another organization than the policy domains (RFC 7489 7.1)
good.test._report._dmarc.localhost.   IN TXT "v=DMARC1"
reject.test._report._dmarc.localhost. IN TXT "v=DMARC1"
quar.test._report._dmarc.localhost.   IN TXT "v=DMARC1"
{more}
"""

ORG = "Mail & <Warden> \"reports\""
NS_ATTR = ' targetNamespace="urn:ietf:params:xml:ns:dmarc-2.0"'


# --------------------------------------------------------------------- schema

def schema_file():
    d = os.environ.get("MW_TESTDATA")
    if not d:
        pytest.fail("MW_TESTDATA is not set: run the tests through CTest (it points at "
                    "/work/shared/testdata), or set it to the testdata directory")
    p = Path(d) / "mail-dmarc-perl" / "rua-schema.xsd"
    if not p.is_file():
        pytest.fail(f"the aggregate report schema is missing: {p}")
    return p


def xmllint():
    x = shutil.which("xmllint")
    if x is None:
        pytest.fail("xmllint not found: install libxml2-utils (scripts/setup does)")
    return x


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    """The schema xmllint validates with: the original when it compiles,
    else the copy described at the top of this file."""
    orig = schema_file()
    probe = tmp_path_factory.mktemp("xsd") / "probe.xml"
    probe.write_text("<feedback/>")
    r = subprocess.run([xmllint(), "--noout", "--schema", str(orig), str(probe)],
                       capture_output=True, text=True, timeout=60)
    if "failed to compile" not in r.stderr:
        return orig
    text = orig.read_text()
    assert "References from this schema to components in no namespace" in r.stderr, r.stderr
    assert text.count(NS_ATTR) == 1, "the schema changed: revisit the workaround"
    warnings.warn(f"{orig} does not compile in xmllint (targetNamespace without a default "
                  "namespace); validating against a copy without targetNamespace")
    copy = probe.parent / "rua-schema-nons.xsd"
    copy.write_text(text.replace(NS_ATTR, ""))
    return copy


def validate(schema, xml_bytes, path):
    path.write_bytes(xml_bytes)
    r = subprocess.run([xmllint(), "--noout", "--schema", str(schema), str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{path} does not validate:\n{r.stderr}\n{xml_bytes.decode()}"


# --------------------------------------------------------------------- helpers

def start(mw, tmp_path, extra_rua="", more="", **settings):
    zone = tmp_path / "report.zone"
    zone.write_text(ZONE.format(extra_rua=extra_rua, more=more))
    settings.setdefault("dmarc_report_interval", 3)
    settings.setdefault("dmarc_report_org", ORG)
    settings.setdefault("dmarc_reject_bad_from", True)
    return mw.start(extra_args=("--dns-zone", str(zone)), **settings)


def msg(frm, subject):
    return (f"From: {frm}\r\nTo: bob@localhost\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@test>\r\n\r\nbody of {subject}\r\n").encode()


def send(mw, envelope_from, header_from, subject):
    with mw.session() as c:
        return send_message(c, envelope_from, ["bob@localhost"], msg(header_from, subject))


def send_mix(mw):
    """Two passing and one rejected message for reject.test, one passing for
    good.test, one quarantined for quar.test."""
    assert_reply(send(mw, "a@reject.test", "ceo@reject.test", "pass-1"), 250)
    assert_reply(send(mw, "b@reject.test", "ceo@reject.test", "pass-2"), 250)
    assert_reply(send(mw, "x@outside.test", "ceo@reject.test", "forged"), 550, "5.7.1")
    assert_reply(send(mw, "news@good.test", "news@good.test", "good"), 250)
    assert_reply(send(mw, "x@outside.test", "x@quar.test", "quarantined"), 250)


EXPECTED = {
    # (domain, source_ip, disposition, dkim, spf, header_from, envelope_from): count
    ("reject.test", "127.0.0.1", "none", "fail", "pass", "reject.test", "reject.test"): 2,
    ("reject.test", "127.0.0.1", "reject", "fail", "fail", "reject.test", "outside.test"): 1,
    ("good.test", "127.0.0.1", "none", "fail", "pass", "good.test", "good.test"): 1,
    ("quar.test", "127.0.0.1", "quarantine", "fail", "fail", "quar.test", "outside.test"): 1,
}


def report_parts(path):
    """(message, gzip bytes) of one report mail in a Maildir file."""
    m = email.message_from_bytes(path.read_bytes())
    gz = [p for p in m.walk() if p.get_content_type() == "application/gzip"]
    assert len(gz) == 1, f"{path}: {[p.get_content_type() for p in m.walk()]}"
    return m, gz[0]


def records(root):
    out = {}
    domain = root.findtext("policy_published/domain")
    for rec in root.findall("record"):
        key = (domain, rec.findtext("row/source_ip"),
               rec.findtext("row/policy_evaluated/disposition"),
               rec.findtext("row/policy_evaluated/dkim"), rec.findtext("row/policy_evaluated/spf"),
               rec.findtext("identifiers/header_from"), rec.findtext("identifiers/envelope_from"))
        out[key] = out.get(key, 0) + int(rec.findtext("row/count"))
    return out


def add_counts(total, more):
    for k, v in more.items():
        total[k] = total.get(k, 0) + v
    return total


def collect_reports(mw, schema, tmp_path, user="dmarc", want=None):
    """Every report mail in mail/localhost/<user>/new, checked and validated;
    returns (messages, summed records)."""
    msgs, total = [], {}
    for i, f in enumerate(mw.mail_files("localhost", user)):
        m, part = report_parts(f)
        xml = gzip.decompress(part.get_payload(decode=True))
        validate(schema, xml, tmp_path / f"report-{i}.xml")
        root = ET.fromstring(xml)
        msgs.append((m, part, root))
        add_counts(total, records(root))
    return msgs, total


def wait_reports(mw, schema, tmp_path, expected, user="dmarc"):
    def done():
        _, total = collect_reports(mw, schema, tmp_path, user)
        return total == expected or None
    try:
        wait_until(done, 90, interval=0.5, what="aggregate reports with all the rows")
    except AssertionError:
        _, total = collect_reports(mw, schema, tmp_path, user)
        raise AssertionError(f"reports counted {total}, expected {expected}\n{mw.log_tail()}")
    return collect_reports(mw, schema, tmp_path, user)


def dmarc_dir(mw):
    return mw.data_dir / "dmarc"


# --------------------------------------------------------------------- tests

def test_reports_mailed_valid_and_counted(mw, tmp_path, schema):
    start(mw, tmp_path)
    send_mix(mw)
    msgs, total = wait_reports(mw, schema, tmp_path, EXPECTED)
    for m, part, root in msgs:
        domain = root.findtext("policy_published/domain")
        rid = root.findtext("report_metadata/report_id")
        begin = root.findtext("report_metadata/date_range/begin")
        end = root.findtext("report_metadata/date_range/end")
        assert root.tag == "feedback"
        assert root.findtext("report_metadata/org_name") == ORG
        assert root.findtext("report_metadata/email") == "postmaster@mx.test"
        assert int(begin) <= int(end)
        subject = re.sub(r"\s+", " ", m["Subject"])
        assert subject == f"Report Domain: {domain} Submitter: {ORG} Report-ID: <{rid}>", subject
        assert m["To"] == "dmarc@localhost" and m["From"] == "postmaster@mx.test"
        assert m["Message-ID"] and m["Date"] and m["MIME-Version"] == "1.0"
        assert m.get_content_type() == "multipart/mixed"
        assert [p.get_content_type() for p in m.walk()][1] == "text/plain"
        name = f"{re.sub(r'[^A-Za-z0-9.-]', '-', ORG)}!{domain}!{begin}!{end}.xml.gz"
        assert part.get_filename() == name
        assert part["Content-Transfer-Encoding"] == "base64"
        raw = part.get_payload()
        assert all(len(line) <= 76 for line in raw.splitlines()), "base64 not folded at 76"
    # one policy_published per report, as published
    pols = {r.findtext("policy_published/domain"): r.findtext("policy_published/p")
            for _, _, r in msgs}
    assert pols == {"reject.test": "reject", "good.test": "none", "quar.test": "quarantine"}
    # the rows are consumed once the run is over
    mw.wait_event("dmarc_report_run", rows_file="consumed")
    assert not (dmarc_dir(mw) / "rows").exists()
    assert not (dmarc_dir(mw) / "rows.processing").exists()
    evs = mw.events("dmarc_report", domain="reject.test", result="queued")
    assert evs and evs[0]["destination"] == "mailto:dmarc@localhost", evs


def test_dry_run_prints_valid_xml_and_changes_nothing(mw, tmp_path, schema):
    start(mw, tmp_path, dmarc_report_interval=3600)
    send_mix(mw)
    mw.wait_mail("localhost", "bob", 2)
    rows = dmarc_dir(mw) / "rows"
    before = wait_until(lambda: rows.exists() and len(rows.read_text().splitlines()) == 5
                        and rows.read_bytes(), 30, what="5 rows")
    r = subprocess.run([str(binary_path()), "dmarc", "report", "--dry-run", "-c",
                        str(mw.config_path), "--data-dir", str(mw.data_dir)],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert b"5 rows (0 bad) in 3 reports" in r.stderr, r.stderr
    docs = [b"<?xml" + d for d in r.stdout.split(b"<?xml") if d.strip()]
    assert len(docs) == 3
    total = {}
    for i, d in enumerate(docs):
        validate(schema, d, tmp_path / f"dry-{i}.xml")
        add_counts(total, records(ET.fromstring(d)))
    assert total == EXPECTED
    assert rows.read_bytes() == before
    assert not (dmarc_dir(mw) / "rows.processing").exists()
    assert not mw.mail_files("localhost", "dmarc")
    # without --dry-run: a usage error that says who sends the reports
    r = subprocess.run([str(binary_path()), "dmarc", "report", "-c", str(mw.config_path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 64 and "dmarc_report_interval" in r.stderr, r.stderr


def test_dry_run_reports_bad_rows_with_file_and_line(mw, tmp_path, schema):
    d = tmp_path / "data" / "dmarc"
    d.mkdir(parents=True)
    good = ("DMARC1\t1700000000\t2001%3Adb8%3A%3A1\tex.test\t-\tex.test\treject\treject\t100"
            "\tr\ts\treject\tfail\tfail\thelo.test\tsoftfail\tex.test:sel:fail\t-\n")
    (d / "rows").write_text(good + "DMARC1\tgarbage\n" + good.replace("\t100\t", "\t101\t"))
    conf = tmp_path / "c.conf"
    conf.write_text(render_config({"hostname": "mx.test"}, 2525))
    r = subprocess.run([str(binary_path()), "dmarc", "report", "--dry-run", "-c", str(conf),
                        "--data-dir", str(tmp_path / "data")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    rows = str(d / "rows")
    assert f"{rows}:2: not 18 tab-separated fields" in r.stderr, r.stderr
    assert f"{rows}:3: bad number" in r.stderr, r.stderr
    validate(schema, r.stdout.encode(), tmp_path / "one.xml")
    root = ET.fromstring(r.stdout)
    assert root.findtext("record/row/source_ip") == "2001:db8:0:0:0:0:0:1"
    assert root.findtext("record/auth_results/spf/scope") == "helo"
    assert root.findtext("policy_published/aspf") == "s"


@pytest.mark.parametrize("authorized", [False, True])
def test_external_destination_needs_authorization(mw, tmp_path, schema, authorized):
    more = ('reject.test._report._dmarc.other.example. IN TXT "v=DMARC1"'
            if authorized else "")
    start(mw, tmp_path, extra_rua=",mailto:reports@other.example", more=more)
    assert_reply(send(mw, "a@reject.test", "ceo@reject.test", "pass-1"), 250)
    exp = {("reject.test", "127.0.0.1", "none", "fail", "pass", "reject.test", "reject.test"): 1}
    wait_reports(mw, schema, tmp_path, exp)
    ev = mw.wait_event("dmarc_report", destination="mailto:reports@other.example")
    if authorized:
        assert ev["result"] == "queued", ev
        queued = [f for f in mw.queue_files() if b"rcpt reports@other.example" in f.read_bytes()]
        assert len(queued) == 1, mw.queue_files()
        data = queued[0].read_bytes()
        assert b"Subject: Report Domain: reject.test" in data and b"application/gzip" in data
    else:
        assert ev["result"] == "denied", ev
        assert not [f for f in mw.queue_files() if b"other.example" in f.read_bytes()]
    mw.wait_event("dmarc_report_run", rows_file="consumed")


def test_same_organization_needs_no_authorization(mw, tmp_path, schema):
    start(mw, tmp_path, extra_rua=",mailto:agg@reports.reject.test")
    assert_reply(send(mw, "a@reject.test", "ceo@reject.test", "pass-1"), 250)
    ev = mw.wait_event("dmarc_report", destination="mailto:agg@reports.reject.test")
    assert ev["result"] == "queued", ev


def test_temperror_keeps_rows_for_that_destination(mw, tmp_path, schema):
    start(mw, tmp_path, extra_rua=",mailto:reports@other.example",
          more="$TEMPFAIL reject.test._report._dmarc.other.example.")
    assert_reply(send(mw, "a@reject.test", "ceo@reject.test", "pass-1"), 250)
    exp = {("reject.test", "127.0.0.1", "none", "fail", "pass", "reject.test", "reject.test"): 1}
    wait_reports(mw, schema, tmp_path, exp)
    ev = mw.wait_event("dmarc_report", destination="mailto:reports@other.example")
    assert ev["result"] == "temperror", ev
    mw.wait_event("dmarc_report_run", rows_file="consumed")
    # runs go on every 3 s (each one keeps the row back again): stop first,
    # then look at both files, as a run may have been cut short
    mw.stop()
    rows = [line for name in ("rows.processing", "rows") if (dmarc_dir(mw) / name).exists()
            for line in (dmarc_dir(mw) / name).read_text().splitlines()]
    assert len(rows) == 1 and rows[0].split("\t")[17] == "mailto%3Areports@other.example", rows
    # next start: the authorization answers; the kept row goes to that
    # destination only, the local one does not get it twice
    start(mw, tmp_path, extra_rua=",mailto:reports@other.example",
          more='reject.test._report._dmarc.other.example. IN TXT "v=DMARC1"')
    other = "mailto:reports@other.example"
    wait_until(lambda: len(mw.events("dmarc_report", destination=other)) >= 2, 60,
               what="the second report to other.example")
    ev = mw.events("dmarc_report", destination=other)[-1]
    assert ev["result"] == "queued" and ev["records"] == "1", ev
    local = mw.events("dmarc_report", destination="mailto:dmarc@localhost")
    assert len(local) == 1, f"the local destination got the kept row again: {local}"
    assert len(mw.mail_files("localhost", "dmarc")) == 1


def test_leftover_processing_file_is_sent_at_start(mw, tmp_path, schema):
    d = mw.data_dir / "dmarc"
    d.mkdir(parents=True)
    row = ("DMARC1\t1700000000\t192.0.2.7\tquar.test\tquar.test\tquar.test\tquarantine"
           "\tquarantine\t100\tr\tr\tquarantine\tfail\tfail\tquar.test\tfail\t-"
           "\tmailto%3Admarc@localhost\n")
    (d / "rows.processing").write_text(row * 3)
    (d / "rows").write_text(row.replace("192.0.2.7", "192.0.2.8"))
    start(mw, tmp_path, dmarc_report_interval=3600)
    exp = {("quar.test", "192.0.2.7", "quarantine", "fail", "fail", "quar.test", "quar.test"): 3}
    wait_reports(mw, schema, tmp_path, exp)
    mw.wait_event("dmarc_report_run", rows_file="consumed")
    assert not (d / "rows.processing").exists()
    # the rows written before the crash but after the rename wait for the next period
    assert "192.0.2.8" in (d / "rows").read_text()


def signed_spoof(subject, sigs):
    return (f"From: ceo@good.test\r\nTo: bob@localhost\r\nSubject: {subject}\r\n" + sigs +
            f"Message-ID: <{subject}@test>\r\n\r\nbody of {subject}\r\n").encode()


@pytest.mark.parametrize("case", ["selector-256", "twenty-signatures", "long-and-many"])
def test_spoof_cannot_drop_out_of_the_report(mw, tmp_path, schema, case):
    # A spoof of a p=none domain with bogus DKIM-Signature fields the report
    # cannot carry (s= of 256 bytes, more results than a row holds, rows
    # over the line cap) is still counted: the writer leaves out what the
    # report cannot carry, and nothing is dropped as a bad row.
    start(mw, tmp_path)
    sel = "s" * 256
    if case == "selector-256":
        sigs = f"DKIM-Signature: v=1; a=rsa-sha256; d=good.test; s={sel}; h=from; bh=x; b=y\r\n"
    elif case == "twenty-signatures":
        sigs = "".join(f"DKIM-Signature: v=1; a=rsa-sha256; d=d{i}.test; s=s{i}; h=from; bh=x; b=y\r\n"
                       for i in range(20))
    else:
        # each result about 1.5 KiB once percent-encoded: 16 pass the row's line cap
        sigs = "".join(f"DKIM-Signature: v=1; a=rsa-sha256; d={'%' * 240}{i:02}.test; "
                       f"s={',' * 255}; h=from; bh=x; b=y\r\n" for i in range(20))
    assert_reply(send_raw(mw, "x@outside.test", signed_spoof("spoof", sigs)), 250)
    want = {("good.test", "127.0.0.1", "none", "fail", "fail", "good.test", "outside.test"): 1}
    wait_reports(mw, schema, tmp_path, want)
    ev = mw.wait_event("dmarc_report_run", rows_file="consumed")
    assert ev["rows"] == "1" and ev["bad_rows"] == "0", ev
    assert not mw.events("dmarc_row_error")


def send_raw(mw, envelope_from, data):
    with mw.session() as c:
        return send_message(c, envelope_from, ["bob@localhost"], data)


def test_row_that_does_not_parse_is_kept_not_consumed(mw, tmp_path, schema):
    # a row the reader refuses (written by an older version, or damaged)
    # goes to rows.bad, durably, and is logged; the good rows are reported
    d = tmp_path / "mw" / "data" / "dmarc"
    d.mkdir(parents=True)
    good = ("DMARC1\t1700000000\t192.0.2.1\tgood.test\t-\tgood.test\tnone\tnone\t100"
            "\tr\tr\tnone\tfail\tfail\thelo.test\tnone\t-\tmailto%3Admarc@localhost\n")
    bad = good.replace("\t100\t", "\t101\t")
    (d / "rows").write_text(good + bad + "DMARC1\tgarbage\n")
    start(mw, tmp_path)
    want = {("good.test", "192.0.2.1", "none", "fail", "fail", "good.test", ""): 1}
    wait_reports(mw, schema, tmp_path, want)
    ev = mw.wait_event("dmarc_report_run", rows_file="consumed")
    assert ev["bad_rows"] == "2" and ev["bad_rows_file"].endswith("dmarc/rows.bad"), ev
    assert (d / "rows.bad").read_text() == bad + "DMARC1\tgarbage\n"
    assert len(mw.events("dmarc_row_error")) == 2
