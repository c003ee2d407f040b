"""Batch mode of `mailwarden verify` and `mailwarden dkim sign`: FILE
arguments processed in one process, each file's output after a line
"==> FILE <==".

Everything runs offline: keys from `mailwarden dkim keygen` (RSA 2048 and
Ed25519), their zone lines plus SPF and DMARC records in one zone file for
`--dns-zone`; fixed --time, --authserv-id and --dmarc-random so that outputs
can be compared byte for byte.

What is checked:

  * verify: several files in one invocation (signed by RSA or Ed25519,
    LF and CRLF line ends, unsigned (a DMARC reject), tampered, doubly
    signed, a From domain without DMARC) give, file by file, exactly the
    field of one invocation per file with the message on stdin; also with
    the SPF options, and for 200 files in one run (per-message state is
    reset; the sanitizer build catches a use after free);
  * sign: several files give, file by file, exactly the output of one
    invocation per file (RSA PKCS#1 v1.5 and Ed25519 signatures are
    deterministic at a fixed t=), with and without --signature-only;
  * --signature-only prints exactly the DKIM-Signature field the full
    output prepends, and that field prepended to the message (as given,
    LF or CRLF) verifies with `mailwarden verify` and with dkimpy;
  * a missing file, or a directory, is reported on stderr by name, the
    other files are still processed (their sections as without it) and
    the exit status is 66 (EX_NOINPUT); a message without From in a sign
    batch is reported, the others signed, exit 65;
  * bare LF becomes CRLF and CRLF stays where the 64 KiB reads split them;
  * without FILE arguments the output has no "==>" line (stdin as before);
    keygen still takes no arguments and refuses --signature-only.

Run with Debian's interpreter:
    MAILWARDEN_BIN=build/mailwarden /usr/bin/python3 -m pytest tests/integration/test_cli_batch.py
"""

import os
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("MAILWARDEN_BIN") or str(REPO / "build" / "mailwarden")
AUTHSERV = "mx.test"
T0 = 1700000000
TIMEOUT = 120           # per command; only against hangs
DOMAIN = "batch.example"
ALGOS = ("rsa", "ed25519")
SELECTOR = {"rsa": "r1", "ed25519": "e1"}
A_TAG = {"rsa": "rsa-sha256", "ed25519": "ed25519-sha256"}
EX_DATAERR, EX_NOINPUT = 65, 66

ZONE_EXTRA = f"""\
{DOMAIN}.            IN TXT "v=spf1 ip4:192.0.2.0/24 -all"
_dmarc.{DOMAIN}.     IN TXT "v=DMARC1; p=reject"
"""

try:
    import dkim  # Debian package python3-dkim (dkimpy)
except ImportError:
    dkim = None


# ------------------------------------------------------------------ helpers

def run(cmd, input=None):
    return subprocess.run([str(c) for c in cmd], input=input, capture_output=True,
                          timeout=TIMEOUT)


def info(p):
    return f"exit {p.returncode}\nstdout: {p.stdout[-2000:]!r}\nstderr: {p.stderr[-2000:]!r}"


def sections(out):
    """[(name, bytes)] from batch output: each part after a '==> NAME <==' line."""
    parts = re.split(rb"(?m)^==> (.*) <==\n", out)
    assert parts[0] == b"", f"output before the first '==>' line: {parts[0][:200]!r}"
    return [(parts[k].decode(), parts[k + 1]) for k in range(1, len(parts), 2)]


def message(k, lf=False, subject=None, from_=True, body=None):
    lines = ([f"From: Sender {k} <s{k}@{DOMAIN}>"] if from_ else []) + [
        f"To: rcpt{k}@example.org",
        f"Subject: {subject or f'batch message {k}'}",
        f"Date: Tue, 14 Nov 2023 22:13:{k % 60:02d} +0000",
        f"Message-ID: <b{k}@{DOMAIN}>",
        "",
    ] + (body or [f"line {j} of message {k}  with  spaces\t" for j in range(1 + k % 7)]) + [""]
    return ("\n" if lf else "\r\n").join(lines).encode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("batch")
    keys, zone = {}, []
    for algo in ALGOS:
        key = d / f"{algo}.key"
        p = run([BIN, "dkim", "keygen", "--domain", DOMAIN, "--selector", SELECTOR[algo],
                 "--algo", algo, "--out", key])
        assert p.returncode == 0, info(p)
        keys[algo] = key
        zone.append(p.stdout.decode())
    zf = d / "zone"
    zf.write_text("".join(zone) + ZONE_EXTRA)
    return {"dir": d, "keys": keys, "zone": zf, "records": zone}


def sign_cmd(env, algo, *extra):
    return [BIN, "dkim", "sign", "--domain", DOMAIN, "--selector", SELECTOR[algo],
            "--key", env["keys"][algo], "--time", T0, *extra]


def verify_cmd(env, *extra):
    return [BIN, "verify", "--dns-zone", env["zone"], "--authserv-id", AUTHSERV,
            "--time", T0 + 60, "--dmarc-random", 0, *extra]


