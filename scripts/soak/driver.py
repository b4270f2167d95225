#!/usr/bin/env python3
"""Soak under faults: mixed traffic through a real Portcullis while faults are injected.

Run by scripts/soak.sh (which builds the release binary); by hand:

    python3 scripts/soak/driver.py --bin target/release/portcullis --secs 180

It owns the whole world in a temporary directory: a CA made with `portcullis ca`,
server and client certificates, a CRL, a redis-server, two echo upstreams
(`portcullis echo`) and the gateway with a config that has an HTTP/1.1 + HTTP/2
listener (rate limits shared through Redis, a per-IP connection rate), an mTLS
listener (client_auth = "required", CRL) with an mTLS route and a WebSocket route.

Traffic (threads): HTTP/1.1 GET and POST (requests, keep-alive), HTTP/2 (raw h2 over
TLS), mTLS GETs (requests with a client certificate), WebSocket over wss with a client
certificate (websockets), a rate-limited route (200 and 429 are both answers), and a
"victim" client whose certificate gets revoked.

Faults, one every --fault-every seconds after the warm-up, in rotation: kill and restart
an upstream, SIGHUP reload, rotate the server certificate on disk (then SIGHUP), revoke
the victim's certificate (`portcullis cert revoke` rewrites the CRL the gateway watches),
restart Redis, and flood TLS handshakes from another address (127.0.0.2).

Every request is recorded with its start and end time. A failure is explained only when
it overlaps a fault that can cause it (a killed upstream explains 502s, resets and closed
WebSockets; a revocation explains the victim's refusals); the other faults explain
nothing. The report: requests sent, succeeded, failed by reason and fault, the gateway's
RSS after warm-up and at the end. Exit status 1 when there is an unexplained failure, a
panic in a process' stderr, a fault whose effect was not seen (rotation not served, a
revoked client still served), or RSS growth of 10% or more after warm-up.

`driver.py flood --port P --secs S` is the handshake flood (a separate process, so that
its CPU does not starve the traffic threads' interpreter).
"""

import argparse
import collections
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

