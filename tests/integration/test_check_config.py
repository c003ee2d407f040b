"""mailwarden serve --check-config."""

import subprocess

import pytest

from mwharness import binary_path

VALID = """\
hostname = "mx.test"
data_dir = "{data}"
local_domains = {{ "localhost", "example.org" }}
max_message_size = 36700160
max_line_length = 2048
max_recipients = 100
max_errors = 20
command_timeout = 300
data_timeout = 600
max_connections = 1000
max_connections_per_ip = 50
retry_min = 60
retry_max = 3600
listen smtp {{
    address = "127.0.0.1"
    port = 2525
}}
"""


def check(path):
    bin_ = binary_path()
    assert bin_.exists(), f"mailwarden binary not found at {bin_}"
    return subprocess.run([str(bin_), "serve", "--check-config", "-c", str(path)],
                          stdin=subprocess.DEVNULL, capture_output=True, timeout=60)


def test_valid_config_exits_0(tmp_path):
    conf = tmp_path / "good.conf"
    conf.write_text(VALID.format(data=tmp_path / "data"))
    p = check(conf)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


BAD_LINE_3 = {
    "unknown-option": "no_such_option = 1",
    "not-an-integer": "max_recipients = many",
    "string-for-integer": 'max_errors = "twenty"',
    "negative-limit": "max_recipients = -5",
}


@pytest.mark.parametrize("line3", list(BAD_LINE_3.values()), ids=list(BAD_LINE_3))
def test_error_on_line_3_reported_with_file_and_line(tmp_path, line3):
    lines = VALID.format(data=tmp_path / "data").splitlines()
    # line 3 (local_domains) is replaced by the faulty line; domains go to the end
    lines[2] = line3
    lines.append('local_domains = { "localhost" }')
    conf = tmp_path / "bad.conf"
    conf.write_text("\n".join(lines) + "\n")
    p = check(conf)
    err = p.stderr.decode(errors="replace")
    assert p.returncode != 0, f"invalid config accepted (line 3: {line3!r}); stderr: {err!r}"
    assert f"{conf}:3:" in err, f"expected '{conf}:3: ...' on stderr, got {err!r}"


def test_missing_file_fails(tmp_path):
    p = check(tmp_path / "does-not-exist.conf")
    assert p.returncode != 0
    assert p.stderr.strip(), "no error message for a missing config file"

