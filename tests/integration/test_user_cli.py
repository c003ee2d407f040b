"""mailwarden user: the users file for SMTP AUTH, driven as an operator would.

Covers add/list/passwd/del with the password on a stdin pipe (LF and CRLF),
refusals (duplicate add, missing user, empty password, bad address, a
password or any extra argument on the command line), the file's mode and
directory, which file is used (--users-file, users_file, --data-dir,
data_dir, the embedded default), a malformed file, concurrent adds (the
lock), and the terminal path in a pseudo-terminal: two prompts, no echo, a
mismatch refused. Stored hashes are checked with Python's crypt module,
which calls the same libcrypt but is code nobody here wrote.
"""

import fcntl
import os
import pty
import select
import stat
import subprocess
import termios
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest

from mwharness import binary_path, render_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # deprecated (PEP 594) but present in Debian 12's python3.11

TIMEOUT = 120  # only to stop a hang; a sanitizer build hashes slowly


def mw(*args, input=b"", cwd=None):
    bin_ = binary_path()
    assert bin_.exists(), f"mailwarden binary not found at {bin_}"
    return subprocess.run([str(bin_), "user", *[str(a) for a in args]], input=input,
                          capture_output=True, timeout=TIMEOUT, cwd=cwd)


def ok(p):
    assert p.returncode == 0, (p.returncode, p.stderr.decode(errors="replace"))
    return p


def entries(path):
    """{address: hash} from a users file, comments and blank lines skipped."""
    out = {}
    for line in path.read_text().splitlines():
        if line and not line.startswith("#"):
            user, _, h = line.partition(":")
            out[user] = h
    return out


def verifies(password, h):
    return crypt.crypt(password, h) == h


@pytest.fixture
def users(tmp_path):
    return tmp_path / "db" / "users"


def test_add_list_passwd_del(users):
    ok(mw("add", "alice@example.org", "--users-file", users, input=b"first secret\n"))
    ok(mw("add", "bob@example.org", "--users-file", users, input=b"bobs\n"))
    p = ok(mw("list", "--users-file", users))
    assert p.stdout.decode().splitlines() == ["alice@example.org", "bob@example.org"]

    h = entries(users)["alice@example.org"]
    assert h.startswith("$y$"), h
    assert verifies("first secret", h)
    assert not verifies("first secreT", h)
    assert verifies("bobs", entries(users)["bob@example.org"])

    # CRLF is stripped like LF; a missing final newline is fine too
    ok(mw("passwd", "alice@example.org", "--users-file", users, input=b"second\r\n"))
    h2 = entries(users)["alice@example.org"]
    assert h2 != h and verifies("second", h2) and not verifies("first secret", h2)
    ok(mw("passwd", "bob@example.org", "--users-file", users, input=b"no newline"))
    assert verifies("no newline", entries(users)["bob@example.org"])

    ok(mw("del", "alice@example.org", "--users-file", users))
    assert ok(mw("list", "--users-file", users)).stdout == b"bob@example.org\n"
    ok(mw("del", "bob@example.org", "--users-file", users))
    assert ok(mw("list", "--users-file", users)).stdout == b""


def test_only_first_line_is_the_password(users):
    ok(mw("add", "a@example.org", "--users-file", users, input=b"line one\nline two\n"))
    h = entries(users)["a@example.org"]
    assert verifies("line one", h) and not verifies("line one\nline two", h)


def test_addresses_are_lower_case(users):
    ok(mw("add", "Alice@Example.ORG", "--users-file", users, input=b"pw\n"))
    assert list(entries(users)) == ["alice@example.org"]
    before = users.read_bytes()
    p = mw("add", "ALICE@example.org", "--users-file", users, input=b"other\n")
    assert p.returncode == 73, p
    assert b"exists already" in p.stderr
    assert users.read_bytes() == before
    ok(mw("passwd", "aLiCe@example.org", "--users-file", users, input=b"new\n"))
    assert verifies("new", entries(users)["alice@example.org"])
    ok(mw("del", "ALICE@EXAMPLE.ORG", "--users-file", users))
    assert entries(users) == {}


def test_missing_user(users):
    p = mw("passwd", "nobody@example.org", "--users-file", users, input=b"pw\n")
    assert p.returncode == 67 and b"no user nobody@example.org" in p.stderr, p
    p = mw("del", "nobody@example.org", "--users-file", users)
    assert p.returncode == 67, p
    assert not users.exists()
    ok(mw("add", "a@example.org", "--users-file", users, input=b"pw\n"))
    assert mw("del", "b@example.org", "--users-file", users).returncode == 67


