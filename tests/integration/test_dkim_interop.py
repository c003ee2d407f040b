"""DKIM interoperability: mailwarden against dkimpy and OpenDKIM, both ways.

Peers (Debian packages; a missing one is a clear failure, never a skip,
like the TLS peer tests: scripts/setup must install them for CI):

  * dkimpy 1.1.4 (`python3-dkim`), called in-process. Its DNS lookups go
    through its `dnsfunc` hook to the test's own records (every name it
    asks for is recorded and checked).
  * OpenDKIM 2.11.0 (`opendkim`; `opendkim-tools` is not enough: its
    opendkim-testmsg verifies against live DNS only and has no key-file
    option). `opendkim -x CONF -t FILE` runs the filter in test mode on a
    file: with `Mode v` and `TestPublicKeys KEYFILE` ("name value" lines)
    it verifies offline and prints "verification (...) succeeded" or
    "... failed: why" (exit 0 either way); with `Mode s`, `Domain`,
    `Selector`, `KeyFile`, `Canonicalization`, `SignatureAlgorithm` it
    prints the DKIM-Signature field it would add. Debian's build supports
    rsa-sha256 and ed25519-sha256 for both (`opendkim -V`), and its
    Ed25519 signatures verify with dkimpy and the other way round, so both
    algorithms are tested against it too. In test mode it reports one
    result per message (the passing signature if any, else the first
    failure).
  * mailwarden gets the same records through `--dns-zone FILE` (a zone
    master file; a TXT record longer than 255 bytes is split into several
    quoted strings).

Keys: RSA 2048 and Ed25519 made with `openssl genpkey` (PKCS#8 PEM, given
to all three signers), keys made by `mailwarden dkim keygen`, dkimpy's
own test keys (PKCS#1 and PKCS#8 RSA 2048, an Ed25519 seed) and the
RFC 8463 Appendix A keys.

What is checked:

  * `mailwarden dkim keygen`: PKCS#8 PEM key file, mode 0600, the key type
    and size, the printed zone-file line (owner, strings <= 255 bytes, tags,
    p= equal to the public key openssl derives), and that this very line,
    used as the zone, verifies what the key signs.
  * `mailwarden dkim sign` with every canonicalization, RSA and Ed25519:
    the output is the input message unchanged with one DKIM-Signature field
    prepended, CRLF only; a=, c=, d=, s=, t= are what was asked; bh= equals
    dkimpy's body hash; dkimpy, OpenDKIM and mailwarden itself verify it;
    one changed byte in a signed header field or in the body makes each of
    the three fail; whitespace changes pass exactly where the chosen
    canonicalization is relaxed.
  * dkimpy's and OpenDKIM's signatures (every canonicalization, both
    algorithms) pass `mailwarden verify` (and their own verifier, as a
    control of the test's plumbing); tampered copies fail.
  * The RFC 8463 A.3 example (two signatures, Ed25519 and RSA 1024,
    relaxed/relaxed) passes `mailwarden verify --dns-zone` (zone from its
    dns.json, `--time` = its t=) with two dkim=pass entries, and dkimpy
    and OpenDKIM as controls; mailwarden signing the unsigned message with
    the A.1 Ed25519 key reproduces the example's bh=.
  * dkimpy's data files: its messages (including one already carrying a
    Gmail signature, one with 8-bit header bytes) signed by mailwarden with
    dkimpy's keys served under the names of dns-map.tsv; its pre-signed
    messages (RFC 6376/8463 drafts, simple/simple; an Exim Ed25519
    signature with odd folding) verified by mailwarden.
  * `mailwarden verify` output: exactly one Authentication-Results field,
    the given authserv-id, one dkim= entry per signature with header.d,
    header.s and header.b (a prefix of the signature's b=, at least 8
    characters); dkim=none when unsigned; permerror for a missing key,
    temperror for a failing lookup.

Run with Debian's interpreter:
    MAILWARDEN_BIN=build/mailwarden /usr/bin/python3 -m pytest tests/integration/test_dkim_interop.py
"""

import base64
import hashlib
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTDATA = Path(os.environ.get("MW_TESTDATA") or REPO.parent / "shared" / "testdata")
DKIMPY_DIR = TESTDATA / "dkimpy"
DKIMPY_DATA = DKIMPY_DIR / "data"
RFC8463 = TESTDATA / "rfc8463-ed25519-example"
BIN = os.environ.get("MAILWARDEN_BIN") or str(REPO / "build" / "mailwarden")
OPENDKIM = "/usr/sbin/opendkim"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"

AUTHSERV = "mx.test"
T0 = 1700000000          # fixed signing time (2023-11-14) for mailwarden
ALGOS = ("rsa", "ed25519")
A_TAG = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
CANONS = ("relaxed/relaxed", "simple/simple", "relaxed/simple", "simple/relaxed")
TIMEOUT = 60             # per command; only against hangs

try:
    import dkim  # Debian package python3-dkim (dkimpy)
except ImportError:      # reported by the tests that need it
    dkim = None


def need_dkimpy():
    if dkim is None:
        raise AssertionError("dkimpy is missing: install the Debian package 'python3-dkim' "
                             "(scripts/setup must install it for CI)")
    return dkim


def need_opendkim():
    if not os.access(OPENDKIM, os.X_OK):
        raise AssertionError(f"{OPENDKIM} is missing: install the Debian package 'opendkim' "
                             "(scripts/setup must install it for CI)")
    return OPENDKIM


# ------------------------------------------------------------------ basics

def crlf(data):
    """Every bare LF (and bare CR) as CRLF."""
    return re.sub(rb"\r?\n|\r(?!\n)", b"\r\n", data)


