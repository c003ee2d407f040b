"""Shared helpers of the benchmarks in bench/ (accept, tls, idle, latency,
queue-size, run).

Set-up of a private Postfix instance, of a private OpenSMTPD instance and of
mailwarden on loopback ports in a temp dir, waiting for their queues to
drain, checking their logs after a run, reading the memory of their
processes, and cleaning everything up on exit (including Ctrl-C and
SIGTERM).

A script calls init("name") (prefix of its messages) and run_main(main).
"""

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BIN = os.path.join(REPO, "build-release", "mailwarden")
SMTP_SOURCE = "/usr/sbin/smtp-source"
POSTFIX = "/usr/sbin/postfix"
POSTFIX_DAEMONS = "/usr/lib/postfix/sbin"

SENDER = "bench@bench.test"
RECIPIENT = "user@bench.test"

# Prefix of messages; each script sets its own name.
PROG = "bench"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def die(msg):
    raise BenchError(msg)


class BenchError(Exception):
    pass


# --------------------------------------------------------------------------
# setup helpers


def env_int(name, default):
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except ValueError:
        sys.exit(f"{PROG}: ${name} must be an integer, got {v!r}")


def run_quiet(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw)


def apt_install(pkgs):
    """Install Debian packages quietly; apt-get update only if needed."""
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + pkgs
    r = run_quiet(cmd, env=env)
    if r.returncode != 0:
        run_quiet(["apt-get", "update", "-qq"], env=env)
        r = run_quiet(cmd, env=env)
    if r.returncode != 0:
        die(f"apt-get install {' '.join(pkgs)} failed:\n{r.stdout[-2000:]}")


def missing_packages(pkgs):
    r = run_quiet(["dpkg-query", "-W", "-f", "${Package} ${Status}\n"] + pkgs)
    have = {l.split()[0] for l in r.stdout.splitlines()
            if l.endswith("install ok installed")}
    return [d for d in pkgs if d not in have]


def ensure_postfix():
    if (os.access(SMTP_SOURCE, os.X_OK) and os.access(POSTFIX, os.X_OK)
            and os.access(os.path.join(POSTFIX_DAEMONS, "master"), os.X_OK)):
        return
    log(f"{PROG}: installing postfix (for smtp-source and the reference MTA)...")
    # "No configuration": the package must not set up or start a system
    # instance; ours runs from a private config dir.
    subprocess.run(["debconf-set-selections"], input=(
        "postfix postfix/main_mailer_type select No configuration\n"),
        text=True, check=False, stdout=subprocess.DEVNULL)
    apt_install(["postfix"])
    if not os.access(SMTP_SOURCE, os.X_OK):
        die(f"{SMTP_SOURCE} still missing after installing postfix")


# Build dependencies of mailwarden (see CMakeLists.txt).
BUILD_DEPS = ["cmake", "ninja-build", "gcc", "pkg-config", "libevent-dev",
              "libconfuse-dev", "libcmocka-dev"]


def ensure_mailwarden(path, explicit, always_build=False, extra_deps=(),
                      rebuild_hint=""):
    """Return the mailwarden binary to run.  An explicit MAILWARDEN_BIN is
    used as it is.  Otherwise build-release/ is configured (cmake) and built
    (ninja) if the binary is missing; with always_build, ninja also runs
    when the binary exists (a no-op when it is up to date, a rebuild when
    sources changed)."""
    if os.access(path, os.X_OK) and not (always_build and not explicit):
        return path
    if explicit:
        die(f"MAILWARDEN_BIN={path} is not an executable file")
    build = os.path.join(REPO, "build-release")
    # Build dependencies (see CMakeLists.txt); installed only if missing.
    missing = missing_packages(BUILD_DEPS + list(extra_deps))
    if missing:
        log(f"{PROG}: installing {' '.join(missing)} to build mailwarden...")
        apt_install(missing)
    if (os.access(path, os.X_OK)
            and os.path.exists(os.path.join(build, "build.ninja"))):
        # Up-to-date check only; ninja re-runs cmake itself if needed.
        r = run_quiet(["ninja", "-C", build])
        if r.returncode != 0 or not os.access(path, os.X_OK):
            die(f"could not rebuild mailwarden ({rebuild_hint or ''}"
                f"MAILWARDEN_BIN={path} runs the existing binary without "
                f"building):\n{r.stdout[-3000:]}")
        if "no work to do" not in r.stdout:
            log(f"{PROG}: rebuilt {path}")
        return path
    log(f"{PROG}: building mailwarden in {build} ...")
    r = run_quiet(["cmake", "-S", REPO, "-B", build, "-G", "Ninja",
                   "-DCMAKE_BUILD_TYPE=Release"])
    if r.returncode == 0:
        r = run_quiet(["ninja", "-C", build])
    if r.returncode != 0 or not os.access(path, os.X_OK):
        die(f"could not build mailwarden (use --only postfix to skip it):\n"
            f"{r.stdout[-3000:]}")
    return path