@pytest.mark.parametrize("args", [
    ["add", "a@example.org", "secret"],
    ["passwd", "a@example.org", "secret"],
    ["add", "a@example.org", "--password", "secret"],
    ["add", "a@example.org", "--password=secret"],
    ["add", "a@example.org", "-p", "secret"],
    ["del", "a@example.org", "extra"],
    ["list", "extra"],
    ["add"],
    ["frobnicate", "a@example.org"],
    [],
    ["add", "a@example.org", "--users-file"],
])
def test_usage_errors(users, args):
    p = mw(*args, "--users-file", users, input=b"pw\n") if "--users-file" not in args \
        else mw(*args, input=b"pw\n")
    assert p.returncode == 64, p
    assert p.stderr.startswith(b"mailwarden user: ") or p.stderr.startswith(b"usage: "), p
    assert b"secret" not in p.stderr, p
    assert not users.exists()


def test_password_never_on_command_line(users):
    p = mw("add", "a@example.org", "secret", "--users-file", users, input=b"pw\n")
    assert p.returncode == 64
    assert b"never taken from the command line" in p.stderr
    usage = ok(mw("--help")).stdout.decode()
    assert "password" not in usage.split("\n")[0].lower()


@pytest.mark.parametrize("data,why", [
    (b"", b"empty password"),
    (b"\n", b"empty password"),
    (b"\r\n", b"empty password"),
    (b"x" * 512 + b"\n", b"longer than 511"),
    # what SASL PLAIN/LOGIN can never carry (RFC 4616: 255 octets of UTF-8)
    (b"x" * 256 + b"\n", b"longer than 255 bytes"),
    (b"x" * 511 + b"\n", b"longer than 255 bytes"),
    (b"caf\xe9\n", b"not UTF-8"),
    (b"a\0b\n", b"NUL"),
])
def test_bad_passwords_refused(users, data, why):
    p = mw("add", "a@example.org", "--users-file", users, input=data)
    assert p.returncode == 65, p
    assert why in p.stderr, p
    assert not users.exists()


def test_longest_password(users):
    pw = "y" * 255   # the most SASL PLAIN and LOGIN carry
    ok(mw("add", "a@example.org", "--users-file", users, input=pw.encode() + b"\n"))
    assert verifies(pw, entries(users)["a@example.org"])


@pytest.mark.parametrize("addr", ["nodomain", "a b@example.org", "a:b@example.org", "@example.org",
                                  "a@", "a@b@c", "#a@example.org", "\u00e9@example.org"])
def test_invalid_address(users, addr):
    p = mw("add", addr, "--users-file", users, input=b"pw\n")
    assert p.returncode == 65, p
    assert b"not a valid address" in p.stderr
    assert not users.exists()


def test_file_mode_and_directory(tmp_path):
    data = tmp_path / "a" / "b" / "data"
    ok(mw("add", "a@example.org", "--data-dir", data, input=b"pw\n"))
    users = data / "users"
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    users.chmod(0o644)
    ok(mw("add", "b@example.org", "--data-dir", data, input=b"pw\n"))
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    # nothing but the file and its lock is left behind
    assert sorted(os.listdir(data)) == ["users", "users.lock"]


def write_config(path, **settings):
    path.write_text(render_config(settings, 2525))
    return path


def test_which_file(tmp_path):
    # users_file in the configuration wins over data_dir and --data-dir
    conf = write_config(tmp_path / "a.conf", data_dir=str(tmp_path / "d1"),
                        users_file=str(tmp_path / "explicit"))
    ok(mw("add", "a@example.org", "-c", conf, "--data-dir", tmp_path / "d2", input=b"pw\n"))
    assert "a@example.org" in entries(tmp_path / "explicit")
    assert not (tmp_path / "d1").exists() and not (tmp_path / "d2").exists()

    # users_file "" means <data_dir>/users; --data-dir overrides data_dir
    conf = write_config(tmp_path / "b.conf", data_dir=str(tmp_path / "d1"), users_file="")
    ok(mw("add", "b@example.org", "-c", conf, input=b"pw\n"))
    assert "b@example.org" in entries(tmp_path / "d1" / "users")
    ok(mw("add", "c@example.org", "-c", conf, "--data-dir", tmp_path / "d2", input=b"pw\n"))
    assert list(entries(tmp_path / "d2" / "users")) == ["c@example.org"]

    # --users-file wins over everything (the config is not even read)
    ok(mw("add", "d@example.org", "-c", tmp_path / "missing.conf", "--users-file",
          tmp_path / "cli", input=b"pw\n"))
    assert "d@example.org" in entries(tmp_path / "cli")

    # a bad configuration is refused
    (tmp_path / "bad.conf").write_text("no_such_option = 1\n")
    p = mw("list", "-c", tmp_path / "bad.conf")
    assert p.returncode == 78 and b"bad.conf:1" in p.stderr, p


def test_embedded_default_config(tmp_path):
    # the default data_dir is ./var, relative to where the tool runs
    assert ok(mw("list", cwd=tmp_path)).stdout == b""
    ok(mw("add", "a@example.org", cwd=tmp_path, input=b"pw\n"))
    assert "a@example.org" in entries(tmp_path / "var" / "users")
    assert ok(mw("list", cwd=tmp_path)).stdout == b"a@example.org\n"