def run(cmd, input=None):
    return subprocess.run([str(c) for c in cmd], input=input, capture_output=True,
                          timeout=TIMEOUT)


def info(p):
    return (f"command: {' '.join(map(str, p.args))}\nexit {p.returncode}\n"
            f"stdout: {p.stdout[:3000]!r}\nstderr: {p.stderr.decode('utf-8', 'replace')[-3000:]}")


def split_message(msg):
    """(header fields as raw bytes incl. CRLF, body) of a CRLF message."""
    head, sep, body = msg.partition(b"\r\n\r\n")
    assert sep, f"no header/body separator in {msg[:300]!r}"
    fields = re.findall(rb"[^\r\n]*\r\n(?:[ \t][^\r\n]*\r\n)*", head + b"\r\n")
    return fields, body


def tag_list(value):
    """The tags of a DKIM-Signature or key record value (FWS removed around
    tags; the b= value with all whitespace removed)."""
    tags = {}
    for part in value.split(";"):
        if not part.strip():
            continue
        k, sep, v = part.partition("=")
        assert sep, f"malformed tag {part!r} in {value!r}"
        v = re.sub(r"\s+", " ", v.strip())
        if k.strip() in ("b", "bh", "p"):
            v = v.replace(" ", "")
        tags[k.strip()] = v
    return tags


def signatures(msg):
    """Tags of each DKIM-Signature field, in order."""
    out = []
    for f in split_message(msg)[0]:
        name, _, value = f.partition(b":")
        if name.strip().lower() == b"dkim-signature":
            out.append(tag_list(value.decode("latin-1")))
    return out


def canon_of(tags):
    c = tags.get("c", "simple")
    return c if "/" in c else c + "/simple"


def der_of(path, public):
    p = run([OPENSSL, "pkey", "-in", path, "-outform", "DER"] + (["-pubout"] if public else []))
    assert p.returncode == 0, info(p)
    return p.stdout


def public_p(path, algo):
    """The p= value for a private key file: base64 of the SubjectPublicKeyInfo
    (RSA) or of the raw 32-byte key (Ed25519, RFC 8463)."""
    der = der_of(path, public=True)
    if algo == "ed25519":
        assert len(der) == 44, f"{path}: unexpected Ed25519 SPKI length {len(der)}"
        der = der[-32:]
    return base64.b64encode(der).decode()


ED25519_PKCS8_PREFIX = bytes.fromhex("302e020100300506032b657004220420")


def ed25519_seed_pem(seed_b64, path):
    """Write a raw base64 Ed25519 seed (dkimpy / RFC 8463 A.1 format) as a
    PKCS#8 PEM file."""
    seed = base64.b64decode(seed_b64)
    assert len(seed) == 32
    der = ED25519_PKCS8_PREFIX + seed
    pem = (b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der)
           + b"-----END PRIVATE KEY-----\n")
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def dkimpy_private(path, algo):
    """A private key as dkimpy's sign() takes it: PEM for RSA, the base64
    seed for Ed25519."""
    if algo == "ed25519":
        der = der_of(path, public=False)
        assert len(der) == 48, f"{path}: unexpected Ed25519 PKCS#8 length {len(der)}"
        return base64.b64encode(der[-32:])
    return Path(path).read_bytes()


class Key:
    def __init__(self, algo, path, domain, selector, record=None):
        self.algo, self.path, self.domain, self.selector = algo, Path(path), domain, selector
        self.record = record or f"v=DKIM1; k={algo}; p={public_p(path, algo)}"

    @property
    def name(self):
        return f"{self.selector}._domainkey.{self.domain}"

    def __repr__(self):
        return f"Key({self.algo} {self.name})"


# ------------------------------------------------------------------ DNS

def quote_txt(value):
    """TXT rdata: quoted strings of at most 255 bytes."""
    b = value.encode("latin-1") if isinstance(value, str) else value
    chunks = [b[i:i + 255] for i in range(0, len(b), 255)] or [b""]
    out = []
    for c in chunks:
        s = "".join(chr(x) if 0x20 <= x < 0x7f and x not in b'"\\' else "\\%03d" % x for x in c)
        out.append(f'"{s}"')
    return " ".join(out)


def write_zone(path, records, tempfail=()):
    """records: [(name, TXT value or list of strings)]."""
    lines = ["; DKIM keys for test_dkim_interop.py"]
    for name, value in records:
        if isinstance(value, list):
            rdata = " ".join(quote_txt(v) for v in value)
        else:
            rdata = quote_txt(value)
        lines.append(f"{name.rstrip('.')}. IN TXT {rdata}")
    lines += [f"$TEMPFAIL {n.rstrip('.')}." for n in tempfail]
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")
    return path


class DnsFunc:
    """dkimpy's dnsfunc over fixed records; remembers what was asked."""

    def __init__(self, records):
        self.records = {}
        for name, value in records:
            v = "".join(value) if isinstance(value, list) else value
            self.records[name.rstrip(".").lower()] = v.encode("latin-1")
        self.asked = []

    def __call__(self, name, timeout=5):
        n = name.decode("latin-1") if isinstance(name, bytes) else name
        self.asked.append(n)
        return self.records.get(n.rstrip(".").lower())


# ------------------------------------------------------------------ verifiers

def dkimpy_verify(msg, records):
    """[True/False per signature] and the names dkimpy looked up."""
    lib = need_dkimpy()
    dns = DnsFunc(records)
    n = len(signatures(msg))
    results = []
    for i in range(n):
        d = lib.DKIM(msg, minkey=1024)
        try:
            results.append(bool(d.verify(idx=i, dnsfunc=dns)))
        except lib.DKIMException:
            results.append(False)
    return results, dns.asked