# ------------------------------------------------------------------ helpers --


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, secs=20.0):
    deadline = time.time() + secs
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class World:
    """The processes and files of one soak run."""

    def __init__(self, bin_path, work):
        self.bin = os.path.abspath(bin_path)
        self.work = work
        self.ca_dir = os.path.join(work, "ca")
        self.certs = os.path.join(work, "certs")
        self.crl = os.path.join(work, "crl.pem")
        self.config = os.path.join(work, "portcullis.toml")
        self.pub = free_port()
        self.mtls = free_port()
        self.echo_ports = [free_port(), free_port()]
        self.redis_port = free_port()
        self.procs = {}
        self.logs = {}

    def pc(self, *args):
        r = subprocess.run([self.bin, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"portcullis {' '.join(args)} failed: {r.stderr}")
        return r.stdout

    def ca_file(self):
        return os.path.join(self.ca_dir, "root.crt")

    def client(self, name):
        return (os.path.join(self.certs, f"{name}.crt"), os.path.join(self.certs, f"{name}.key"))

    def setup_pki(self, victims):
        self.pc("ca", "init", "--dir", self.ca_dir, "--name", "Soak")
        self.pc("cert", "issue", "server", "localhost", "--ip", "127.0.0.1",
                "--dir", self.ca_dir, "--out", self.certs)
        for name in ["alice"] + [f"victim{i}" for i in range(victims)]:
            self.pc("cert", "issue", "client", name, "--dir", self.ca_dir, "--out", self.certs)
        self.pc("crl", "--dir", self.ca_dir, "--out", self.crl)

    def write_config(self, note=""):
        a, b = self.echo_ports
        text = f"""# Soak configuration (scripts/soak/driver.py){note}
[server]
shutdown_timeout = "5s"

[log]
access_log = "off"
level = "info"

[cluster]
redis = "redis://127.0.0.1:{self.redis_port}"
key_secret = "soak-secret-0123456789abcdef"

[[rate_limit]]
name = "per_ip"
key = "ip"
rate = "100000r/s"
burst = 100000
nodelay = true
on_store_failure = "local"

[[rate_limit]]
name = "per_key"
key = "header:X-Soak-Key"
rate = "20r/s"
burst = 10
nodelay = true
on_store_failure = "local"

[[listener]]
name = "public"
address = "127.0.0.1:{self.pub}"

[listener.limits]
connection_rate_per_ip = "50r/s"
connection_burst_per_ip = 100

[[listener.certificate]]
cert = "certs/localhost.crt"
key = "certs/localhost.key"

[[listener]]
name = "mtls"
address = "127.0.0.1:{self.mtls}"
client_auth = "required"
client_ca = ["ca/root.crt"]
crl = ["crl.pem"]

[[listener.certificate]]
cert = "certs/localhost.crt"
key = "certs/localhost.key"

[[upstream]]
name = "pool"
servers = ["127.0.0.1:{a}", "127.0.0.1:{b}"]
connect_timeout = "1s"
response_timeout = "10s"
max_fails = 1
fail_timeout = "3s"
retries = 1
health_check = {{ path = "/health", interval = "1s", timeout = "1s", fails = 1, passes = 1 }}

[[route]]
name = "api"
path = "/api/"
upstream = "pool"
listeners = ["public"]
rate_limits = ["per_ip"]

[[route]]
name = "limited"
path = "/limited/"
upstream = "pool"
listeners = ["public"]
rate_limits = ["per_key"]

[[route]]
name = "partner"
path = "/partner/"
upstream = "pool"
listeners = ["mtls"]
client_cert = "required"
identity_headers = ["nginx"]

[[route]]
name = "ws"
path = "/ws/"
upstream = "pool"
listeners = ["mtls"]
"""
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, self.config)

    def spawn(self, name, argv, port):
        log = open(os.path.join(self.work, f"{name}.stderr"), "ab")
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=log, cwd=self.work)
        self.procs[name] = p
        self.logs[name] = log.name
        if not wait_port(port):
            raise RuntimeError(f"{name} did not listen on {port}: see {log.name}")
        return p

    def start_echo(self, i):
        port = self.echo_ports[i]
        return self.spawn(f"echo{i}", [self.bin, "echo", "--listen", f"127.0.0.1:{port}"], port)

    def start_redis(self):
        return self.spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind",
                                    "127.0.0.1", "--save", "", "--appendonly", "no"],
                          self.redis_port)

    def start_gateway(self):
        p = self.spawn("gateway", [self.bin, "serve", "--config", self.config], self.pub)
        if not wait_port(self.mtls):
            raise RuntimeError("the mTLS listener did not start")
        return p

    def stop(self, name, sig=signal.SIGTERM):
        p = self.procs.get(name)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self):
        for name in list(self.procs):
            self.stop(name)


# ------------------------------------------------------------------ records --


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.items = []  # (worker, t0, t1, outcome, kind); outcome "ok" or a reason

    def add(self, worker, t0, outcome, kind="request"):
        with self.lock:
            self.items.append((worker, t0, time.time(), outcome, kind))


def reason_of(e):
    """A short, stable reason for an exception (no addresses or ports)."""
    name = type(e).__name__
    text = str(e)
    for k in ["RemoteDisconnected", "ConnectionResetError", "ConnectionRefusedError",
              "BrokenPipe", "Read timed out", "timed out", "CERTIFICATE_VERIFY_FAILED",
              "TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_CERTIFICATE_REVOKED",
              "certificate revoked", "UNEXPECTED_EOF", "EOF occurred", "alert",
              "ProtocolError", "StreamReset", "ConnectionClosed", "IncompleteRead",
              "Max retries exceeded"]:
        if k in text or k in name:
            return f"{name}: {k}"
    return f"{name}: {text[:120]}"


# ------------------------------------------------------------------ workers --


def https_session(world, cert=None):
    import requests

    s = requests.Session()
    # Not the environment's CA bundle or proxies (REQUESTS_CA_BUNDLE would win over verify).
    s.trust_env = False
    s.verify = world.ca_file()
    if cert:
        s.cert = cert
    return s


def h1_get(world, rec, stop, name):
    s = https_session(world)
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.time()
        try:
            r = s.get(f"https://localhost:{world.pub}/api/{name}/{n}?q={n}", timeout=10)
            ok = r.status_code == 200 and r.json().get("path", "").startswith(f"/api/{name}/")
            rec.add(name, t0, "ok" if ok else f"http {r.status_code}")
        except Exception as e:  # noqa: BLE001 - every failure is a data point
            rec.add(name, t0, reason_of(e))
            s = https_session(world)