def sign_bytes(env, algo, msg, *extra):
    p = run(sign_cmd(env, algo, *extra), input=msg)
    assert p.returncode == 0, info(p)
    return p.stdout


def write(d, name, data):
    path = d / name
    path.write_bytes(data)
    return path


def verify_inputs(env, d):
    """Files to verify: name -> path, a mix of results."""
    files = {}
    for k, algo in enumerate(ALGOS * 3):
        lf = k % 2 == 1
        files[f"{algo}-{k}.eml"] = write(d, f"{algo}-{k}.eml",
                                         sign_bytes(env, algo, message(k, lf=lf)))
    files["unsigned.eml"] = write(d, "unsigned.eml", message(40))
    good = sign_bytes(env, "rsa", message(41))
    files["tampered.eml"] = write(d, "tampered.eml", good.replace(b"line 0 of", b"line 9 of"))
    files["double.eml"] = write(d, "double.eml",
                                sign_bytes(env, "ed25519", sign_bytes(env, "rsa", message(42))))
    foreign = message(43).replace(f"@{DOMAIN}>".encode(), b"@elsewhere.example>", 1)
    files["foreign.eml"] = write(d, "foreign.eml", foreign)
    return files


def single(cmd, path):
    p = run(cmd, input=Path(path).read_bytes())
    assert p.returncode == 0, info(p)
    assert b"==>" not in p.stdout
    return p.stdout


# ------------------------------------------------------------------ verify

@pytest.mark.parametrize("spf", [False, True], ids=["dkim-dmarc", "with-spf"])
def test_verify_batch_equals_single(env, tmp_path, spf):
    files = verify_inputs(env, tmp_path)
    extra = ["--client-ip", "192.0.2.7", "--helo", "mx.batch.example",
             "--mail-from", f"bounce@{DOMAIN}"] if spf else []
    p = run(verify_cmd(env, *extra, *files.values()))
    assert p.returncode == 0, info(p)
    got = sections(p.stdout)
    assert [n for n, _ in got] == [str(f) for f in files.values()]
    for (name, out), path in zip(got, files.values()):
        assert out == single(verify_cmd(env, *extra), path), name
    res = {Path(n).name: out for n, out in got}
    for algo in ALGOS:
        assert all(b"dkim=pass" in res[f"{algo}-{k}.eml"] for k in range(len(ALGOS) * 3)
                   if f"{algo}-{k}.eml" in res)
    assert b"dkim=none" in res["unsigned.eml"]
    assert b"dkim=fail" in res["tampered.eml"]
    assert res["double.eml"].count(b"dkim=pass") == 2
    assert b"dmarc=none" in res["foreign.eml"]
    if spf:   # SPF aligns for every message from DOMAIN
        assert all(b"spf=pass" in out for _, out in got)
        assert b"dmarc=pass" in res["unsigned.eml"]
    else:
        assert b"dmarc=fail (p=reject" in res["unsigned.eml"]


def test_verify_many_files(env, tmp_path):
    msgs = {algo: sign_bytes(env, algo, message(7)) for algo in ALGOS}
    paths = [write(tmp_path, f"m{k:03d}.eml", msgs[ALGOS[k % 2]] if k % 5 else message(k))
             for k in range(200)]
    p = run(verify_cmd(env, *paths))
    assert p.returncode == 0, info(p)
    got = sections(p.stdout)
    assert len(got) == 200
    for k, (name, out) in enumerate(got):
        assert name == str(paths[k])
        assert out.count(b"Authentication-Results:") == 1
        assert (b"dkim=pass" if k % 5 else b"dkim=none") in out, (name, out)


def test_verify_missing_file(env, tmp_path):
    files = list(verify_inputs(env, tmp_path).values())[:3]
    missing = tmp_path / "does-not-exist.eml"
    p = run(verify_cmd(env, files[0], missing, files[1], tmp_path, files[2]))
    assert p.returncode == EX_NOINPUT, info(p)
    err = p.stderr.decode()
    assert f"mailwarden verify: {missing}:" in err
    assert f"mailwarden verify: {tmp_path}:" in err
    got = sections(p.stdout)
    assert [n for n, _ in got] == [str(f) for f in files]
    for (name, out), path in zip(got, files):
        assert out == single(verify_cmd(env), path), name


def test_verify_stdin_unchanged(env, tmp_path):
    msg = sign_bytes(env, "ed25519", message(3))
    p = run(verify_cmd(env), input=msg)
    assert p.returncode == 0, info(p)
    assert p.stdout.startswith(b"Authentication-Results: " + AUTHSERV.encode())
    assert b"dkim=pass" in p.stdout and b"==>" not in p.stdout


# ------------------------------------------------------------------ sign

