"""DNSSEC validation end to end: `mailwarden check dns` against a real
authoritative server.

An NSD (Debian package `nsd`) runs in the foreground on a free loopback
port in a private directory and serves three zones:

  signed.example    signed with ldns-signzone (package `ldnsutils`); its
                    DS is given to mailwarden as a trust anchor. One record,
                    bad.signed.example A, is altered after signing, so its
                    RRSIG no longer matches.
  expired.example   signed with signatures that expired in 2020; its DNSKEY
                    is given as a trust anchor.
  insecure.example  not signed, no trust anchor.

mailwarden forwards to that NSD (--dns-forwarder 127.0.0.1@PORT) with no
root anchor (--trust-anchor-file none), so what is validated is exactly
what the test anchors. The same names are then answered from the unsigned
zone text by the zone-file backend (--dns-zone), through the same printing
code, and must agree (except for DNSSEC state).

The zones are under "example." because libunbound answers the RFC 6761
names it knows (test., invalid., localhost., onion.) itself, NXDOMAIN,
without asking any forwarder.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from mwharness import binary_path, free_port, wait_until

TOOL_TIMEOUT = 60
NSD_START_TIMEOUT = 30

SIGNED = """\
$ORIGIN signed.example.
$TTL 3600
@       IN SOA ns1 hostmaster ( 2024010101 3600 900 604800 300 )
        IN NS ns1
        IN MX 10 mx
        IN TXT "v=spf1 ip4:192.0.2.0/24" " -all"
ns1     IN A 192.0.2.53
mx      IN A 192.0.2.25
mx      IN AAAA 2001:db8::25
www     IN CNAME mx
bad     IN A 192.0.2.66
_25._tcp.mx IN TLSA 3 1 1 ( 8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1 )
"""

EXPIRED = """\
$ORIGIN expired.example.
$TTL 3600
@       IN SOA ns1 hostmaster ( 2024010101 3600 900 604800 300 )
        IN NS ns1
        IN A 192.0.2.77
ns1     IN A 192.0.2.53
"""

INSECURE = """\
$ORIGIN insecure.example.
$TTL 3600
@       IN SOA ns1 hostmaster ( 2024010101 3600 900 604800 300 )
        IN NS ns1
        IN MX 5 mail
ns1     IN A 192.0.2.53
mail    IN A 192.0.2.88
"""


def need_tool(name, package):
    for d in ("/usr/sbin", "/usr/bin"):
        p = Path(d) / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    found = shutil.which(name)
    if found:
        return found
    raise AssertionError(f"required tool {name} is missing: install the Debian package "
                         f"'{package}' (scripts/setup installs it for CI)")


def run(args, cwd=None, timeout=TOOL_TIMEOUT):
    r = subprocess.run([str(a) for a in args], cwd=cwd, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"command failed ({r.returncode}): {' '.join(map(str, args))}\n"
                             f"{r.stdout.decode(errors='replace')}{r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def keygen(workdir, zone):
    """A KSK for zone; returns the key's base name (K<zone>.+013+<id>)."""
    return run([need_tool("ldns-keygen", "ldnsutils"), "-a", "ECDSAP256SHA256", "-k", zone],
               cwd=workdir).strip()


def rr_line(path):
    """The one RR in a .ds/.key file, as one line (comments dropped)."""
    lines = [ln.split(";")[0].strip() for ln in Path(path).read_text().splitlines()]
    lines = [ln for ln in lines if ln]
    assert len(lines) == 1, lines
    return " ".join(lines[0].split())