def h1_post(world, rec, stop, name):
    s = https_session(world)
    while not stop.is_set():
        body = os.urandom(random.randint(1, 8192))
        t0 = time.time()
        try:
            r = s.post(f"https://localhost:{world.pub}/api/post", data=body, timeout=10,
                       headers={"Content-Type": "application/octet-stream"})
            ok = r.status_code == 200 and r.json().get("body_length") == len(body)
            rec.add(name, t0, "ok" if ok else f"http {r.status_code}")
        except Exception as e:  # noqa: BLE001
            rec.add(name, t0, reason_of(e))
            s = https_session(world)


def h2_worker(world, rec, stop, name):
    import h2.config
    import h2.connection
    import h2.events

    while not stop.is_set():
        t0 = time.time()
        try:
            ctx = ssl.create_default_context(cafile=world.ca_file())
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", world.pub), timeout=10),
                                   server_hostname="localhost")
            if sock.selected_alpn_protocol() != "h2":
                raise RuntimeError("no h2 in ALPN")
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sock.sendall(conn.data_to_send())
        except Exception as e:  # noqa: BLE001
            rec.add(name, t0, reason_of(e))
            time.sleep(0.1)
            continue
        try:
            for n in range(500):
                if stop.is_set():
                    break
                t0 = time.time()
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "GET"), (":path", f"/api/h2/{n}"),
                                        (":scheme", "https"),
                                        (":authority", f"localhost:{world.pub}")],
                                  end_stream=True)
                sock.sendall(conn.data_to_send())
                status, done = None, False
                while not done:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("h2 connection closed by the server")
                    for ev in conn.receive_data(data):
                        if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                            status = dict(ev.headers).get(b":status", b"").decode()
                        elif isinstance(ev, h2.events.DataReceived):
                            conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                        elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                            done = True
                        elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                            raise ConnectionError(f"StreamReset {ev.error_code}")
                        elif isinstance(ev, h2.events.ConnectionTerminated):
                            raise ConnectionError(f"ConnectionClosed GOAWAY {ev.error_code}")
                    out = conn.data_to_send()
                    if out:
                        sock.sendall(out)
                rec.add(name, t0, "ok" if status == "200" else f"http {status}")
            conn.close_connection()
            sock.sendall(conn.data_to_send())
        except Exception as e:  # noqa: BLE001
            rec.add(name, t0, reason_of(e))
        finally:
            sock.close()


def mtls_get(world, rec, stop, name):
    s = https_session(world, world.client("alice"))
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.time()
        try:
            r = s.get(f"https://localhost:{world.mtls}/partner/{n}", timeout=10)
            ok = r.status_code == 200 and "CN=alice" in json.dumps(r.json().get("headers"))
            rec.add(name, t0, "ok" if ok else f"http {r.status_code}")
        except Exception as e:  # noqa: BLE001
            rec.add(name, t0, reason_of(e))
            s = https_session(world, world.client("alice"))


def ws_worker(world, rec, stop, name):
    from websockets.sync.client import connect

    ctx = ssl.create_default_context(cafile=world.ca_file())
    ctx.load_cert_chain(*world.client("alice"))
    while not stop.is_set():
        t0 = time.time()
        phase = "open"
        try:
            with connect(f"wss://localhost:{world.mtls}/ws/soak", ssl=ctx, open_timeout=10,
                         close_timeout=5) as ws:
                rec.add(name, t0, "ok", kind="ws-open")
                for i in range(40):
                    if stop.is_set():
                        break
                    t0 = time.time()
                    phase = f"message {i}"
                    msg = f"m{i}-{random.random()}"
                    ws.send(msg)
                    got = ws.recv(timeout=10)
                    rec.add(name, t0, "ok" if got == msg else "ws wrong echo", kind="ws-msg")
                    time.sleep(0.05)
                t0 = time.time()
                phase = "close"
        except Exception as e:  # noqa: BLE001
            code = getattr(getattr(e, "rcvd", None), "code", None)
            rec.add(name, t0, f"{reason_of(e)} (ws {phase}, close code {code})", kind="ws")
            time.sleep(0.1)


