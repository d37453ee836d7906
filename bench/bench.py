#!/usr/bin/env python3
"""The router benchmark: afemu's router against nginx and HAProxy in front of the same two backends.

Run it through `bench/run.sh`, which installs the tools and builds afemu first. Only the standard
library is used. In one run it:

1. starts `afemu serve` (release build, `--profile instant`) on free loopback ports, and measures
   its idle RSS;
2. pushes, over the v1 API, an app with 2 instances whose start command runs nginx answering a
   fixed body on `$VCAP_APP_PORT` (`bench/backend/start.sh`), and reads the two instance ports
   from the stats API;
3. starts nginx and HAProxy as reverse proxies to the same two ports, with upstream keep-alive;
4. runs wrk through (a) a backend directly, (b) the nginx proxy, (c) the HAProxy proxy, (d) the
   afemu router (its journal on, as always), (e) the afemu router with the dashboard's live feed
   (`/_afemu/live`) open and read throughout (unless DASHBOARD=0), at each connection count,
   interleaved, REPEATS times,
   with wrk and the servers pinned to separate cores (unless PIN=0), and measures the CPU time the
   proxy process(es) used;
5. prints, per configuration, the median over the repeats of requests/s, p50, p99 and proxy CPU
   per 1,000 requests, and the ratios of afemu to the others; then times `afemu check` on a seed
   runbook.

Settings (environment): DURATION (seconds per run, 5), REPEATS (9: the p99 of single runs on a shared
machine is bimodal, for nginx as for afemu, so a median needs more runs than the throughput does), WARMUP (seconds, 2),
CONNECTIONS ("1 32"), LOAD_CPUS and SERVER_CPUS (taskset lists; default: the first half of the
cores for wrk, the rest for the servers), PIN (1; 0: nothing is pinned, every process may run on
any core), WORKERS (the proxies' workers: nginx worker processes, HAProxy threads, afemu tokio
worker threads; default: as many as the server cores), AFEMU (the binary), NGINX and HAPROXY (the
proxies' binaries), RESULTS (a
file to write the report to as well), PROFILE (a file: after the benchmark, record a `perf record
-g` profile of afemu during one more run at the highest connection count; with ONLY_PROFILE=1 the
benchmark itself is skipped), DASHBOARD (1; 0: no run with the live feed open).
"""

import io
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "bench.afemu.test"
EMAIL = "bench@afemu.local"
DASHBOARD = os.environ.get("DASHBOARD", "1") != "0"
TARGETS = ["direct", "nginx", "haproxy", "afemu"] + (["afemu+dashboard"] if DASHBOARD else [])
PROXIES = ["nginx", "haproxy"]

DURATION = int(os.environ.get("DURATION", "5"))
REPEATS = int(os.environ.get("REPEATS", "9"))
WARMUP = int(os.environ.get("WARMUP", "2"))
CONNECTIONS = [int(c) for c in os.environ.get("CONNECTIONS", "1 32").split()]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def fail(message):
    sys.exit(f"bench: {message}")


PIN = os.environ.get("PIN", "1") != "0"


def cpu_split():
    """(load cpus, server cpus) as taskset lists; (None, None) on a single core or unpinned."""
    n = os.cpu_count() or 1
    if not PIN:
        return None, None
    if n < 2:
        return os.environ.get("LOAD_CPUS"), os.environ.get("SERVER_CPUS")
    half = n // 2
    load = "0" if half == 1 else f"0-{half - 1}"
    servers = f"{half}" if n - half == 1 else f"{half}-{n - 1}"
    return os.environ.get("LOAD_CPUS", load), os.environ.get("SERVER_CPUS", servers)


def cpu_count(spec):
    if spec is None:
        return os.cpu_count() or 1
    count = 0
    for part in spec.split(","):
        low, _, high = part.partition("-")
        count += int(high or low) - int(low) + 1
    return count


def pinned(cpus, command):
    return (["taskset", "-c", cpus] if cpus else []) + command