@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("sigonly", [False, True], ids=["full", "signature-only"])
def test_sign_batch_equals_single(env, tmp_path, algo, sigonly):
    extra = ["--signature-only"] if sigonly else []
    paths = [write(tmp_path, f"m{k}.eml", message(k, lf=k % 2 == 1)) for k in range(6)]
    p = run(sign_cmd(env, algo, *extra, *paths))
    assert p.returncode == 0, info(p)
    got = sections(p.stdout)
    assert [n for n, _ in got] == [str(f) for f in paths]
    for (name, out), path in zip(got, paths):
        assert out == single(sign_cmd(env, algo, *extra), path), name
        assert out.startswith(b"DKIM-Signature:")
        assert f"a={A_TAG[algo]};".encode() in out
    # the signed outputs verify, in one batch too
    signed = [write(tmp_path, f"s{k}.eml", sign_bytes(env, algo, path.read_bytes()))
              for k, path in enumerate(paths)]
    v = run(verify_cmd(env, *signed))
    assert v.returncode == 0, info(v)
    assert all(b"dkim=pass" in out for _, out in sections(v.stdout))


@pytest.mark.parametrize("algo", ALGOS)
def test_signature_only_prepended_verifies(env, tmp_path, algo):
    for k, lf in ((1, False), (2, True)):
        msg = message(k, lf=lf)
        full = sign_bytes(env, algo, msg)
        sig = sign_bytes(env, algo, msg, "--signature-only")
        assert re.fullmatch(rb"DKIM-Signature:[^\r\n]*\r\n([ \t][^\r\n]*\r\n)*", sig), sig
        assert full.startswith(sig) and len(full) > len(sig)
        signed = sig + msg   # the message as given: LF stays LF
        p = run(verify_cmd(env), input=signed)
        assert p.returncode == 0, info(p)
        assert b"dkim=pass" in p.stdout, p.stdout
        if dkim is not None:
            recs = {}
            for line in env["records"]:
                m = re.match(r"(\S+) IN TXT (.*)", line.strip())
                recs[m.group(1).lower()] = "".join(re.findall(r'"([^"]*)"', m.group(2))).encode()
            ok = dkim.DKIM(re.sub(rb"\r?\n", b"\r\n", signed)).verify(
                dnsfunc=lambda n, timeout=5: recs.get(n.decode().lower()))
            assert ok, f"dkimpy does not verify {algo} signature {sig!r}"


def test_sign_missing_and_bad_files(env, tmp_path):
    good = [write(tmp_path, f"g{k}.eml", message(k)) for k in range(3)]
    nofrom = write(tmp_path, "nofrom.eml", message(9, from_=False))
    missing = tmp_path / "missing.eml"
    cmd = sign_cmd(env, "ed25519", "--signature-only")
    p = run(cmd + [good[0], missing, good[1], nofrom, good[2]])
    assert p.returncode == EX_NOINPUT, info(p)
    err = p.stderr.decode()
    assert f"mailwarden dkim: {missing}:" in err
    assert "no From" in err
    got = dict(sections(p.stdout))
    assert str(missing) not in got
    assert got[str(nofrom)] == b""
    for path in good:
        assert got[str(path)] == single(cmd, path)
    # without an unreadable file the failed signing decides the status
    p = run(cmd + [good[0], nofrom, good[1]])
    assert p.returncode == EX_DATAERR, info(p)
    assert [n for n, _ in sections(p.stdout)] == [str(good[0]), str(nofrom), str(good[1])]


@pytest.mark.parametrize("at", [65535, 65536, 65537])
@pytest.mark.parametrize("straddle", [False, True], ids=["bare-lf", "crlf"])
def test_line_ends_across_read_chunks(env, tmp_path, at, straddle):
    """Bare LF becomes CRLF and CRLF stays, also where the 64 KiB reads of
    the message split them; from a file and from stdin alike."""
    head = message(1, lf=True, body=[])
    # the LF at index `at`, after a CR or an x
    body = b"x" * (at - len(head) - straddle) + (b"\r\n" if straddle else b"\n") + b"tail\nend\r\n"
    msg = head + body
    assert msg[at - 1:at + 1] in (b"\r\n", b"x\n")
    want = re.sub(rb"(?<!\r)\n", b"\r\n", msg)
    path = write(tmp_path, "big.eml", msg)
    out = sign_bytes(env, "ed25519", msg)
    sig = sign_bytes(env, "ed25519", msg, "--signature-only")
    assert out == sig + want
    p = run(sign_cmd(env, "ed25519", path))
    assert p.returncode == 0, info(p)
    assert sections(p.stdout) == [(str(path), sig + want)]


def test_sign_stdin_unchanged(env):
    msg = message(5)
    out = sign_bytes(env, "rsa", msg)
    assert out.startswith(b"DKIM-Signature:") and out.endswith(msg) and b"==>" not in out


def test_keygen_takes_no_files(env, tmp_path):
    base = [BIN, "dkim", "keygen", "--domain", DOMAIN, "--selector", "x", "--algo", "ed25519",
            "--out", tmp_path / "x.key"]
    p = run(base + ["extra"])
    assert p.returncode == 64, info(p)
    p = run(base + ["--signature-only"])
    assert p.returncode == 64, info(p)
    assert not (tmp_path / "x.key").exists()