def opendkim_verify(workdir, msg, records, tag="v"):
    """('pass' | 'fail' | 'none', output line) from `opendkim -t`."""
    exe = need_opendkim()
    workdir.mkdir(parents=True, exist_ok=True)
    keys = workdir / f"opendkim-{tag}.keys"
    keys.write_text("".join(f"{n.rstrip('.')} {''.join(v) if isinstance(v, list) else v}\n"
                            for n, v in records), encoding="latin-1")
    conf = workdir / f"opendkim-{tag}.conf"
    conf.write_text(f"Mode v\nSyslog no\nTestPublicKeys {keys}\n")
    path = workdir / f"opendkim-{tag}.eml"
    path.write_bytes(msg)
    p = run([exe, "-x", conf, "-t", path])
    out = p.stdout.decode("utf-8", "replace").strip()
    if re.search(r": verification \(.*\) succeeded$", out):
        return "pass", out
    if re.search(r": verification \(.*\) failed", out):
        return "fail", out
    if out.endswith("message not signed"):
        return "none", out
    raise AssertionError(f"unexpected opendkim output\n{info(p)}")


class AR:
    """A parsed Authentication-Results field (RFC 8601)."""

    def __init__(self, raw):
        self.raw = raw
        text = raw.decode("utf-8", "replace")
        lines = re.split(r"\r?\n", text.rstrip("\r\n"))
        assert lines and lines[0].startswith("Authentication-Results:"), \
            f"output is not an Authentication-Results field: {raw!r}"
        assert all(l[:1] in (" ", "\t") for l in lines[1:]), \
            f"output is more than one header field (or has other lines): {raw!r}"
        value = " ".join(l.strip() for l in lines).split(":", 1)[1]
        parts = self.split(self.uncomment(value))
        self.authserv = parts[0].strip()
        self.entries = []
        for part in parts[1:]:
            part = part.strip()
            if not part:
                continue
            m = re.match(r"([A-Za-z0-9_-]+)\s*=\s*([A-Za-z0-9_-]+)(.*)$", part, re.S)
            assert m, f"malformed resinfo {part!r} in {raw!r}"
            props = {k: self.unquote(v) for k, v in
                     re.findall(r'([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s";]+)', m.group(3))}
            self.entries.append((m.group(1).lower(), m.group(2).lower(), props))

    @staticmethod
    def unquote(v):
        """A pvalue as a quoted-string (RFC 8601: a value that is not a
        token, such as a header.b with '/' or '+') means its content."""
        if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
            return re.sub(r"\\(.)", r"\1", v[1:-1])
        return v

    @staticmethod
    def uncomment(s):
        out, depth, quoted, esc = [], 0, False, False
        for ch in s:
            if esc:
                esc = False
                if depth == 0:
                    out.append(ch)
                continue
            if ch == "\\":
                esc = True
                if depth == 0:
                    out.append(ch)
                continue
            if quoted:
                quoted = ch != '"'
                out.append(ch)
            elif ch == "(":
                depth += 1
            elif ch == ")" and depth:
                depth -= 1
            elif depth == 0:
                quoted = ch == '"'
                out.append(ch)
        return "".join(out)

    @staticmethod
    def split(s):
        parts, cur, quoted = [], [], False
        for ch in s:
            if ch == '"':
                quoted = not quoted
            if ch == ";" and not quoted:
                parts.append("".join(cur))
                cur = []
            else:
                cur.append(ch)
        parts.append("".join(cur))
        return parts

    @property
    def dkim(self):
        return [(r, p) for m, r, p in self.entries if m == "dkim"]

    def __repr__(self):
        return self.raw.decode("utf-8", "replace")


def mw_verify(zone, msg, time=None):
    cmd = [BIN, "verify", "--dns-zone", zone, "--authserv-id", AUTHSERV]
    if time is not None:
        cmd += ["--time", str(time)]
    p = run(cmd, input=msg)
    assert p.returncode == 0, f"mailwarden verify did not evaluate the message\n{info(p)}"
    ar = AR(p.stdout)
    assert ar.authserv == AUTHSERV, f"authserv-id {ar.authserv!r}, want {AUTHSERV!r}: {ar}"
    return ar


def mw_entry_for(ar, sig):
    """The dkim= entry of `ar` that names signature `sig` (d, s and b prefix)."""
    found = []
    for result, props in ar.dkim:
        hb = props.get("header.b", "")
        if (props.get("header.d", "").lower() == sig["d"].lower()
                and props.get("header.s", "") == sig["s"]
                and len(hb) >= 8 and sig["b"].startswith(hb)):
            found.append(result)
    assert len(found) == 1, (f"want exactly one dkim= entry with header.d={sig['d']} header.s={sig['s']} "
                             f"header.b=<at least 8 leading characters of {sig['b'][:20]}...>; got {ar}")
    return found[0]


def assert_mw_results(ar, msg, want):
    """One dkim= entry per signature, results in signature order == want."""
    sigs = signatures(msg)
    assert len(ar.dkim) == len(sigs), f"{len(sigs)} signature(s) but {len(ar.dkim)} dkim= entries: {ar}"
    got = [mw_entry_for(ar, s) for s in sigs]
    assert got == want, f"dkim results {got}, want {want}: {ar}"


# ------------------------------------------------------------------ signers

