"""The OpenSPF RFC 7208 test suite against `mailwarden spf`.

Reads $MW_TESTDATA/openspf-spf/rfc7208-tests.yml (default
<repo>/../shared/testdata) as it is, with Debian's python3-yaml. For each
scenario it writes one zone master file from `zonedata`, following the
driver conventions of pyspf's testspf.py (see testdata/SOURCES.md):

  * an SPF RR is served as TXT unless the name has a TXT entry (even
    "TXT: NONE" or "TXT: TIMEOUT"); "NONE" itself is no record;
  * a TXT given as a list of strings is one record of those strings
    (concatenated by the resolver); strings are written quoted, with \\DDD
    escapes for every byte outside printable ASCII and for " and \\; a
    string longer than 255 bytes is split;
  * "TIMEOUT" alone makes every query for the name fail temporarily
    (`$TEMPFAIL name`); next to records, it fails the types the name has no
    records of (pyspf raises the timeout only when no record of the asked
    type precedes it); "TXT: TIMEOUT" is `$TEMPFAIL name TXT`;
  * MX [pref, ""] is the null MX (target ".");
  * names are written with \\DDD escapes for bytes outside printable ASCII
    and for the characters special in master files (one owner name of the
    suite holds spaces); the zone backend decodes them to raw names.

Each suite test is one pytest case, named scenario/test, running
`mailwarden spf --ip HOST --sender MAILFROM --helo HELO --dns-zone FILE`
($MAILWARDEN_BIN) and comparing the first output line with the result (any
of them when the suite lists several) and, when the test gives an
explanation, the second line with it ("DEFAULT" in the suite means pyspf's
default explanation, i.e. no exp= text: then there must be no second line).

The older RFC 4408 suite (rfc4408-tests.yml) runs the same way; where RFC
7208 changed an answer the suite lists both results, and every case passes.
"""

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml  # Debian package python3-yaml

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("MW_TESTDATA") or REPO.parent / "shared" / "testdata")
SUITE_DIR = TESTDATA / "openspf-spf"
BIN = os.environ.get("MAILWARDEN_BIN") or str(REPO / "build" / "mailwarden")
QUERY_TYPES = ("A", "AAAA", "MX", "TXT", "PTR")


def slug(text):
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def load_suite(filename):
    """[(case id, scenario index, test dict)] and the scenarios."""
    with open(SUITE_DIR / filename, "rb") as f:
        scenarios = [s for s in yaml.safe_load_all(f) if s]
    cases = []
    for idx, sc in enumerate(scenarios):
        for name, test in sc["tests"].items():
            cases.append((f"{slug(sc['description'])}/{name}", idx, test))
    return cases, scenarios


# --------------------------------------------------------------- zone file

def text_bytes(s):
    """YAML text as bytes: \\xNN escapes in the suite stand for bytes."""
    if isinstance(s, bytes):
        return s
    return bytes(ord(c) for c in s) if all(ord(c) < 256 for c in s) else s.encode()


def quote_string(b):
    out = []
    for c in b:
        if c < 0x20 or c >= 0x7f or c in b'"\\':
            out.append("\\%03d" % c)
        else:
            out.append(chr(c))
    return '"' + "".join(out) + '"'