def wait_for_port(port, what, limit=30.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    fail(f"{what} did not listen on port {port} within {limit:.0f} s")


def process_cpu_seconds(pids):
    """User + system CPU time of these processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / CLOCK_TICKS


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Api:
    """Just enough of the v1 API to log in, push an app and read its stats."""

    def __init__(self, base):
        self.base = base
        self.token = None

    def call(self, method, path, body=None, content_type="application/json"):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", content_type)
        if self.token:
            request.add_header("Authorization", self.token)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as error:
            fail(f"{method} {path}: HTTP {error.code}: {error.read().decode()}")
        return json.loads(text) if text.strip() else None

    def login(self):
        self.token = self.call("POST", f"/users/{EMAIL}/tokens", {"password": "bench"})["token"]

    def upload(self, name, zip_bytes):
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="_method"\r\n\r\nput\r\n'.encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="resources"\r\n\r\n[]\r\n'.encode(),
            (f'--{boundary}\r\nContent-Disposition: form-data; name="application"; '
             f'filename="{name}.zip"\r\nContent-Type: application/zip\r\n\r\n').encode(),
            zip_bytes,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
        self.call("POST", f"/apps/{name}/application", b"".join(parts),
                  f"multipart/form-data; boundary={boundary}")


class Afemu:
    def __init__(self, binary, cpus, threads, work):
        env = dict(os.environ, TOKIO_WORKER_THREADS=str(threads), RUST_LOG="warn")
        self.process = subprocess.Popen(
            pinned(cpus, [binary, "serve", "--api-addr", "127.0.0.1:0", "--router-addr", "127.0.0.1:0",
                          "--profile", "instant", "--data-dir", os.path.join(work, "afemu")]),
            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "afemu.log"), "w"), text=True, env=env)
        line = self.process.stdout.readline()
        found = re.search(r"api (http://\S+) router http://127\.0\.0\.1:(\d+)", line)
        if not found:
            fail(f"afemu serve did not say it was ready: {line!r} (see {work}/afemu.log)")
        self.api = Api(found.group(1))
        self.router_port = int(found.group(2))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


class LiveFeed:
    """A reader of afemu's live feed, as the dashboard in a browser reads it: open for as long
    as a run lasts, every message read."""

    def __init__(self, base):
        import threading
        self.ticks = 0
        self.stopped = threading.Event()
        self.response = urllib.request.urlopen(f"{base}/_afemu/live", timeout=30)
        self.opened = time.monotonic()
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        try:
            for line in self.response:
                if self.stopped.is_set():
                    return
                # The messages after the snapshot, which the 100 ms bound is about.
                if line.startswith(b"event: tick"):
                    self.ticks += 1
        except Exception:  # closed under it by close(): the run is over
            pass

    def close(self):
        """Stops reading; the tick messages per second it was open."""
        self.stopped.set()
        rate = self.ticks / max(time.monotonic() - self.opened, 1e-9)
        self.response.close()
        self.thread.join(timeout=5)
        return rate


def push_backends(api, nginx):
    """Pushes the backend app with 2 instances; returns their ports once both are RUNNING."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(os.path.join(HERE, "backend", "start.sh"), "start.sh")
    api.call("POST", "/apps", {
        "name": "bench", "instances": 2, "uris": [HOST], "resources": {"memory": 64},
        "staging": {"model": "standalone", "stack": "standalone", "command": "sh start.sh"},
        "env": [f"NGINX={nginx}"],
    })
    api.upload("bench", archive.getvalue())
    app = api.call("GET", "/apps/bench")
    app["state"] = "STARTED"
    api.call("PUT", "/apps/bench", app)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stats = api.call("GET", "/apps/bench/stats")
        ports = [s["stats"]["port"] for s in stats.values() if s.get("state") == "RUNNING"]
        if len(ports) == 2:
            return sorted(ports)
        time.sleep(0.1)
    fail("the backend instances did not start (nginx missing? see the afemu log)")


def start_nginx_proxy(nginx, cpus, workers, work, backend_ports):
    directory = os.path.join(work, "proxy")
    os.makedirs(os.path.join(directory, "tmp"))
    port = free_port()
    servers = "\n".join(f"    server 127.0.0.1:{p};" for p in backend_ports)
    conf = os.path.join(directory, "nginx.conf")
    with open(conf, "w") as out:
        out.write(f"""daemon off;
worker_processes {workers};
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {directory}/tmp/body;
  proxy_temp_path {directory}/tmp/proxy;
  fastcgi_temp_path {directory}/tmp/fastcgi;
  uwsgi_temp_path {directory}/tmp/uwsgi;
  scgi_temp_path {directory}/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  upstream backends {{
{servers}
    keepalive 256;
    keepalive_requests 10000000;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering on;
    }}
  }}
}}
""")
    process = subprocess.Popen(pinned(cpus, [nginx, "-e", "stderr", "-p", directory + "/", "-c", conf]),
                               stderr=open(os.path.join(work, "nginx-proxy.log"), "w"))
    wait_for_port(port, "the nginx proxy")
    return process, port


def start_haproxy(haproxy, cpus, threads, work, backend_ports):
    """HAProxy as a reverse proxy to the same backends, set up as a person would: HTTP mode,
    keep-alive both ways with connection reuse, X-Forwarded-For, no logging."""
    directory = os.path.join(work, "haproxy")
    os.makedirs(directory)
    port = free_port()
    servers = "\n".join(f"  server s{i} 127.0.0.1:{p}" for i, p in enumerate(backend_ports))
    conf = os.path.join(directory, "haproxy.cfg")
    with open(conf, "w") as out:
        out.write(f"""global
  nbthread {threads}
  maxconn 4096
defaults
  mode http
  timeout connect 10s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend front
  bind 127.0.0.1:{port}
  default_backend apps
backend apps
  balance roundrobin
{servers}
""")
    process = subprocess.Popen(pinned(cpus, [haproxy, "-db", "-f", conf]),
                               stderr=open(os.path.join(work, "haproxy.log"), "w"))
    wait_for_port(port, "HAProxy")
    return process, port


def nginx_pids(master):
    """The nginx master and its workers (the workers do the proxying)."""
    children = subprocess.run(["pgrep", "-P", str(master.pid)], capture_output=True, text=True).stdout
    return [master.pid] + [int(pid) for pid in children.split()]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrk(cpus, connections, duration, port):
    command = pinned(cpus, [
        "wrk", "-t", str(min(connections, cpu_count(cpus))), "-c", str(connections), "-d", f"{duration}s",
        "-H", f"Host: {HOST}", "-s", os.path.join(HERE, "report.lua"), f"http://127.0.0.1:{port}/",
    ])
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    found = re.search(r"^AFEMU-BENCH (.*)$", output, re.M)
    if not found:
        fail(f"wrk printed no report:\n{output}")
    result = json.loads(found.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["errors"] = sum(result[k] for k in ("connect", "read", "write", "status", "timeout"))
    return result


def record_profile(pid, load_cpus, connections, port):
    """`perf record -g` of afemu during one wrk run; the report is for `perf report -i PROFILE`."""
    perf = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-o", os.environ["PROFILE"],
                             "-p", str(pid)], stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # perf attaches asynchronously; a late start only shortens the sample
    result = wrk(load_cpus, connections, DURATION, port)
    perf.send_signal(2)
    perf.wait()
    print(f"profiled {result['requests']} requests into {os.environ['PROFILE']}", file=sys.stderr)


def machine():
    model = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} × {model}, Linux {platform.release()}"