def mw_sign(key, msg, canon="relaxed/relaxed", time=T0):
    cmd = [BIN, "dkim", "sign", "--domain", key.domain, "--selector", key.selector,
           "--key", key.path, "--canon", canon]
    if time is not None:
        cmd += ["--time", str(time)]
    p = run(cmd, input=msg)
    assert p.returncode == 0, f"mailwarden dkim sign failed\n{info(p)}"
    out = p.stdout
    assert out.startswith(b"DKIM-Signature:"), f"output does not start with DKIM-Signature:\n{info(p)}"
    assert b"\n" not in out.replace(b"\r\n", b"") and b"\r" not in out.replace(b"\r\n", b""), \
        f"output has bare LF or CR (contract: CRLF line endings)\n{info(p)}"
    fields, _ = split_message(out)
    assert out[len(fields[0]):] == crlf(msg), \
        f"output is not the input message with one field prepended\n{info(p)}"
    sigs = signatures(out)
    assert len(sigs) == len(signatures(crlf(msg))) + 1
    tags = sigs[0]
    want = {"v": "1", "a": A_TAG[key.algo], "d": key.domain, "s": key.selector}
    got = {k: tags.get(k) for k in want}
    assert got == want, f"signature tags {got}, want {want}: {tags}"
    assert canon_of(tags) == canon, f"c={tags.get('c')!r}, asked for {canon}"
    if time is not None:
        assert tags.get("t") == str(time), f"t={tags.get('t')!r}, asked for --time {time}"
    h = [x.strip().lower() for x in tags.get("h", "").split(":")]
    assert "from" in h, f"h= does not include From (RFC 6376 5.4): {tags.get('h')!r}"
    return out


def dkimpy_sign(key, msg, canon):
    lib = need_dkimpy()
    hc, bc = canon.split("/")
    sig = lib.sign(msg, key.selector.encode(), key.domain.encode(), dkimpy_private(key.path, key.algo),
                   canonicalize=(hc.encode(), bc.encode()), signature_algorithm=A_TAG[key.algo].encode())
    return sig + msg


def opendkim_sign(workdir, key, msg, canon):
    exe = need_opendkim()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "opendkim-sign.conf"
    # RequireSafeKeys no: the key lives under /tmp (world-writable parent).
    conf.write_text(f"Mode s\nSyslog no\nRequireSafeKeys no\nDomain {key.domain}\n"
                    f"Selector {key.selector}\nKeyFile {key.path}\nCanonicalization {canon}\n"
                    f"SignatureAlgorithm {A_TAG[key.algo]}\n")
    path = workdir / "opendkim-sign.eml"
    path.write_bytes(msg)
    p = run([exe, "-x", conf, "-t", path])
    out = p.stdout.replace(b"\r", b"")
    first, _, field = out.partition(b"\n")
    assert p.returncode == 0 and first.endswith(b":") and field.startswith(b"DKIM-Signature:"), \
        f"opendkim did not sign\n{info(p)}"
    return crlf(field.rstrip(b"\n") + b"\n") + msg


def dkimpy_body_hash(msg, body_canon):
    """bh= as dkimpy computes it (any key: the hash does not depend on it)."""
    lib = need_dkimpy()
    seed = base64.b64encode(hashlib.sha256(b"bh").digest())
    sig = lib.sign(msg, b"x", b"example.invalid", seed, canonicalize=(b"relaxed", body_canon.encode()),
                   signature_algorithm=b"ed25519-sha256")
    return tag_list(sig.decode().split(":", 1)[1])["bh"]


# ------------------------------------------------------------------ messages

LONG_LINE = ("0123456789 abcdefghij " * 40)[:880]

RICH = crlf(
    b'From: "Alice Example" <alice@example.com>\n'
    b"To: Bob <bob@example.org>,\n"
    b"\tCarol <carol@example.org>\n"
    b"Cc: dave@example.net\n"
    b"Subject: Quarterly   report\t(draft) \n"
    b"Date: Thu, 28 Nov 2024 10:00:00 +0000\n"
    b"Message-ID: <interop-1@example.com>\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=utf-8\n"
    b"Content-Transfer-Encoding: 8bit\n"
    b"\n"
    b"Hello Bob,\n"
    b"\n"
    b"Line with trailing spaces   \n"
    b"Line with\ttabs and  double  spaces\n"
    b".leading dot\n"
    + "Grüße aus Köln — UTF-8 text\n".encode()
    + LONG_LINE.encode() + b"\n"
    b"\n"
    b"-- \n"
    b"Alice\n"
    b"\n"
    b"\n")

EMPTY_BODY = crlf(b"From: alice@example.com\nTo: bob@example.org\nSubject: empty\n"
                  b"Date: Thu, 28 Nov 2024 10:00:00 +0000\nMessage-ID: <interop-2@example.com>\n\n")

# bh= of an empty body (RFC 6376 3.4.3 / 3.4.4): simple hashes one CRLF,
# relaxed hashes nothing.
EMPTY_BH = {"simple": base64.b64encode(hashlib.sha256(b"\r\n").digest()).decode(),
            "relaxed": base64.b64encode(hashlib.sha256(b"").digest()).decode()}


def replace_once(msg, old, new):
    assert msg.count(old) == 1, f"{old!r} occurs {msg.count(old)} times"
    return msg.replace(old, new)