def txt_rdata(value):
    strings = value if isinstance(value, list) else [value]
    chunks = []
    for s in strings:
        b = text_bytes(s)
        chunks += [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
    return " ".join(quote_string(c) for c in chunks) if chunks else '""'


def zone_name(name):
    """An absolute owner or target name; unusual bytes as \\DDD."""
    name = str(name)
    if name in ("", "."):
        return "."
    out = []
    for c in text_bytes(name):
        if c <= 0x20 or c >= 0x7f or c in b'"();\\@$':
            out.append("\\%03d" % c)
        else:
            out.append(chr(c))
    s = "".join(out)
    return s if s.endswith(".") else s + "."


def zone_records(name, entries):
    """Zone file lines for one name of `zonedata`."""
    owner = zone_name(name)
    lines, types = [], set()
    timeout = txt_seen = False
    spf = []
    for e in entries:
        if e == "TIMEOUT":
            timeout = True
            continue
        ((t, v),) = e.items()
        if t == "TXT":
            txt_seen = True
        if v == "TIMEOUT":
            lines.append(f"$TEMPFAIL {owner} {t}")
            continue
        if v == "NONE":
            continue
        if t == "SPF":
            spf.append(v)
            continue
        types.add(t)
        if t == "TXT":
            rdata = txt_rdata(v)
        elif t == "MX":
            rdata = f"{int(v[0])} {zone_name(v[1])}"
        elif t in ("PTR", "CNAME"):
            rdata = zone_name(v)
        else:
            rdata = str(v)
        lines.append(f"{owner} 300 IN {t} {rdata}")
    if spf and not txt_seen:
        types.add("TXT")
        lines += [f"{owner} 300 IN TXT {txt_rdata(v)}" for v in spf]
    if timeout:
        if not types:
            lines.append(f"$TEMPFAIL {owner}")
        else:
            lines += [f"$TEMPFAIL {owner} {t}" for t in QUERY_TYPES if t not in types]
    return lines


def write_zone(path, zonedata):
    lines = ["; generated from the OpenSPF test suite by test_spf_suite.py"]
    for name, entries in (zonedata or {}).items():
        lines += zone_records(name, entries)
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")


# ------------------------------------------------------------------ runner

def run_case(tmp_path_factory, zones, suite, scenarios, idx, test):
    key = (suite, idx)
    if key not in zones:
        zones[key] = tmp_path_factory.mktemp("spfzone") / f"{slug(suite)}-{idx}.zone"
        write_zone(zones[key], scenarios[idx].get("zonedata"))
    zone = zones[key]
    cmd = [BIN, "spf", "--ip", str(test["host"]), "--sender", str(test.get("mailfrom") or ""),
           "--helo", str(test.get("helo") or ""), "--dns-zone", str(zone), "-v"]
    p = subprocess.run(cmd, capture_output=True, timeout=60)
    out = p.stdout.decode("latin-1").split("\n")
    info = (f"command: {cmd}\nexit {p.returncode}\nstdout: {p.stdout!r}\n"
            f"stderr: {p.stderr.decode('latin-1')}\nzone:\n{zone.read_text('latin-1')}")
    assert p.returncode == 0, info
    want = test["result"] if isinstance(test["result"], list) else [test["result"]]
    assert out[0] in want, f"result {out[0]!r}, want {want}\n{info}"
    if "explanation" in test:
        got = out[1] if len(out) > 2 else None
        expected = None if test["explanation"] == "DEFAULT" else test["explanation"]
        assert got == expected, f"explanation {got!r}, want {expected!r}\n{info}"


CASES_7208, SCENARIOS_7208 = load_suite("rfc7208-tests.yml")
CASES_4408, SCENARIOS_4408 = load_suite("rfc4408-tests.yml")
ZONES = {}


def test_suite_size():
    # SOURCES.md: 203 tests in 16 scenarios; a changed file must be noticed.
    assert (len(CASES_7208), len(SCENARIOS_7208)) == (203, 16)


@pytest.mark.parametrize("idx,test", [(c[1], c[2]) for c in CASES_7208],
                         ids=[c[0] for c in CASES_7208])
def test_rfc7208(tmp_path_factory, idx, test):
    run_case(tmp_path_factory, ZONES, "rfc7208", SCENARIOS_7208, idx, test)


@pytest.mark.parametrize("idx,test", [(c[1], c[2]) for c in CASES_4408],
                         ids=[c[0] for c in CASES_4408])
def test_rfc4408(tmp_path_factory, idx, test):
    run_case(tmp_path_factory, ZONES, "rfc4408", SCENARIOS_4408, idx, test)