def test_malformed_file_is_not_rewritten(users):
    users.parent.mkdir()
    users.write_text("# users\na@example.org:$y$x\nthis line is broken\n")
    before = users.read_bytes()
    p = mw("list", "--users-file", users)
    assert p.returncode == 65, p
    assert f"{users}:3: line has no ':'".encode() in p.stderr, p
    p = mw("add", "b@example.org", "--users-file", users, input=b"pw\n")
    assert p.returncode == 65, p
    assert users.read_bytes() == before


def test_concurrent_adds_lose_nothing(users):
    names = [f"user{i}@example.org" for i in range(8)]
    with ThreadPoolExecutor(len(names)) as ex:
        results = list(ex.map(lambda n: mw("add", n, "--users-file", users,
                                           input=n.encode() + b"\n"), names))
    for r in results:
        ok(r)
    got = entries(users)
    assert sorted(got) == sorted(names)
    for n in names:
        assert verifies(n, got[n])


# ------------------------------------------------------------------ terminal


def pty_run(args, answers, timeout=TIMEOUT):
    """Run mailwarden in a pseudo-terminal (its controlling tty and stdio);
    for each (prompt, answer) wait for prompt, then type answer. Returns
    (exit code, everything the terminal showed)."""
    bin_ = str(binary_path())
    pid, fd = pty.fork()
    if pid == 0:  # child
        try:
            os.execv(bin_, [bin_, "user", *[str(a) for a in args]])
        finally:
            os._exit(127)
    out, pos = b"", 0
    deadline = time.monotonic() + timeout

    def read_some():
        nonlocal out
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        if not r:
            raise AssertionError(f"timed out; terminal so far: {out!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        out += chunk
        return chunk

    try:
        for prompt, answer in answers:
            while prompt not in out[pos:]:
                if not read_some():
                    raise AssertionError(f"no prompt {prompt!r}; terminal: {out!r}")
            pos = out.index(prompt, pos) + len(prompt)
            os.write(fd, answer)
        while read_some():
            pass
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_tty_prompts_twice_without_echo(users):
    code, out = pty_run(["add", "Alice@Example.org", "--users-file", users],
                        [(b"Password for alice@example.org: ", b"tty s3cret\n"),
                         (b"Retype password: ", b"tty s3cret\n")])
    assert code == 0, out
    assert b"tty s3cret" not in out and b"s3cret" not in out, out
    assert b"added alice@example.org" in out
    assert verifies("tty s3cret", entries(users)["alice@example.org"])


def test_tty_passwd(users):
    ok(mw("add", "a@example.org", "--users-file", users, input=b"old\n"))
    code, out = pty_run(["passwd", "a@example.org", "--users-file", users],
                        [(b"Password for a@example.org: ", b"brand new\n"),
                         (b"Retype password: ", b"brand new\n")])
    assert code == 0, out
    assert b"brand new" not in out
    assert verifies("brand new", entries(users)["a@example.org"])


def test_tty_mismatch_refused(users):
    code, out = pty_run(["add", "a@example.org", "--users-file", users],
                        [(b"Password for a@example.org: ", b"one thing\n"),
                         (b"Retype password: ", b"another\n")])
    assert code == 65, out
    assert b"do not match" in out
    assert b"one thing" not in out and b"another" not in out
    assert not users.exists()


def test_tty_empty_refused(users):
    code, out = pty_run(["add", "a@example.org", "--users-file", users],
                        [(b"Password for a@example.org: ", b"\n")])
    assert code == 65, out
    assert b"empty password" in out
    assert not users.exists()


def test_tty_existing_user_not_asked(users):
    ok(mw("add", "a@example.org", "--users-file", users, input=b"pw\n"))
    code, out = pty_run(["add", "a@example.org", "--users-file", users], [])
    assert code == 73, out
    assert b"Password" not in out


def test_tty_interrupt_restores_echo(users):
    """^C at the prompt: the tool dies of SIGINT and the terminal echoes
    again. The test holds the terminal open itself so its settings outlive
    the child (otherwise they would vanish with it and prove nothing)."""
    master, slave = pty.openpty()

    def make_controlling_tty():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    bin_ = str(binary_path())
    p = subprocess.Popen([bin_, "user", "add", "a@example.org", "--users-file", str(users)],
                         stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                         preexec_fn=make_controlling_tty)
    try:
        out, deadline = b"", time.monotonic() + TIMEOUT
        while b"Password for" not in out:
            r, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
            assert r, f"no prompt; terminal: {out!r}"
            out += os.read(master, 4096)
        assert not termios.tcgetattr(master)[3] & termios.ECHO, "echo on at the prompt"
        os.write(master, b"half a pass\x03")
        assert p.wait(timeout=TIMEOUT) == -2  # killed by SIGINT, as with no handler
        assert termios.tcgetattr(master)[3] & termios.ECHO, "echo left off"
        assert not users.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)