def version(command):
    result = subprocess.run(command, capture_output=True, text=True)
    return (result.stdout + result.stderr).strip().splitlines()[0]


def time_check(binary):
    """Median wall time of `afemu check` on the awaited swap runbook (the seed, 17 lines)."""
    runbook = os.path.join(ROOT, "fixtures", "runbooks", "seed-001-swap-awaited.runbook")
    samples = []
    for _ in range(7):
        started = time.monotonic()
        subprocess.run([binary, "check", runbook], capture_output=True, check=False)
        samples.append(time.monotonic() - started)
    return statistics.median(samples)


def main():
    binary = os.environ.get("AFEMU") or fail("set AFEMU to the afemu binary (bench/run.sh does)")
    nginx = os.environ.get("NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = os.environ.get("HAPROXY") or shutil.which("haproxy") or "/usr/sbin/haproxy"
    shutil.which("wrk") or fail("wrk is not installed (bench/run.sh installs it)")
    load_cpus, server_cpus = cpu_split()
    threads = int(os.environ.get("WORKERS") or cpu_count(server_cpus))
    report = []

    def say(line=""):
        print(line, flush=True)
        report.append(line)

    work = tempfile.mkdtemp(prefix="afemu-bench-")
    afemu = Afemu(binary, server_cpus, threads, work)
    proxy = None
    haproxy_process = None
    try:
        wait_for_port(afemu.router_port, "the afemu router")
        idle_rss = rss_kib(afemu.process.pid)
        afemu.api.login()
        backends = push_backends(afemu.api, nginx)
        proxy, proxy_port = start_nginx_proxy(nginx, server_cpus, threads, work, backends)
        haproxy_process, haproxy_port = start_haproxy(haproxy, server_cpus, threads, work, backends)
        ports = {"direct": backends[0], "nginx": proxy_port, "haproxy": haproxy_port,
                 "afemu": afemu.router_port, "afemu+dashboard": afemu.router_port}
        proxy_pids = {"direct": [], "nginx": nginx_pids(proxy), "haproxy": [haproxy_process.pid],
                      "afemu": [afemu.process.pid], "afemu+dashboard": [afemu.process.pid]}
        feed_rates = []
        for connections in CONNECTIONS:
            for target in TARGETS:
                wrk(load_cpus, connections, WARMUP, ports[target])
        results = {(t, c): [] for t in TARGETS for c in CONNECTIONS}
        repeats = 0 if os.environ.get("ONLY_PROFILE") else REPEATS
        for repeat in range(repeats):
            for connections in CONNECTIONS:
                for target in TARGETS:
                    feed = LiveFeed(afemu.api.base) if target == "afemu+dashboard" else None
                    before = process_cpu_seconds(proxy_pids[target])
                    result = wrk(load_cpus, connections, DURATION, ports[target])
                    used = process_cpu_seconds(proxy_pids[target]) - before
                    if feed:
                        feed_rates.append(feed.close())
                    result["cpu_ms_per_1k"] = used * 1e6 / max(result["requests"], 1)
                    results[(target, connections)].append(result)
                    print(f"  repeat {repeat + 1}/{REPEATS}, {connections:>3} connections, {target:<6}: "
                          f"{result['rps']:>9.0f} req/s, p99 {result['p99_us'] / 1e3:.2f} ms, "
                          f"{result['errors']} errors", file=sys.stderr, flush=True)
        if os.environ.get("PROFILE"):
            record_profile(afemu.process.pid, load_cpus, max(CONNECTIONS), afemu.router_port)
            if not repeats:
                return
        journaled = afemu.api.call("GET", "/_afemu/counters")["last_seq"]
        busy_rss = rss_kib(afemu.process.pid)
    finally:
        for process in (proxy, haproxy_process):
            if process:
                process.terminate()
                process.wait()
        afemu.stop()
        shutil.rmtree(work, ignore_errors=True)

    def med(target, connections, key):
        return statistics.median(r[key] for r in results[(target, connections)])

    say(f"machine: {machine()}")
    say(f"wrk on cpus {load_cpus or 'any'}; the servers (backends, nginx with {threads} worker(s), HAProxy "
        f"with {threads} thread(s), afemu with {threads} tokio worker(s)) on cpus {server_cpus or 'any'}"
        + ("" if PIN else " (nothing pinned)"))
    say(f"{version(['wrk', '-v'])}; {version([nginx, '-v'])}; {version([haproxy, '-v'])}; "
        f"{version([binary, '--version'])}")
    say(f"{REPEATS} repeats × {DURATION} s per configuration, interleaved; medians over the repeats")
    say()
    say("| connections | target | requests/s | p50 | p99 | proxy CPU per 1k requests | errors |")
    say("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for connections in CONNECTIONS:
        for target in TARGETS:
            errors = sum(r["errors"] for r in results[(target, connections)])
            cpu = "—" if target == "direct" else f"{med(target, connections, 'cpu_ms_per_1k'):.1f} ms"
            say(f"| {connections} | {target} | {med(target, connections, 'rps'):,.0f} "
                f"| {med(target, connections, 'p50_us') / 1e3:.3f} ms | {med(target, connections, 'p99_us') / 1e3:.3f} ms "
                f"| {cpu} | {errors} |")
    say()
    say("| connections | afemu / direct (req/s) | vs | afemu / it (req/s) | afemu / it (p99) | afemu / it (CPU per request) |")
    say("| ---: | ---: | --- | ---: | ---: | ---: |")
    for c in CONNECTIONS:
        for other in PROXIES:
            say(f"| {c} | {med('afemu', c, 'rps') / med('direct', c, 'rps'):.2f} | {other} "
                f"| {med('afemu', c, 'rps') / med(other, c, 'rps'):.2f} "
                f"| {med('afemu', c, 'p99_us') / max(med(other, c, 'p99_us'), 1):.2f} "
                f"| {med('afemu', c, 'cpu_ms_per_1k') / max(med(other, c, 'cpu_ms_per_1k'), 1e-9):.2f} |")
    say()
    say("p99 of each repeat, in the order run (ms):")
    say()
    for c in CONNECTIONS:
        for target in PROXIES + ["afemu"]:
            runs = ", ".join(f"{r['p99_us'] / 1e3:.2f}" for r in results[(target, c)])
            say(f"- {c} connection(s), {target}: {runs}")
    say()
    if feed_rates:
        say(f"the live feed, read throughout each afemu+dashboard run: {statistics.median(feed_rates):.1f} "
            f"messages/s after its snapshot (median; at most 10 by design)")
    say(f"afemu idle RSS (serving, no apps): {idle_rss / 1024:.1f} MiB; after the run, with "
        f"{journaled:,} requests journaled: {busy_rss / 1024:.1f} MiB")
    say(f"`afemu check` on seed-001-swap-awaited.runbook: {time_check(binary) * 1e3:.0f} ms (median of 7)")
    if os.environ.get("RESULTS"):
        with open(os.environ["RESULTS"], "w") as out:
            out.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