def tamper_header(msg):
    """One byte changed in the value of a signed header field (Subject when
    the last signature signs it, else From)."""
    h = [x.strip().lower() for x in signatures(msg)[0].get("h", "").split(":")]
    fields, body = split_message(msg)
    for want in ("subject", "from"):
        if want not in h:
            continue
        for i, f in enumerate(fields):
            name, _, value = f.partition(b":")
            if name.strip().lower() == want.encode():
                m = re.search(rb"[A-Za-z]", value)
                assert m, f"no letter to change in {f!r}"
                pos = len(name) + 1 + m.start()
                c = f[pos:pos + 1]
                fields[i] = f[:pos] + (b"x" if c != b"x" else b"y") + f[pos + 1:]
                return b"".join(fields) + b"\r\n" + body
    raise AssertionError(f"neither Subject nor From is signed: h={h}")


def tamper_body(msg):
    """One byte of the body changed."""
    fields, body = split_message(msg)
    m = re.search(rb"[A-Za-z]", body)
    assert m, "body has no letter to change"
    c = body[m.start():m.start() + 1]
    body = body[:m.start()] + (b"x" if c != b"x" else b"y") + body[m.start() + 1:]
    return b"".join(fields) + b"\r\n" + body


def ws_header(msg):
    """Only changes relaxed header canonicalization ignores (RFC 6376 3.4.2)."""
    return replace_once(msg, b"Subject: Quarterly   report\t(draft) \r\n",
                        b"SUBJECT:  Quarterly report \t (draft)\r\n")


def ws_body(msg):
    """Only changes relaxed body canonicalization ignores (RFC 6376 3.4.4)."""
    msg = replace_once(msg, b"Line with trailing spaces   \r\n", b"Line with trailing spaces\r\n")
    return replace_once(msg, b"Line with\ttabs and  double  spaces\r\n", b"Line with tabs and double spaces \t\r\n")


# ------------------------------------------------------------------ fixtures