def dns_probe(port, qname="signed.example"):
    """True when something answers a UDP DNS query on 127.0.0.1:port."""
    q = struct.pack(">HHHHHH", 0x4d57, 0, 1, 0, 0, 0)
    q += b"".join(bytes([len(l)]) + l.encode() for l in qname.split(".")) + b"\0"
    q += struct.pack(">HH", 6, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        try:
            s.sendto(q, ("127.0.0.1", port))
            data, _ = s.recvfrom(4096)
        except OSError:
            return False
    return len(data) >= 12 and data[:2] == q[:2]


class Nsd:
    def __init__(self, workdir):
        self.dir = Path(workdir)
        self.port = free_port()
        self.proc = None

    def write_conf(self, zones):
        d = self.dir
        conf = [
            "server:",
            f"    ip-address: 127.0.0.1@{self.port}",
            f"    port: {self.port}",
            "    do-ip6: no",
            '    username: ""',
            '    chroot: ""',
            f'    zonesdir: "{d}"',
            f'    pidfile: "{d}/nsd.pid"',
            '    database: ""',
            f'    zonelistfile: "{d}/zone.list"',
            f'    xfrdfile: "{d}/xfrd.state"',
            f'    xfrdir: "{d}"',
            f'    logfile: "{d}/nsd.log"',
            "    server-count: 1",
            "    verbosity: 1",
            "remote-control:",
            "    control-enable: no",
        ]
        for name, file in zones:
            conf += ["zone:", f"    name: {name}", f'    zonefile: "{file}"']
        self.conf = d / "nsd.conf"
        self.conf.write_text("\n".join(conf) + "\n")
        run([need_tool("nsd-checkconf", "nsd"), str(self.conf)])

    def start(self):
        self.proc = subprocess.Popen([need_tool("nsd", "nsd"), "-d", "-c", str(self.conf)],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + NSD_START_TIMEOUT
        while not dns_probe(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nsd did not start:\n{self.log()}")
            time.sleep(0.1)

    def log(self):
        text = ""
        if self.proc is not None and self.proc.stdout is not None and self.proc.poll() is not None:
            text += self.proc.stdout.read().decode(errors="replace")
        logfile = self.dir / "nsd.log"
        if logfile.exists():
            text += logfile.read_text(errors="replace")
        return text

    def stop(self):
        if self.proc is None:
            return
        # SIGTERM to the main process, which stops its children (xfrd,
        # servers) itself; SIGKILL to the whole group only as a last resort.
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        # A server child may still be finishing; give it a moment, then make
        # sure nothing of this NSD is left.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Keys, signed zones and a running NSD; torn down after the module."""
    d = tmp_path_factory.mktemp("dnssec")
    signzone = need_tool("ldns-signzone", "ldnsutils")
    (d / "signed.example.zone").write_text(SIGNED)
    (d / "expired.example.zone").write_text(EXPIRED)
    (d / "insecure.example.zone").write_text(INSECURE)

    signed_key = keygen(d, "signed.example")
    run([signzone, "-f", "signed.example.zone.signed", "signed.example.zone", signed_key], cwd=d)
    # Alter one signed record: its RRSIG no longer matches.
    text = (d / "signed.example.zone.signed").read_text()
    assert text.count("192.0.2.66") == 1, text
    (d / "signed.example.zone.signed").write_text(text.replace("192.0.2.66", "192.0.2.67"))
    # A key that signed nothing: anchoring it must make signed.example bogus.
    unused_key = keygen(d, "signed.example")

    expired_key = keygen(d, "expired.example")
    run([signzone, "-i", "20190101000000", "-e", "20200101000000", "-f",
         "expired.example.zone.signed", "expired.example.zone", expired_key], cwd=d)

    nsd = Nsd(d)
    nsd.write_conf([("signed.example", "signed.example.zone.signed"),
                    ("expired.example", "expired.example.zone.signed"),
                    ("insecure.example", "insecure.example.zone")])
    # All three zones' unsigned text in one file, for the zone-file backend.
    (d / "all.zone").write_text(SIGNED + EXPIRED + INSECURE)
    nsd.start()
    try:
        yield {
            "dir": d,
            "port": nsd.port,
            "anchors": [rr_line(d / f"{signed_key}.ds"), rr_line(d / f"{expired_key}.key")],
            "wrong_anchor": rr_line(d / f"{unused_key}.ds"),
            "nsd": nsd,
        }
    finally:
        nsd.stop()


def check(*args):
    bin_ = binary_path()
    assert bin_.exists(), f"mailwarden binary not found at {bin_}"
    r = subprocess.run([str(bin_), "check", "dns", *map(str, args)], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def resolve(world, name, rtype, anchors=None):
    """`check dns` through the unbound backend: (first line, record lines)."""
    args = [name, rtype, "--dns-forwarder", f"127.0.0.1@{world['port']}",
            "--trust-anchor-file", "none"]
    for a in world["anchors"] if anchors is None else anchors:
        args += ["--trust-anchor", a]
    rc, out, err = check(*args)
    assert rc == 0, f"exit {rc}\n{out}{err}\nnsd log:\n{world['nsd'].log()}"
    lines = out.splitlines()
    assert lines, err
    return lines[0], [zone_ttl(rec) for rec in lines[1:]]


def zone_ttl(rec):
    """A record line with its TTL put back to the zone's 3600: libunbound
    counts a cached record's TTL down, and a slow run may see 3599."""
    f = rec.split(" ", 2)
    assert len(f) == 3 and 3000 <= int(f[1]) <= 3600, rec
    return f"{f[0]} 3600 {f[2]}"


def from_zone(world, name, rtype):
    rc, out, err = check(name, rtype, "--dns-zone", world["dir"] / "all.zone")
    assert rc == 0, f"exit {rc}\n{out}{err}"
    lines = out.splitlines()
    return lines[0], lines[1:]


def test_signed_zone_with_anchor_is_secure(world):
    head, recs = resolve(world, "mx.signed.example", "A")
    assert head == "status=ok dnssec=secure"
    assert recs == ["mx.signed.example. 3600 IN A 192.0.2.25"]


@pytest.mark.parametrize("name,rtype,expect", [
    ("signed.example", "MX", ["signed.example. 3600 IN MX 10 mx.signed.example."]),
    ("signed.example", "TXT", ['signed.example. 3600 IN TXT "v=spf1 ip4:192.0.2.0/24 -all"']),
    ("mx.signed.example", "AAAA", ["mx.signed.example. 3600 IN AAAA 2001:db8::25"]),
    ("www.signed.example", "A", ["www.signed.example. 3600 IN A 192.0.2.25"]),   # via the CNAME
    ("www.signed.example", "CNAME", ["www.signed.example. 3600 IN CNAME mx.signed.example."]),
    ("_25._tcp.mx.signed.example", "TLSA",
     ["_25._tcp.mx.signed.example. 3600 IN TLSA 3 1 1 "
      "8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1"]),
])
def test_secure_answers_match_the_zone_file_backend(world, name, rtype, expect):
    head, recs = resolve(world, name, rtype)
    assert head == "status=ok dnssec=secure"
    assert recs == expect
    zhead, zrecs = from_zone(world, name, rtype)
    assert zhead == "status=ok dnssec=insecure"
    assert zrecs == expect


@pytest.mark.parametrize("name,rtype,status", [
    ("nope.signed.example", "A", "nxdomain"),
    ("mx.signed.example", "MX", "nodata"),
    ("_tcp.mx.signed.example", "TXT", "nodata"),      # an empty non-terminal
])
def test_denial_of_existence_is_proven(world, name, rtype, status):
    head, recs = resolve(world, name, rtype)
    assert head == f"status={status} dnssec=secure"
    assert recs == []
    assert from_zone(world, name, rtype) == (f"status={status} dnssec=insecure", [])


def test_unsigned_zone_without_anchor_is_insecure(world):
    head, recs = resolve(world, "mail.insecure.example", "A")
    assert head == "status=ok dnssec=insecure"
    assert recs == ["mail.insecure.example. 3600 IN A 192.0.2.88"]
    assert from_zone(world, "mail.insecure.example", "A") == (head, recs)
    head, recs = resolve(world, "insecure.example", "MX")
    assert (head, recs) == ("status=ok dnssec=insecure",
                            ["insecure.example. 3600 IN MX 5 mail.insecure.example."])


def test_signed_zone_without_anchor_is_insecure(world):
    head, recs = resolve(world, "mx.signed.example", "A", anchors=[])
    assert head == "status=ok dnssec=insecure"
    assert recs == ["mx.signed.example. 3600 IN A 192.0.2.25"]


def test_tampered_record_is_bogus_and_not_shown(world):
    head, recs = resolve(world, "bad.signed.example", "A")
    assert head.startswith("status=tempfail dnssec=bogus why="), head
    assert recs == []
    # Without validation the altered data is what the server says.
    head, recs = resolve(world, "bad.signed.example", "A", anchors=[])
    assert (head, recs) == ("status=ok dnssec=insecure", ["bad.signed.example. 3600 IN A 192.0.2.67"])
    # The zone-file backend reads the original text.
    assert from_zone(world, "bad.signed.example", "A")[1] == ["bad.signed.example. 3600 IN A 192.0.2.66"]


def test_expired_signatures_are_bogus(world):
    head, recs = resolve(world, "expired.example", "A")
    assert head.startswith("status=tempfail dnssec=bogus why="), head
    assert "expired" in head
    assert recs == []


def test_wrong_trust_anchor_makes_the_zone_bogus(world):
    head, recs = resolve(world, "mx.signed.example", "A", anchors=[world["wrong_anchor"]])
    assert head.startswith("status=tempfail dnssec=bogus why="), head
    assert recs == []


def test_unknown_name_outside_the_served_zones_is_tempfail(world):
    # NSD answers REFUSED for a zone it does not serve.
    head, recs = resolve(world, "example.org", "A")
    assert head.startswith("status=tempfail"), head
    assert recs == []
    assert from_zone(world, "example.org", "A") == ("status=nxdomain dnssec=insecure", [])


def test_bad_trust_anchor_is_a_setup_error(world):
    rc, out, err = check("mx.signed.example", "A", "--dns-forwarder", f"127.0.0.1@{world['port']}",
                         "--trust-anchor-file", "none", "--trust-anchor", "signed.example. IN DS 1 2 3 zz")
    assert rc == 78, (out, err)
    assert out == ""


def test_bad_zone_file_names_file_and_line(tmp_path):
    z = tmp_path / "bad.zone"
    z.write_text("$ORIGIN example.\n@ 300 IN A 192.0.2.1\nwww IN SPF \"v=spf1\"\n")
    rc, out, err = check("example", "A", "--dns-zone", z)
    assert rc == 78
    assert f"{z}:3: unknown or unsupported type 'SPF'" in err
    assert out == ""


@pytest.mark.parametrize("args", [
    [],
    ["example.org"],
    ["example.org", "SPF"],
    ["example.org", "A", "extra"],
    ["example.org", "A", "--no-such-option"],
    ["example.org", "A", "--dns-zone", "/dev/null", "--dns-forwarder", "127.0.0.1"],
])
def test_bad_usage_exits_64(args):
    rc, out, err = check(*args)
    assert rc == 64, (out, err)
    assert "usage" in err or "mailwarden check dns" in err