def limited_worker(world, rec, stop, name, counts):
    s = https_session(world)
    while not stop.is_set():
        t0 = time.time()
        try:
            r = s.get(f"https://localhost:{world.pub}/limited/x",
                      headers={"X-Soak-Key": "soak"}, timeout=10)
            counts[r.status_code] += 1
            rec.add(name, t0, "ok" if r.status_code in (200, 429) else f"http {r.status_code}")
        except Exception as e:  # noqa: BLE001
            rec.add(name, t0, reason_of(e))
            s = https_session(world)
        time.sleep(0.02)


class Victim:
    """A client whose certificate is revoked by the `revoke` fault; then the next one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.index = 0
        self.revoked_at = {}  # index -> time

    def current(self):
        with self.lock:
            return self.index

    def revoke(self, world):
        with self.lock:
            i = self.index
        world.pc("cert", "revoke", f"victim{i}", "--dir", world.ca_dir, "--crl", world.crl,
                 "--reason", "keyCompromise")
        with self.lock:
            self.revoked_at[i] = time.time()
        return i

    def next(self):
        with self.lock:
            self.index += 1


GRACE = 3.0  # seconds: the CRL file is polled every 250 ms


def victim_worker(world, rec, stop, name, victim, served_after_revocation):
    while not stop.is_set():
        i = victim.current()
        s = https_session(world, world.client(f"victim{i}"))
        while not stop.is_set() and victim.current() == i:
            t0 = time.time()
            try:
                r = s.get(f"https://localhost:{world.mtls}/partner/victim", timeout=10)
                outcome = "ok" if r.status_code == 200 else f"http {r.status_code}"
            except Exception as e:  # noqa: BLE001
                outcome = reason_of(e)
                s = https_session(world, world.client(f"victim{i}"))
            rev = victim.revoked_at.get(i)
            if rev is None or t0 < rev:
                rec.add(name, t0, outcome)
            elif outcome != "ok":
                # Revoked: a refusal is the expected answer.
                rec.add(name, t0, outcome, kind="refused-revoked")
            elif t0 > rev + GRACE:
                served_after_revocation.append((i, t0 - rev))
                rec.add(name, t0, "revoked client served")
            else:
                rec.add(name, t0, "ok")  # the CRL is picked up within GRACE
            time.sleep(0.05)


# ------------------------------------------------------------------ flood ----


def flood(port, secs, threads=6):
    """TLS handshakes as fast as possible from 127.0.0.2; prints counts as JSON."""
    stop = time.time() + secs
    counts = collections.Counter()
    lock = threading.Lock()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def loop():
        while time.time() < stop:
            s = socket.socket()
            try:
                s.bind(("127.0.0.2", 0))
                s.settimeout(5)
                s.connect(("127.0.0.1", port))
                t = ctx.wrap_socket(s, server_hostname="localhost")
                t.close()
                k = "handshakes"
            except OSError:
                k = "refused"
            finally:
                s.close()
            with lock:
                counts[k] += 1

    ts = [threading.Thread(target=loop) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps(dict(counts)))


# ------------------------------------------------------------------ faults ---

# Which failure reasons a fault can explain (substring match on the reason).
UPSTREAM_FAILURES = ["http 502", "http 503", "http 504", "RemoteDisconnected",
                     "ConnectionResetError", "ConnectionClosed", "IncompleteRead",
                     "ProtocolError", "StreamReset", "BrokenPipe", "ws"]
EXPLAINS = {
    "upstream_kill": UPSTREAM_FAILURES,
    "reload": [],
    "rotate_cert": [],
    "revoke": [],  # the victim's refusals are accounted for by the victim worker
    "redis_restart": [],
    "flood": [],
}


def served_cert_der(world, port, client=None):
    ctx = ssl.create_default_context(cafile=world.ca_file())
    if client:
        ctx.load_cert_chain(*client)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as t:
            return t.getpeercert(binary_form=True)


def pem_first_der(path):
    with open(path) as f:
        text = f.read()
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[start:end])


class Faults:
    def __init__(self, world, victim):
        self.world = world
        self.victim = victim
        self.windows = []  # (name, t0, t1, detail)
        self.problems = []  # faults whose effect was not seen
        self.reloads = 0
        self.flood_counts = collections.Counter()

    def hup(self):
        self.world.procs["gateway"].send_signal(signal.SIGHUP)

    def run(self, name):
        t0 = time.time()
        detail = getattr(self, name)()
        # Failures up to 3 s after a fault ends may still be its doing.
        self.windows.append((name, t0, time.time() + 3.0, detail))
        return detail

    def upstream_kill(self):
        i = random.randint(0, 1)
        self.world.stop(f"echo{i}", signal.SIGKILL)
        time.sleep(4)
        self.world.start_echo(i)
        return f"echo{i} killed (SIGKILL), restarted after 4 s"

    def reload(self):
        self.reloads += 1
        self.world.write_config(f"\n# reload {self.reloads}")
        self.hup()
        time.sleep(1)
        return "config rewritten, SIGHUP"

    def rotate_cert(self):
        w = self.world
        new_dir = os.path.join(w.work, f"rotate{len(self.windows)}")
        w.pc("cert", "issue", "server", "localhost", "--ip", "127.0.0.1", "--dir", w.ca_dir,
             "--out", new_dir)
        for ext in ["key", "crt"]:
            tmp = os.path.join(w.certs, f"localhost.{ext}.new")
            shutil.copy(os.path.join(new_dir, f"localhost.{ext}"), tmp)
            os.replace(tmp, os.path.join(w.certs, f"localhost.{ext}"))
        self.hup()
        want = pem_first_der(os.path.join(w.certs, "localhost.crt"))
        deadline = time.time() + 10
        seen = (False, False)
        while time.time() < deadline:
            try:
                seen = (served_cert_der(w, w.pub) == want,
                        served_cert_der(w, w.mtls, w.client("alice")) == want)
            except OSError:
                pass
            if all(seen):
                return "new server certificate served on both listeners"
            time.sleep(0.25)
        self.problems.append(f"rotate_cert: the new certificate is not served (public, mtls) = {seen}")
        return "rotation NOT applied"

    def revoke(self):
        i = self.victim.revoke(self.world)
        time.sleep(GRACE + 2)
        self.victim.next()
        return f"victim{i} revoked"

    def redis_restart(self):
        self.world.stop("redis", signal.SIGKILL)
        time.sleep(3)
        self.world.start_redis()
        return "redis-server killed, restarted after 3 s"

    def flood(self):
        secs = 8
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "flood", "--port",
                              str(self.world.pub), "--secs", str(secs)],
                             capture_output=True, text=True)
        try:
            c = json.loads(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            self.problems.append(f"flood: no result: {out.stderr[-300:]}")
            return "flood failed to run"
        self.flood_counts.update(c)
        if c.get("refused", 0) == 0:
            self.problems.append(f"flood: nothing refused by connection_rate_per_ip: {c}")
        return f"{secs} s from 127.0.0.2: {c.get('handshakes', 0)} handshakes, " \
               f"{c.get('refused', 0)} refused"


# ------------------------------------------------------------------ main -----


def soak(args):
    work = args.dir or tempfile.mkdtemp(prefix="portcullis-soak-")
    os.makedirs(work, exist_ok=True)
    world = World(args.bin, work)
    n_faults = max(1, int((args.secs - args.warmup) / args.fault_every) + 1)
    victim = Victim()
    print(f"soak: {args.secs} s ({args.warmup} s of traffic, then a fault every"
          f" {args.fault_every} s; the first round of faults is warm-up)"
          f" in {work}", flush=True)
    world.setup_pki(victims=n_faults + 2)
    world.write_config()
    world.start_redis()
    world.start_echo(0)
    world.start_echo(1)
    gw = world.start_gateway()
    pid = gw.pid

    rec = Recorder()
    stop = threading.Event()
    limited_counts = collections.Counter()
    served_after_revocation = []
    workers = [
        ("h1-get-a", h1_get, ()), ("h1-get-b", h1_get, ()), ("h1-post", h1_post, ()),
        ("h2", h2_worker, ()), ("mtls", mtls_get, ()), ("wss", ws_worker, ()),
        ("limited", limited_worker, (limited_counts,)),
        ("victim", victim_worker, (victim, served_after_revocation)),
    ]
    threads = [threading.Thread(target=f, args=(world, rec, stop, n, *extra), daemon=True)
               for n, f, extra in workers]
    start = time.time()
    for t in threads:
        t.start()

    faults = Faults(world, victim)
    # RSS sampled twice a second by a thread of its own (faults block the main loop).
    rss_samples = []

    def sample_rss():
        while not stop.is_set():
            rss_samples.append((round(time.time() - start, 1), rss_kb(pid)))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    # Warm-up: --warmup seconds of traffic, then one round of every fault, so
    # that what a first reload, rotation or revocation allocates once (a second
    # runtime while old connections hold the first, TLS caches) is in the
    # baseline. Growth is then measured over the following rounds.
    warm_end = None
    order = ["upstream_kill", "reload", "rotate_cert", "revoke", "redis_restart", "flood"]
    k = 0
    next_fault = start + args.warmup
    end = start + args.secs
    try:
        while time.time() < end:
            now = time.time()
            if gw.poll() is not None:
                print("soak: the gateway exited!", flush=True)
                break
            # Leave the last 10 s without a new fault.
            if now >= next_fault and now < end - 10:
                name = order[k % len(order)]
                k += 1
                t_rel = round(now - start, 1)
                detail = faults.run(name)
                print(f"soak: t={t_rel:6}s fault {name}: {detail}", flush=True)
                next_fault = time.time() + args.fault_every
                if k == len(order):
                    warm_end = time.time() - start
                    print(f"soak: warm-up (traffic + one round of every fault) done at"
                          f" t={warm_end:.1f}s, gateway RSS {rss_kb(pid)} kB", flush=True)
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        alive = gw.poll() is None
        world.stop_all()

    # ---- report ----
    def explained_by(t0, t1, outcome):
        for name, w0, w1, _ in faults.windows:
            if t0 <= w1 and t1 >= w0 and any(x in outcome for x in EXPLAINS[name]):
                return name
        return None

    per_worker = collections.defaultdict(collections.Counter)
    failures = collections.Counter()
    unexplained = []
    refusals = collections.Counter()
    for worker, t0, t1, outcome, kind in rec.items:
        per_worker[worker]["sent"] += 1
        if outcome == "ok":
            per_worker[worker]["ok"] += 1
            continue
        if kind == "refused-revoked":
            per_worker[worker]["refused"] += 1
            refusals[outcome] += 1
            continue
        per_worker[worker]["failed"] += 1
        by = explained_by(t0, t1, outcome)
        failures[(outcome, by or "UNEXPLAINED")] += 1
        if by is None:
            unexplained.append((round(t0 - start, 2), round(t1 - start, 2), worker, outcome))

    panics = []
    for name, log in world.logs.items():
        with open(log, errors="replace") as f:
            for line in f:
                if "panicked" in line:
                    panics.append(f"{name}: {line.strip()}")
    errors_logged = 0
    with open(world.logs["gateway"], errors="replace") as f:
        errors_logged = sum(1 for line in f if " ERROR " in line)

    sent = sum(c["sent"] for c in per_worker.values())
    ok = sum(c["ok"] for c in per_worker.values())
    refused = sum(c["refused"] for c in per_worker.values())
    failed = sent - ok - refused
    # Means over 15 s windows: right after the warm-up, and the last 15 s.
    def mean_rss(t0, t1):
        xs = [r for t, r in rss_samples if r and t0 <= t <= t1]
        return round(sum(xs) / len(xs)) if xs else None

    rss_warm = rss_end = growth = None
    if warm_end is not None and warm_end + 15 <= args.secs - 15:
        rss_warm = mean_rss(warm_end, warm_end + 15)
        rss_end = mean_rss(args.secs - 15, args.secs)
    if rss_warm and rss_end:
        growth = (rss_end - rss_warm) / rss_warm
    else:
        print(f"soak: SOAK_SECS={args.secs} is too short for a warm-up round of faults and"
              " two RSS windows after it", flush=True)
    problems = list(faults.problems)
    if unexplained:
        problems.append(f"{len(unexplained)} unexplained failure(s)")
    if served_after_revocation:
        problems.append(f"revoked clients served {len(served_after_revocation)} time(s)")
    if panics:
        problems.append(f"{len(panics)} panic line(s)")
    if not alive:
        problems.append("the gateway died")
    if growth is None or growth >= 0.10:
        problems.append(f"RSS growth after warm-up {growth}")
    for w, c in per_worker.items():
        if c["ok"] == 0:
            problems.append(f"worker {w} never succeeded")
    if limited_counts[429] == 0:
        problems.append("the rate-limited route never answered 429")
    if refused == 0:
        problems.append("no request of a revoked client was seen refused")

    print()
    print(f"== soak report ({args.secs} s; warm-up: {args.warmup} s of traffic + one round of faults) ==")
    print(f"requests sent {sent}, succeeded {ok}, refused as expected (revoked client)"
          f" {refused}, failed {failed}")
    for w in sorted(per_worker):
        c = per_worker[w]
        print(f"  {w:9} sent {c['sent']:7} ok {c['ok']:7} refused {c['refused']:4}"
              f" failed {c['failed']:4}")
    print(f"  rate-limited route: {limited_counts[200]} x 200, {limited_counts[429]} x 429"
          " (both counted as ok)")
    print(f"  revoked clients: refused {dict(refusals)}; served after revocation + {GRACE} s:"
          f" {len(served_after_revocation)}")
    print("failures by reason and fault:")
    for (outcome, by), n in sorted(failures.items(), key=lambda x: -x[1]):
        print(f"  {n:6}  {outcome}  <- {by}")
    print("faults:")
    for name, w0, w1, detail in faults.windows:
        print(f"  t={w0 - start:6.1f}s  {name:14} {detail}")
    print(f"gateway RSS (15 s means): {rss_warm} kB after warm-up (t={warm_end and round(warm_end)}s),"
          f" {rss_end} kB at the end"
          + (f" ({growth * 100:+.1f}%)" if growth is not None else "")
          + f", peak {max((r for _, r in rss_samples if r), default=None)} kB")
    timeline = [f"{t:.0f}s {r / 1024:.1f}" for t, r in rss_samples[::max(1, len(rss_samples) // 12)] if r]
    print("gateway RSS over time (MiB): " + ", ".join(timeline))
    print(f"gateway ERROR log lines: {errors_logged}; panics: {len(panics)}")
    for p in panics[:10]:
        print(f"  {p}")
    for u in unexplained[:20]:
        print(f"  unexplained: t={u[0]}..{u[1]}s {u[2]}: {u[3]}")
    summary = {
        "secs": args.secs, "warmup": args.warmup, "sent": sent, "ok": ok, "refused": refused,
        "failed": failed,
        "per_worker": {w: dict(c) for w, c in per_worker.items()},
        "failures": [{"reason": o, "fault": b, "count": n} for (o, b), n in failures.items()],
        "faults": [{"fault": n, "t": round(w0 - start, 1), "detail": d}
                   for n, w0, _, d in faults.windows],
        "warm_end": warm_end, "rss_kb_warm": rss_warm, "rss_kb_end": rss_end,
        "rss_growth": growth,
        "rss_samples": rss_samples, "limited": dict(limited_counts),
        "flood": dict(faults.flood_counts), "problems": problems, "work": work,
    }
    with open(os.path.join(work, "soak-report.json"), "w") as f:
        json.dump(summary, f, indent=1)
    if problems:
        print("SOAK FAILED: " + "; ".join(problems))
        return 1
    print("SOAK PASSED")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd")
    fl = sub.add_parser("flood")
    fl.add_argument("--port", type=int, required=True)
    fl.add_argument("--secs", type=float, default=8)
    ap.add_argument("--bin", default="target/release/portcullis")
    ap.add_argument("--secs", type=int, default=int(os.environ.get("SOAK_SECS", "180")))
    ap.add_argument("--warmup", type=int, default=int(os.environ.get("SOAK_WARMUP_SECS", "15")),
                    help="seconds of traffic before the first fault (one round of every"
                         " fault follows, still warm-up)")
    ap.add_argument("--fault-every", type=int, default=6, help="seconds between faults")
    ap.add_argument("--dir", help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory on success")
    args = ap.parse_args()
    if args.cmd == "flood":
        flood(args.port, args.secs)
        return 0
    return soak(args)


if __name__ == "__main__":
    sys.exit(main())