def free_port(avoid=()):
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in avoid:
            return port
    die("no free loopback port")


def port_open(port):
    return port_open_at("127.0.0.1", port)


def port_open_at(host, port):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def read_from(path, offset):
    """Return (text appended to path since offset, new offset)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return "", offset
    return data.decode("utf-8", "replace"), offset + len(data)


def procs_using(prefix):
    """PIDs whose cwd or root is under prefix (to wait for stragglers)."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{d}/cwd")
        except OSError:
            continue
        if cwd == prefix or cwd.startswith(prefix + "/"):
            pids.append(int(d))
    return pids


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


# --------------------------------------------------------------------------
# servers


class Postfix:
    """A private Postfix instance: own config, queue and data directories.

    extra_main_cf / extra_master_cf are appended to the generated main.cf
    and master.cf.  client_name names the load generator in problems.
    smtpd_maxproc is the process limit of the smtpd service ("-": the
    default_process_limit, 100).  After check_run(), last_log holds the
    maillog text of that run."""

    name = "postfix"

    def __init__(self, base, port, extra_main_cf="", extra_master_cf="",
                 client_name="smtp-source", smtpd_maxproc="-"):
        self.dir = os.path.join(base, "postfix")
        self.smtpd_maxproc = smtpd_maxproc
        self.conf = os.path.join(self.dir, "conf")
        self.queue = os.path.join(self.dir, "queue")
        self.data = os.path.join(self.dir, "data")
        self.maillog = os.path.join(self.dir, "maillog")
        self.port = port
        self.started = False
        self.log_off = 0
        self.master_pid = None
        self.extra_main_cf = extra_main_cf
        self.extra_master_cf = extra_master_cf
        self.client_name = client_name
        self.last_log = ""

    def write_config(self):
        os.makedirs(self.conf)
        os.makedirs(self.queue)
        os.makedirs(self.data)
        os.chmod(self.dir, 0o755)
        os.chmod(self.queue, 0o755)
        shutil.chown(self.data, "postfix")
        os.chmod(self.data, 0o700)
        main_cf = f"""\
# Private benchmark instance; generated by bench/{PROG}.
compatibility_level = 3.6
config_directory = {self.conf}
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bench
maillog_file = {self.maillog}
maillog_file_prefixes = {self.dir}

myhostname = postfix.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination = bench.test, localhost
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP

# Accept any local part and throw the mail away after it has been queued
# (the queue file is fsync'd by cleanup before smtpd answers 250).
local_recipient_maps =
alias_maps =
alias_database =
local_transport = discard:bench
default_transport = discard:bench
relay_transport = discard:bench
biff = no
""" + self.extra_main_cf
        # Only the services this test needs; the smtpd listens on a private
        # loopback port.  No chroot (the queue dir is a temp dir).
        master_cf = f"""\
127.0.0.1:{self.port} inet n - n - {self.smtpd_maxproc} smtpd
cleanup   unix  n - n -   0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -   - trivial-rewrite
bounce    unix  - - n -   0 bounce
defer     unix  - - n -   0 bounce
trace     unix  - - n -   0 bounce
verify    unix  - - n -   1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -   - proxymap
showq     unix  n - n -   - showq
error     unix  - - n -   - error
retry     unix  - - n -   - error
discard   unix  - - n -   - discard
anvil     unix  - - n -   1 anvil
scache    unix  - - n -   1 scache
postlog   unix-dgram n - n - 1 postlogd
""" + self.extra_master_cf
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            f.write(main_cf)
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(master_cf)

    def pf(self, *args):
        return run_quiet([POSTFIX, "-c", self.conf] + list(args))

    def start(self):
        self.write_config()
        r = self.pf("check")
        if r.returncode != 0:
            die(f"postfix -c {self.conf} check failed:\n{r.stdout}")
        self.started = True  # from here on, always try to stop it
        r = self.pf("start")
        if r.returncode != 0:
            log_text, _ = read_from(self.maillog, 0)
            die(f"postfix -c {self.conf} start failed:\n{r.stdout}\n{log_text}")
        try:
            with open(os.path.join(self.queue, "pid", "master.pid")) as f:
                self.master_pid = int(f.read().strip())
        except (OSError, ValueError):
            pass
        wait_ready(self, lambda: True)
        _, self.log_off = read_from(self.maillog, 0)

    def stop(self):
        if not self.started:
            return
        self.started = False
        r = self.pf("stop")
        deadline = time.monotonic() + 15
        while (self.master_pid and pid_alive(self.master_pid)
               and time.monotonic() < deadline):
            time.sleep(0.1)
        if self.master_pid and pid_alive(self.master_pid):
            log(f"{PROG}: postfix stop did not finish ({r.stdout.strip()}); "
                "aborting")
            self.pf("abort")
            time.sleep(1)
            try:
                os.kill(self.master_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def queued_lines(self, text):
        return len(re.findall(r"/cleanup\[\d+\]: \w+: message-id=", text))

    def pids(self):
        """The master and every process it started."""
        return proc_tree(self.master_pid) if self.master_pid else []

    def state(self):
        """(queued, delivered, queue empty) since the start of this run."""
        text, _ = read_from(self.maillog, self.log_off)
        return (self.queued_lines(text),
                len(re.findall(r"/discard\[\d+\]: .*status=sent", text)),
                self.queue_empty())

    def check_run(self, count, rc, src_out):
        """Called after the load generator finished: wait for the queue to
        drain, verify every message was queued and delivered, collect
        problems."""
        problems = []
        if rc != 0:
            problems.append(f"{self.client_name} exit status {rc}: "
                            f"{src_out.strip()[-500:]}")
        (queued, sent, _), drain, drained = wait_drain(self.state, count, rc,
                                                       lambda: True)
        text, self.log_off = read_from(self.maillog, self.log_off)
        self.last_log = text
        if queued != count:
            problems.append(f"{queued} messages queued (cleanup message-id= lines), "
                            f"expected {count}")
        if not drained:
            problems.append(f"queue not drained after {drain:.1f}s "
                            f"({sent} of {queued} discarded)")
        # Benign: a VM clock a second off the file system clock.
        benign = r"file system clock is|resetting file time stamps"
        bad = [l for l in text.splitlines()
               if (re.search(r"\b(warning|error|fatal|panic|reject):", l)
                   or re.search(r"status=(deferred|bounced)", l))
               and not re.search(benign, l)]
        if bad:
            problems.append(f"{len(bad)} warning/error lines in maillog, e.g.:\n    "
                            + "\n    ".join(bad[:5]))
        return problems, drain, rc == 0 and queued == count

    def queue_empty(self):
        for d in ("incoming", "active", "deferred", "hold", "maildrop"):
            for _root, _dirs, files in os.walk(os.path.join(self.queue, d)):
                if files:
                    return False
        return True


# SPF for the benchmark's sender domain, answered by mailwarden from this
# zone file (dns { zone_file }): the SPF check at MAIL runs for every
# message as in production, but no benchmark depends on, or waits for, a
# DNS server elsewhere.  Clients connect from 127.0.0.1, which passes.
SPF_ZONE = """\
$ORIGIN bench.test.
$TTL 3600
@ IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
"""

# Top-level settings of every benchmark configuration of mailwarden.  The
# default max_connection_rate (120 new connections a minute per address)
# would refuse a load generator on 127.0.0.1 after two seconds.
MAILWARDEN_SETTINGS = {
    "max_connections_per_ip": 1000,
    "max_connection_rate": 0,
}


class Mailwarden:
    """mailwarden serve on a loopback port, log (stderr) in mailwarden.log.

    settings: top-level keys added to (or replacing those of)
    MAILWARDEN_SETTINGS, written as given (an int, or the configuration
    syntax as a string).  listen_extra is added inside the listen block,
    extra_conf after it.  name/dirname tell two instances apart.  After
    check_run(), last_log holds the log text of that run."""

    name = "mailwarden"

    def __init__(self, base, port, binary, listen_extra="", extra_conf="",
                 client_name="smtp-source", settings=None, name=None,
                 dirname=None, zone_extra=""):
        if name:
            self.name = name
        self.dir = os.path.join(base, dirname or "mailwarden")
        self.zone = os.path.join(self.dir, "bench.zone")
        self.zone_extra = zone_extra
        self.settings = dict(MAILWARDEN_SETTINGS, **(settings or {}))
        self.data = os.path.join(self.dir, "data")
        self.conf = os.path.join(self.dir, "mailwarden.conf")
        self.logfile = os.path.join(self.dir, "mailwarden.log")
        self.port = port
        self.binary = binary
        self.proc = None
        self.log_off = 0
        self.delivered_total = 0
        self.listen_extra = listen_extra
        self.extra_conf = extra_conf
        self.client_name = client_name
        self.last_log = ""

    def start(self):
        os.makedirs(self.data, exist_ok=True)
        with open(self.zone, "w") as f:
            f.write(SPF_ZONE + self.zone_extra)
        settings = "".join(f"{k} = {v}\n" for k, v in self.settings.items())
        with open(self.conf, "w") as f:
            f.write(f"""\
hostname = "bench.test"
local_domains = {{ "localhost", "bench.test" }}
{settings}dns {{
    zone_file = "{self.zone}"
}}
listen smtp {{
    address = "127.0.0.1"
    port = {self.port}
{self.listen_extra}}}
{self.extra_conf}""")
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "-c", self.conf, "--data-dir", self.data],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf,
            start_new_session=True)
        wait_ready(self, lambda: self.proc.poll() is None)

    def stop(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{PROG}: mailwarden ignored SIGTERM for 10s; killing it")
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
        else:
            log(f"{PROG}: note: mailwarden had already exited with status "
                f"{p.returncode}")
        self.logf.close()

    def pids(self):
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def count_delivered(self):
        n = 0
        maildirs = os.path.join(self.data, "mail")
        for root, _dirs, files in os.walk(maildirs):
            if os.path.basename(root) in ("new", "cur"):
                n += len(files)
        return n

    def state(self):
        text, _ = read_from(self.logfile, self.log_off)
        queued = len(re.findall(r"(?m)\bevent=queued\b", text))
        delivered = self.count_delivered() - self.delivered_total
        return queued, delivered, True

    def check_run(self, count, rc, src_out):
        problems = []
        if rc != 0:
            problems.append(f"{self.client_name} exit status {rc}: "
                            f"{src_out.strip()[-500:]}")
        # The queued line may be written just after the 250 reply; wait for
        # it, and for delivery into the Maildirs to finish so that it does
        # not overlap the next (postfix) run.
        alive = lambda: self.proc is not None and self.proc.poll() is None
        (queued, delivered, _), drain, drained = wait_drain(self.state, count,
                                                            rc, alive)
        text, self.log_off = read_from(self.logfile, self.log_off)
        self.last_log = text
        queued = len(re.findall(r"(?m)\bevent=queued\b", text))
        self.delivered_total += delivered
        if not alive():
            problems.append(f"mailwarden exited (status {self.proc.returncode})")
        if queued != count:
            problems.append(f"{queued} 'event=queued' lines in the log, expected {count}")
        if not drained:
            problems.append(f"only {delivered} of {queued} queued messages in the "
                            f"Maildirs after {drain:.1f}s")
        bad = [l for l in text.splitlines()
               if re.search(r"\blevel=(warn|error)\b", l)
               or re.search(r"\bevent=(reject\w*|refus\w*|temp\w*fail\w*)\b", l)
               or (l.strip() and not l.startswith("ts="))]
        if bad:
            problems.append(f"{len(bad)} warn/error/reject (or non-logfmt) lines in "
                            "the mailwarden log, e.g.:\n    " + "\n    ".join(bad[:5]))
        return problems, drain, rc == 0 and queued == count


# OpenSMTPD runs from the files of Debian's package, unpacked (not
# installed) into this directory: the package conflicts with postfix
# ("Conflicts: mail-transport-agent"), so installing it would remove the
# Postfix that the benchmarks compare against, and it would start a system
# service on port 25.
OPENSMTPD_CACHE = "/var/cache/mailwarden-bench/opensmtpd"
# Libraries the package depends on (its Depends: line, Debian 12).
OPENSMTPD_LIBS = ["libdb5.3", "libevent-2.1-7", "libpam0g", "libssl3",
                  "zlib1g", "libcrypt1"]


def ensure_opensmtpd():
    """Return (root, version) of an unpacked opensmtpd package, or raise
    BenchError saying why OpenSMTPD cannot run here.

    `apt-get download opensmtpd` fetches the .deb (the ordinary apt client,
    no installation); dpkg-deb -x unpacks it under OPENSMTPD_CACHE.  Its
    privilege-separation users (opensmtpd, opensmtpq) are created as the
    package's postinst would.  Nothing is started here."""
    if shutil.which("unshare") is None:
        die("unshare (util-linux) is missing: cannot give OpenSMTPD a private "
            "/var")
    r = run_quiet(["apt-cache", "show", "--no-all-versions", "opensmtpd"])
    m = re.search(r"(?m)^Version: (\S+)", r.stdout)
    if not m:
        run_quiet(["apt-get", "update", "-qq"],
                  env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        r = run_quiet(["apt-cache", "show", "--no-all-versions", "opensmtpd"])
        m = re.search(r"(?m)^Version: (\S+)", r.stdout)
    if not m:
        die("no opensmtpd package known to apt (apt-cache show opensmtpd)")
    version = m.group(1)
    root = os.path.join(OPENSMTPD_CACHE, version.replace(":", "_"), "root")
    smtpd = os.path.join(root, "usr", "sbin", "smtpd")
    if not os.access(smtpd, os.X_OK):
        log(f"{PROG}: fetching opensmtpd {version} with apt-get download "
            f"(unpacked into {OPENSMTPD_CACHE}, not installed: it conflicts "
            "with postfix)...")
        dl = os.path.dirname(root)
        os.makedirs(dl, exist_ok=True)
        os.chmod(dl, 0o755)
        r = run_quiet(["apt-get", "download", f"opensmtpd={version}"], cwd=dl)
        debs = [f for f in os.listdir(dl) if f.endswith(".deb")]
        if r.returncode != 0 or not debs:
            die(f"apt-get download opensmtpd failed:\n{r.stdout[-1500:]}")
        tmp = root + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        r = run_quiet(["dpkg-deb", "-x", os.path.join(dl, debs[0]), tmp])
        if r.returncode != 0:
            die(f"dpkg-deb -x {debs[0]} failed:\n{r.stdout[-1500:]}")
        os.rename(tmp, root)
    missing = missing_packages(OPENSMTPD_LIBS)
    if missing:
        log(f"{PROG}: installing {' '.join(missing)} (libraries of opensmtpd)...")
        apt_install(missing)
    r = run_quiet(["ldd", smtpd])
    if "not found" in r.stdout:
        die(f"{smtpd} misses libraries:\n{r.stdout}")
    for user, gecos in (("opensmtpd", "OpenSMTPD Daemon"),
                        ("opensmtpq", "OpenSMTPD queue user")):
        if run_quiet(["id", "-g", user]).returncode != 0:
            run_quiet(["addgroup", "--system", "--quiet", user])
        if run_quiet(["id", user]).returncode != 0:
            log(f"{PROG}: creating system user {user} (as the opensmtpd "
                "package does)")
            r = run_quiet(["adduser", "--system", "--quiet", "--home",
                           "/var/lib/opensmtpd/empty", "--no-create-home",
                           "--disabled-password", "--gecos", gecos,
                           "--ingroup", user, user])
            if r.returncode != 0:
                die(f"cannot create user {user}:\n{r.stdout}")
    return root, version


class OpenSMTPD:
    """A private OpenSMTPD instance (smtpd -d, log on stderr in smtpd.log).

    OpenSMTPD's spool (/var/spool/smtpd), chroot (/var/lib/opensmtpd/empty)
    and control socket (/var/run/smtpd.sock) are compiled in, and so is
    /usr/libexec/opensmtpd (its delivery helpers).  It therefore runs in a
    private mount namespace (unshare -m) in which a directory of the temp
    dir is mounted on /var, the unpacked package's libexec on /usr/libexec,
    and a resolv.conf saying "lookup file" on /etc/resolv.conf (its
    resolver then answers the reverse lookup of 127.0.0.1 from /etc/hosts,
    as Postfix's does, instead of asking the network).  Nothing is visible
    outside the namespace except the loopback port.

    Accepted mail for bench.test goes to one Maildir (user opensmtpd),
    delivered by OpenSMTPD's mail.maildir, which fsyncs the file; the queue
    itself does not fsync the message before the 250.  listen_extra is
    added to the listen line, extra_conf before it."""

    name = "opensmtpd"

    def __init__(self, base, port, root, client_name="smtp-source",
                 listen_extra="", extra_conf=""):
        self.dir = os.path.join(base, "opensmtpd")
        self.root = root
        self.port = port
        self.client_name = client_name
        self.listen_extra = listen_extra
        self.extra_conf = extra_conf
        self.conf = os.path.join(self.dir, "smtpd.conf")
        self.logfile = os.path.join(self.dir, "smtpd.log")
        self.var = os.path.join(self.dir, "var")
        self.maildir = os.path.join(self.dir, "maildir")
        self.proc = None
        self.log_off = 0
        self.delivered_total = 0
        self.last_log = ""

    def start(self):
        for d in ("/var/", "/run/", "/usr/libexec/"):
            if (self.dir + "/").startswith(d):
                die(f"the temp dir {self.dir} is under {d}, which OpenSMTPD's "
                    "namespace replaces; set TMPDIR elsewhere")
        for d in (os.path.join(self.var, "spool", "smtpd"),
                  os.path.join(self.var, "lib", "opensmtpd", "empty"),
                  os.path.join(self.var, "run"), self.maildir):
            os.makedirs(d, exist_ok=True)
        for d in (self.dir, self.var, os.path.join(self.var, "lib"),
                  os.path.join(self.var, "lib", "opensmtpd"),
                  os.path.join(self.var, "lib", "opensmtpd", "empty"),
                  os.path.join(self.var, "spool")):
            os.chmod(d, 0o755)
        os.chmod(os.path.join(self.var, "spool", "smtpd"), 0o711)
        shutil.chown(self.maildir, "opensmtpd", "opensmtpd")
        resolv = os.path.join(self.dir, "resolv.conf")
        with open(resolv, "w") as f:
            f.write("lookup file\nnameserver 127.0.0.1\n")
        with open(self.conf, "w") as f:
            f.write(f"""\
# Private benchmark instance; generated by bench/{PROG}.
{self.extra_conf}listen on 127.0.0.1 port {self.port} hostname opensmtpd.bench.test {self.listen_extra}
action "local" maildir "{self.maildir}" virtual {{ "@" = opensmtpd }}
match from any for domain "bench.test" action "local"
match from any for domain "localhost" action "local"
""")
        smtpd = os.path.join(self.root, "usr", "sbin", "smtpd")
        r = run_quiet([smtpd, "-n", "-f", self.conf])
        if r.returncode != 0:
            die(f"smtpd -n -f {self.conf} failed:\n{r.stdout}")
        libexec = os.path.join(self.root, "usr", "libexec")
        # /var last (the unpacked package lives under /var/cache), and
        # smtpd runs from a copy in the temp dir.
        shutil.copy2(smtpd, os.path.join(self.dir, "smtpd"))
        smtpd = os.path.join(self.dir, "smtpd")
        script = (f"mount --bind {libexec} /usr/libexec && "
                  f"mount --bind {resolv} /etc/resolv.conf && "
                  f"mount --bind {self.var} /var && "
                  f"exec {smtpd} -d -f {self.conf}")
        self.logf = open(self.logfile, "ab")
        self.proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=self.logf, stderr=self.logf,
            start_new_session=True)
        wait_ready(self, lambda: self.proc.poll() is None)
        _, self.log_off = read_from(self.logfile, 0)

    def stop(self):
        if self.proc is None:
            return
        p, self.proc = self.proc, None
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                log(f"{PROG}: opensmtpd ignored SIGTERM for 10s; killing it")
        # Its children (and delivery helpers) are in the same session.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        self.logf.close()

    def pids(self):
        if self.proc is None or self.proc.poll() is not None:
            return []
        return proc_tree(self.proc.pid)

    def count_delivered(self):
        n = 0
        for sub in ("new", "cur"):
            try:
                n += len(os.listdir(os.path.join(self.maildir, sub)))
            except FileNotFoundError:
                pass
        return n

    def state(self):
        text, _ = read_from(self.logfile, self.log_off)
        queued = len(re.findall(r"(?m) smtp message msgid=", text))
        delivered = self.count_delivered() - self.delivered_total
        return queued, delivered, True

    def check_run(self, count, rc, src_out):
        problems = []
        if rc != 0:
            problems.append(f"{self.client_name} exit status {rc}: "
                            f"{src_out.strip()[-500:]}")
        alive = lambda: self.proc is not None and self.proc.poll() is None
        (queued, delivered, _), drain, drained = wait_drain(self.state, count,
                                                            rc, alive)
        text, self.log_off = read_from(self.logfile, self.log_off)
        self.last_log = text
        queued = len(re.findall(r"(?m) smtp message msgid=", text))
        self.delivered_total += delivered
        if not alive():
            problems.append("opensmtpd exited")
        if queued != count:
            problems.append(f"{queued} 'smtp message' lines in the log, "
                            f"expected {count}")
        if not drained:
            problems.append(f"only {delivered} of {queued} queued messages in "
                            f"the Maildir after {drain:.1f}s")
        bad = [l for l in text.splitlines()
               if re.match(r"(warn|fatal|error|crit)\b", l)
               or re.search(r"\bresult=(TempFail|PermFail|Error)\b", l)
               or re.search(r"\bsmtp failed-command\b", l)]
        if bad:
            problems.append(f"{len(bad)} warn/error/failed lines in the "
                            "opensmtpd log, e.g.:\n    " + "\n    ".join(bad[:5]))
        return problems, drain, rc == 0 and queued == count


# --------------------------------------------------------------------------
# processes and memory


def proc_children():
    """{pid: [child pids]} of every process."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces and parens.
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(pid):
    """pid and all its descendants that exist now."""
    kids = proc_children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def smaps_rollup(pid):
    """{'Rss': kB, 'Pss': kB, ...} of one process ({} if it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                m = re.match(r"(\w+):\s+(\d+) kB", line)
                if m:
                    out[m.group(1)] = int(m.group(2))
    except OSError:
        return {}
    return out


def memory_of(pids):
    """Sum of Rss and Pss (kB) over the processes, and how many were read."""
    rss = pss = n = 0
    for p in pids:
        m = smaps_rollup(p)
        if m:
            rss += m.get("Rss", 0)
            pss += m.get("Pss", 0)
            n += 1
    return {"rss_kb": rss, "pss_kb": pss, "procs": n}


def tcp_ext_counters():
    """The kernel's TcpExt counters (/proc/net/netstat), machine-wide, e.g.
    ListenOverflows: SYNs dropped because a listen queue was full."""
    out = {}
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return out
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:") and values.startswith("TcpExt:"):
            out.update(zip(names.split()[1:], map(int, values.split()[1:])))
    return out


def raise_nofile(n):
    """Raise this process's RLIMIT_NOFILE (and so its children's) to at
    least n; return the new soft limit."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= n:
        return soft
    if hard < n:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
            return n
        except (ValueError, OSError):
            n = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))
    return n


# Seconds to wait for a server's queue to drain after a run; set by init().
DRAIN_TIMEOUT = 120


def init(prog):
    """Set the prefix of messages and read the environment shared by all
    the scripts; call before anything else."""
    global PROG, DRAIN_TIMEOUT
    PROG = prog
    DRAIN_TIMEOUT = env_int("BENCH_DRAIN_TIMEOUT", 120)


def wait_drain(state, count, rc, alive):
    """Poll state() -> (queued, delivered, idle) until all `count` messages
    are queued and delivered.  If fewer were queued (the client aborted, or
    refusals with --keep-going), settle for whatever was queued once nothing
    has changed for a while.  Returns (last state, seconds, drained?)."""
    t0 = time.monotonic()
    settle = 1.0 if rc != 0 else 3.0
    last, since = None, t0
    while True:
        st = state()
        queued, delivered, idle = st
        now = time.monotonic()
        if st != last:
            last, since = st, now
        done = delivered >= queued and idle
        if done and queued >= count:
            return st, now - t0, True
        if done and now - since >= settle:
            return st, now - t0, True
        if now - t0 >= DRAIN_TIMEOUT or not alive():
            return st, now - t0, False
        time.sleep(0.05)


def wait_ready(server, alive, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            die(f"{server.name} exited during startup; see "
                f"{getattr(server, 'logfile', getattr(server, 'maillog', ''))}:\n"
                + tail_file(getattr(server, "logfile", None)
                            or getattr(server, "maillog", None)))
        if port_open(server.port):
            return
        time.sleep(0.05)
    die(f"{server.name} did not accept connections on 127.0.0.1:{server.port} "
        f"within {timeout}s")


def tail_file(path, n=20):
    if not path:
        return ""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


SMTP_SINK = "/usr/sbin/smtp-sink"


class Sink:
    """smtp-sink on 127.0.0.2, its message counter read from -c output."""

    def __init__(self, port):
        self.port = port
        self.count = 0
        self.proc = subprocess.Popen([SMTP_SINK, "-c", "-u", "postfix", f"127.0.0.2:{port}", "1024"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        deadline = time.monotonic() + 10
        while not port_open_at("127.0.0.2", port):
            if time.monotonic() > deadline:
                raise BenchError("smtp-sink did not start")
            time.sleep(0.05)

    def _read(self):
        tail = b""
        while True:
            b = self.proc.stdout.read1(65536)
            if not b:
                return
            tail = (tail + b)[-200:]
            m = re.findall(rb"mesg=(\d+)", tail)
            if m:
                self.count = int(m[-1])

    def stop(self):
        self.proc.kill()
        self.proc.wait()



# --------------------------------------------------------------------------
# results


def fmt_stats(rates):
    if not rates:
        return "-", "-"
    return (f"{statistics.median(rates):.1f}",
            f"{min(rates):.1f}-{max(rates):.1f}")


# --------------------------------------------------------------------------
# clean-up

# Servers to stop on exit (most recently started stopped first).
cleanup_list = []
# The load generator currently running, killed on exit.
current_child = None


def cleanup(base, keep):
    # A second Ctrl-C must not interrupt the clean-up itself.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    if current_child is not None and current_child.poll() is None:
        current_child.kill()
    for s in reversed(cleanup_list):
        try:
            s.stop()
        except Exception as e:  # keep cleaning up
            log(f"{PROG}: error stopping {s.name}: {e}")
    cleanup_list.clear()
    # Wait for Postfix children that still have their cwd in the temp dir.
    deadline = time.monotonic() + 10
    while procs_using(base) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = procs_using(base)
    if left:
        log(f"{PROG}: processes still using {base}: {left}")
    if keep:
        log(f"{PROG}: kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_main(main):
    """Run main() with signal handling; exit with its status (2 on a
    BenchError, 130 when interrupted).  main() cleans up in a finally."""
    # Explicit, so that Ctrl-C also cleans up when SIGINT was inherited as
    # ignored (e.g. started in the background by a script).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    try:
        sys.exit(main())
    except BenchError as e:
        log(f"{PROG}: error: {e}")
        sys.exit(2)
    except KeyboardInterrupt:
        log(f"{PROG}: interrupted; cleaned up")
        sys.exit(130)