class Env:
    def __init__(self, base):
        self.base = base
        self.keys = {}
        for algo, args in (("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                           ("ed25519", ["-algorithm", "ED25519"])):
            path = base / f"{algo}.pem"
            p = run([OPENSSL, "genpkey", *args, "-out", path])
            assert p.returncode == 0, info(p)
            path.chmod(0o600)
            self.keys[algo] = Key(algo, path, "example.com", f"mw{algo}")
        self.records = [(k.name, k.record) for k in self.keys.values()]
        self.zone = write_zone(base / "keys.zone", self.records)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    assert os.access(BIN, os.X_OK), f"mailwarden binary not found at {BIN} (set MAILWARDEN_BIN)"
    return Env(tmp_path_factory.mktemp("dkim"))


_signed = {}


def signed_by(signer, env, tmp_path, algo, canon, msg=RICH, name="rich"):
    """A message signed once per (signer, algo, canon, message) per module."""
    k = (signer, algo, canon, name)
    if k not in _signed:
        key = env.keys[algo]
        if signer == "mailwarden":
            _signed[k] = mw_sign(key, msg, canon)
        elif signer == "dkimpy":
            _signed[k] = dkimpy_sign(key, msg, canon)
        else:
            _signed[k] = opendkim_sign(tmp_path, key, msg, canon)
    return _signed[k]


def verify_all(env, tmp_path, msg, records=None, zone=None):
    """{'dkimpy': bool, 'opendkim': 'pass'|'fail', 'mailwarden': result} of
    the first (newest) signature."""
    records = records if records is not None else env.records
    zone = zone or env.zone
    res, asked = dkimpy_verify(msg, records)
    od, od_line = opendkim_verify(tmp_path, msg, records)
    ar = mw_verify(zone, msg)
    return {"dkimpy": res[0], "opendkim": od, "mailwarden": mw_entry_for(ar, signatures(msg)[0])}, \
        (asked, od_line, ar)


# ================================================================== keygen

@pytest.mark.parametrize("algo", ALGOS)
def test_keygen(tmp_path, algo):
    out = tmp_path / "k.pem"
    p = run([BIN, "dkim", "keygen", "--domain", "example.net", "--selector", "kg1",
             "--algo", algo, "--out", out])
    assert p.returncode == 0, info(p)
    assert out.is_file(), f"no key file written\n{info(p)}"
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode == 0o600, f"key file mode {mode:o}, want 600"
    pem = out.read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----\n"), f"not PKCS#8 PEM: {pem[:60]!r}"
    assert pem.rstrip().endswith("-----END PRIVATE KEY-----")
    t = run([OPENSSL, "pkey", "-in", out, "-noout", "-text"])
    assert t.returncode == 0, info(t)
    text = t.stdout.decode()
    if algo == "rsa":
        m = re.search(r"Private-Key: \((\d+) bit", text)
        assert m and int(m.group(1)) >= 2048, f"RSA key size: {text[:80]!r}"
    else:
        assert text.startswith("ED25519 Private-Key"), text[:80]

    # The DNS record: one zone-file line (';' comments allowed).
    lines = [l for l in p.stdout.decode().splitlines() if l.strip() and not l.lstrip().startswith(";")]
    assert len(lines) == 1, f"want one zone-file line on stdout\n{info(p)}"
    m = re.match(r'^(\S+)\s+(?:\d+\s+)?IN\s+TXT\s+((?:"[^"\\]*"\s*)+)$', lines[0])
    assert m, f"not a zone-file TXT line: {lines[0]!r}"
    assert m.group(1) == "kg1._domainkey.example.net.", f"owner {m.group(1)!r}"
    strings = re.findall(r'"([^"\\]*)"', m.group(2))
    assert all(len(s.encode()) <= 255 for s in strings), f"a TXT string longer than 255: {strings}"
    tags = tag_list("".join(strings))
    assert tags.get("v") == "DKIM1" and tags.get("k") == algo, tags
    assert tags.get("p") == public_p(out, algo), "p= is not the key's public key"

    # That line, as it is, is the zone for verification; dkimpy uses the
    # same record.
    zone = tmp_path / "kg.zone"
    zone.write_bytes(p.stdout)
    key = Key(algo, out, "example.net", "kg1", record="".join(strings))
    signed = mw_sign(key, RICH)
    res, asked = dkimpy_verify(signed, [(key.name, key.record)])
    assert res == [True], f"dkimpy does not verify a signature made with the generated key (asked {asked})"
    assert asked == ["kg1._domainkey.example.net."]
    assert_mw_results(mw_verify(zone, signed), signed, ["pass"])


# ================================================================== mailwarden signs

@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("algo", ALGOS)
def test_mw_signs_peers_verify(env, tmp_path, algo, canon):
    signed = signed_by("mailwarden", env, tmp_path, algo, canon)
    sig = signatures(signed)[0]
    body_canon = canon.split("/")[1]
    assert sig["bh"] == dkimpy_body_hash(RICH, body_canon), \
        f"bh= differs from dkimpy's {body_canon} body hash: {sig}"
    got, (asked, od_line, ar) = verify_all(env, tmp_path, signed)
    assert got == {"dkimpy": True, "opendkim": "pass", "mailwarden": "pass"}, \
        f"{got}\ndkimpy asked {asked}\nopendkim: {od_line}\nmailwarden: {ar}\n{signed[:1500]!r}"
    assert asked == [f"{env.keys[algo].name}."]
    assert f"s={env.keys[algo].selector}" in od_line


@pytest.mark.parametrize("where", ["header", "body"])
@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
@pytest.mark.parametrize("algo", ALGOS)
def test_mw_signed_tampered_fails_everywhere(env, tmp_path, algo, canon, where):
    signed = signed_by("mailwarden", env, tmp_path, algo, canon)
    bad = tamper_header(signed) if where == "header" else tamper_body(signed)
    assert len(bad) == len(signed) and sum(a != b for a, b in zip(bad, signed)) == 1
    got, (asked, od_line, ar) = verify_all(env, tmp_path, bad)
    assert got == {"dkimpy": False, "opendkim": "fail", "mailwarden": "fail"}, \
        f"{got}\nopendkim: {od_line}\nmailwarden: {ar}"


@pytest.mark.parametrize("change", ["header-whitespace", "body-whitespace"])
@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("algo", ALGOS)
def test_canonicalization_whitespace(env, tmp_path, algo, canon, change):
    """Whitespace changes verify exactly when that part is relaxed."""
    signed = signed_by("mailwarden", env, tmp_path, algo, canon)
    hc, bc = canon.split("/")
    if change == "header-whitespace":
        changed, ok = ws_header(signed), hc == "relaxed"
    else:
        changed, ok = ws_body(signed), bc == "relaxed"
    got, (asked, od_line, ar) = verify_all(env, tmp_path, changed)
    want = {"dkimpy": ok, "opendkim": "pass" if ok else "fail", "mailwarden": "pass" if ok else "fail"}
    assert got == want, f"{got}, want {want}\nopendkim: {od_line}\nmailwarden: {ar}"


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
@pytest.mark.parametrize("algo", ALGOS)
def test_mw_signs_empty_body(env, tmp_path, algo, canon):
    signed = mw_sign(env.keys[algo], EMPTY_BODY, canon)
    assert signatures(signed)[0]["bh"] == EMPTY_BH[canon.split("/")[1]]
    got, (asked, od_line, ar) = verify_all(env, tmp_path, signed)
    assert got == {"dkimpy": True, "opendkim": "pass", "mailwarden": "pass"}, \
        f"{got}\nopendkim: {od_line}\nmailwarden: {ar}"


def test_mw_sign_lf_input_gives_crlf(env, tmp_path):
    """A message with bare LF line ends is signed as its CRLF form and
    printed with CRLF (mw_sign checks the output is crlf(input))."""
    lf = RICH.replace(b"\r\n", b"\n")
    signed = mw_sign(env.keys["ed25519"], lf, "simple/simple")
    got, (asked, od_line, ar) = verify_all(env, tmp_path, signed)
    assert got == {"dkimpy": True, "opendkim": "pass", "mailwarden": "pass"}, \
        f"{got}\nopendkim: {od_line}\nmailwarden: {ar}"


@pytest.mark.parametrize("form", ["pkcs1-rsa", "pkcs8-rsa-der-reencoded", "pkcs8-ed25519"])
def test_mw_sign_key_formats(env, tmp_path, form):
    """Keys from openssl as PKCS#1 ("BEGIN RSA PRIVATE KEY") and as PKCS#8
    written by openssl pkey (RSA and Ed25519) sign the same way."""
    algo = "ed25519" if "ed25519" in form else "rsa"
    src = env.keys[algo]
    path = tmp_path / f"{form}.pem"
    if form == "pkcs1-rsa":
        p = run([OPENSSL, "rsa", "-in", src.path, "-traditional", "-out", path])
    else:
        p = run([OPENSSL, "pkey", "-in", src.path, "-out", path])
    assert p.returncode == 0, info(p)
    head = path.read_text().splitlines()[0]
    assert head == ("-----BEGIN RSA PRIVATE KEY-----" if form == "pkcs1-rsa" else "-----BEGIN PRIVATE KEY-----")
    path.chmod(0o600)
    key = Key(algo, path, src.domain, src.selector, record=src.record)
    signed = mw_sign(key, RICH)
    got, (asked, od_line, ar) = verify_all(env, tmp_path, signed)
    assert got == {"dkimpy": True, "opendkim": "pass", "mailwarden": "pass"}, \
        f"{got}\nopendkim: {od_line}\nmailwarden: {ar}"


# ================================================================== peers sign

@pytest.mark.parametrize("canon", CANONS)
@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("signer", ["dkimpy", "opendkim"])
def test_peer_signs_mw_verifies(env, tmp_path, signer, algo, canon):
    signed = signed_by(signer, env, tmp_path, algo, canon)
    sig = signatures(signed)[0]
    assert (sig["a"], canon_of(sig)) == (A_TAG[algo], canon), sig
    if (signer, algo, canon.split("/")[0]) == ("opendkim", "ed25519", "simple"):
        # OpenDKIM 2.11.0~beta2 (Debian 12) defect: an Ed25519 signature
        # with simple header canonicalization is folded differently in the
        # field it prints than in the field it hashed, so it is invalid:
        # dkimpy and OpenDKIM itself reject it. mailwarden must too.
        got, (asked, od_line, ar) = verify_all(env, tmp_path, signed)
        assert got == {"dkimpy": False, "opendkim": "fail", "mailwarden": "fail"}, \
            f"{got}\nopendkim: {od_line}\nmailwarden: {ar}"
        return
    # control: the signer's own verifier accepts it (the test's keys and
    # records are right)
    if signer == "dkimpy":
        assert dkimpy_verify(signed, env.records)[0] == [True]
    else:
        assert opendkim_verify(tmp_path, signed, env.records)[0] == "pass"
    assert_mw_results(mw_verify(env.zone, signed), signed, ["pass"])
    for bad in (tamper_header(signed), tamper_body(signed)):
        assert_mw_results(mw_verify(env.zone, bad), bad, ["fail"])


# ================================================================== RFC 8463

def rfc8463_records():
    import json
    data = json.loads((RFC8463 / "dns.json").read_text())
    return [(name, strings) for name, types in data.items() for strings in types.get("TXT", [])]


RFC8463_T = 1528637909


def test_rfc8463_example_mailwarden(tmp_path):
    msg = crlf((RFC8463 / "signed.eml").read_bytes())
    sigs = signatures(msg)
    assert [s["s"] for s in sigs] == ["brisbane", "test"] and {s["t"] for s in sigs} == {str(RFC8463_T)}
    zone = write_zone(tmp_path / "rfc8463.zone", rfc8463_records())
    ar = mw_verify(zone, msg, time=RFC8463_T)
    assert_mw_results(ar, msg, ["pass", "pass"])
    bad = tamper_body(msg)
    assert_mw_results(mw_verify(zone, bad, time=RFC8463_T), bad, ["fail", "fail"])
    bad = tamper_header(msg)
    assert_mw_results(mw_verify(zone, bad, time=RFC8463_T), bad, ["fail", "fail"])


def test_rfc8463_example_peers(tmp_path):
    """Controls: dkimpy verifies both signatures, OpenDKIM at least one."""
    msg = crlf((RFC8463 / "signed.eml").read_bytes())
    res, asked = dkimpy_verify(msg, rfc8463_records())
    assert res == [True, True], asked
    assert opendkim_verify(tmp_path, msg, rfc8463_records())[0] == "pass"
    assert dkimpy_verify(tamper_body(msg), rfc8463_records())[0] == [False, False]


def test_rfc8463_mw_signs_with_appendix_a_key(tmp_path):
    """The A.1 Ed25519 key signing the unsigned A.3 message relaxed/relaxed
    gives the example's body hash, and verifies with the A.2 record."""
    key = Key("ed25519", ed25519_seed_pem((RFC8463 / "ed25519-private-seed.b64").read_text().strip(),
                                          tmp_path / "brisbane.pem"),
              "football.example.com", "brisbane")
    records = rfc8463_records()
    assert key.record.split("p=")[1] == dict((n, "".join(v)) for n, v in records)[key.name].split("p=")[1]
    msg = crlf((RFC8463 / "unsigned.msg").read_bytes())
    signed = mw_sign(key, msg, "relaxed/relaxed", time=RFC8463_T)
    assert signatures(signed)[0]["bh"] == "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    assert dkimpy_verify(signed, records)[0] == [True]
    assert opendkim_verify(tmp_path, signed, records)[0] == "pass"
    zone = write_zone(tmp_path / "rfc8463.zone", records)
    assert_mw_results(mw_verify(zone, signed), signed, ["pass"])


# ================================================================== dkimpy data

def dns_map():
    """name -> data file, from dns-map.tsv."""
    out = {}
    for line in (DKIMPY_DIR / "dns-map.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, fname, _module = line.split("\t")
        out.setdefault(name.rstrip("."), set()).add(fname)
    return out


def dkimpy_key(tmp_path, keyfile, name):
    """A dkimpy test key with the record dns-map.tsv serves at `name`."""
    selector, _, domain = name.partition("._domainkey.")
    if keyfile.endswith(".key") and "BEGIN" not in (DKIMPY_DATA / keyfile).read_text():
        algo, path = "ed25519", ed25519_seed_pem((DKIMPY_DATA / keyfile).read_text().strip(),
                                                 tmp_path / (keyfile + ".pem"))
    else:
        algo = "rsa"
        path = tmp_path / keyfile
        shutil.copyfile(DKIMPY_DATA / keyfile, path)
        path.chmod(0o600)
    return algo, path, selector, domain


# (message, key file, DNS name, record file): the names and record files
# for the RSA keys are dns-map.tsv's (test_dkim_rsavariants.py); the
# Ed25519 record ed25519test.dns is not in dns-map.tsv (dkimpy serves it
# for any name), so it gets a name of ours.
DKIMPY_SIGN_CASES = [
    ("test.message", "2048_testkey.key", "test3._domainkey.example.com", "2048_testkey_wo_markers.pub.txt"),
    ("test_extra.message", "2048_testkey_PKCS8.key", "test5._domainkey.example.com",
     "2048_testkey_PKCS8.key.pub.txt"),
    ("rfc6376.w1258.msg", "2048_testkey.key", "test3._domainkey.example.com", "2048_testkey_wo_markers.pub.txt"),
    ("test2.message", "ed25519test.key", "ed._domainkey.example.com", "ed25519test.dns"),
    ("ed25519test.msg", "ed25519test.key", "ed._domainkey.example.com", "ed25519test.dns"),
]


@pytest.mark.parametrize("canon", ["relaxed/relaxed", "simple/simple"])
@pytest.mark.parametrize("case", DKIMPY_SIGN_CASES, ids=[f"{c[0]}-{c[1]}" for c in DKIMPY_SIGN_CASES])
def test_dkimpy_data_signed_by_mw(tmp_path, case, canon):
    msgfile, keyfile, name, recfile = case
    if recfile != "ed25519test.dns":
        assert recfile in dns_map()[name], f"dns-map.tsv does not serve {recfile} at {name}"
    record = (DKIMPY_DATA / recfile).read_text().strip()
    algo, path, selector, domain = dkimpy_key(tmp_path, keyfile, name)
    key = Key(algo, path, domain, selector, record=record)
    assert tag_list(record)["p"] == public_p(path, algo), f"{recfile} is not the public key of {keyfile}"
    msg = crlf((DKIMPY_DATA / msgfile).read_bytes())
    signed = mw_sign(key, msg, canon)
    records = [(name, record)]
    res, asked = dkimpy_verify(signed, records)
    assert res[0] is True, f"dkimpy: {res}, asked {asked}"
    assert opendkim_verify(tmp_path, signed, records)[0] == "pass"
    zone = write_zone(tmp_path / "k.zone", records)
    ar = mw_verify(zone, signed)
    # test2.message already carries a Gmail signature, whose key is not in
    # the zone (NXDOMAIN): RFC 6376 6.1.2 "no key for signature" = permerror.
    want = ["pass"] + ["permerror"] * (len(signatures(signed)) - 1)
    assert_mw_results(ar, signed, want)
    bad = tamper_body(signed)
    assert mw_entry_for(mw_verify(zone, bad), signatures(bad)[0]) == "fail"


def presigned_records():
    ed = [v for n, v in rfc8463_records() if n.startswith("brisbane.")][0]
    return [("brisbane._domainkey.football.example.com", ed),
            ("test._domainkey.football.example.com", (DKIMPY_DATA / "test.txt").read_text().strip()),
            ("sed._domainkey.test.ex", (DKIMPY_DATA / "eximtest.dns").read_text().strip())]


PRESIGNED = {"rfc6376.signed.msg": 2, "rfc6376.signed.rsa.msg": 1, "ed25519test2.msg": 1}


@pytest.mark.parametrize("msgfile", sorted(PRESIGNED))
def test_dkimpy_presigned_mw_verifies(tmp_path, msgfile):
    """dkimpy's pre-signed files: two RFC 6376/8463 draft signatures
    (simple/simple, trailing spaces in the signature field), an Exim
    Ed25519 signature folded before a ';'."""
    msg = crlf((DKIMPY_DATA / msgfile).read_bytes())
    n = PRESIGNED[msgfile]
    records = presigned_records()
    assert dkimpy_verify(msg, records)[0] == [True] * n        # control
    zone = write_zone(tmp_path / "k.zone", records)
    assert_mw_results(mw_verify(zone, msg), msg, ["pass"] * n)
    bad = tamper_body(msg)
    assert_mw_results(mw_verify(zone, bad), bad, ["fail"] * n)


# ================================================================== results

def test_verify_unsigned_is_none(env):
    ar = mw_verify(env.zone, RICH)
    assert [(r) for r, _ in ar.dkim] == ["none"], ar


def test_verify_missing_key_permerror(env, tmp_path):
    signed = signed_by("mailwarden", env, tmp_path, "ed25519", "relaxed/relaxed")
    zone = write_zone(tmp_path / "nokey.zone", [("other._domainkey.example.com", env.keys["ed25519"].record)])
    assert_mw_results(mw_verify(zone, signed), signed, ["permerror"])


def test_verify_dns_failure_temperror(env, tmp_path):
    signed = signed_by("mailwarden", env, tmp_path, "rsa", "relaxed/relaxed")
    zone = write_zone(tmp_path / "tempfail.zone", [], tempfail=[env.keys["rsa"].name])
    assert_mw_results(mw_verify(zone, signed), signed, ["temperror"])


def test_verify_two_signatures_two_entries(env, tmp_path):
    """A message signed by dkimpy (RSA) and then by mailwarden (Ed25519):
    two dkim= entries, both pass; with the RSA key missing, pass and
    permerror, in signature order."""
    inner = signed_by("dkimpy", env, tmp_path, "rsa", "relaxed/relaxed")
    both = mw_sign(env.keys["ed25519"], inner, "relaxed/relaxed")
    assert_mw_results(mw_verify(env.zone, both), both, ["pass", "pass"])
    zone = write_zone(tmp_path / "edonly.zone", [(env.keys["ed25519"].name, env.keys["ed25519"].record)])
    assert_mw_results(mw_verify(zone, both), both, ["pass", "permerror"])
    res, _ = dkimpy_verify(both, env.records)
    assert res == [True, True]
