#!/usr/bin/env python3
"""Times what a real service costs through the v1 API of a fresh `afemu serve --services real`:
the first provision of a vendor (its server started: for RabbitMQ, afemu's port mapper and a
broker), a further provision, a bind and an unbind (an app updated with and without it, stopped, so
that only the node's work is timed) and a delete.

    python3 bench/services.py AFEMU_BINARY [RUNS] [VENDOR]     # VENDOR defaults to rabbitmq

Each run uses a new data directory and a new afemu; the figures are the median, least and most
over the runs, in seconds. docs/PERFORMANCE.md ("Real services") has the results."""
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def call(api, token, method, path, body=None):
    request = urllib.request.Request(
        api + path,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **({"Authorization": token} if token else {})},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        text = response.read()
        return json.loads(text) if text else None


def timed(figures, name, action):
    start = time.monotonic()
    action()
    figures[name] = time.monotonic() - start


def measure(api, vendor):
    call(api, None, "POST", "/users", {"email": "bench@example.com", "password": "pw"})
    token = call(api, None, "POST", "/users/bench@example.com/tokens", {"password": "pw"})["token"]
    figures = {}
    for name in ["first provision", "further provision"]:
        service = {"vendor": vendor, "name": f"s{len(figures)}"}
        timed(figures, name, lambda: call(api, token, "POST", "/services", service))
    app = {
        "name": "a",
        "staging": {"framework": "wsgi", "runtime": "python2"},
        "uris": [],
        "instances": 1,
        "resources": {"memory": 64},
        "services": [],
    }
    call(api, token, "POST", "/apps", app)
    for name, services in [("bind", ["s0"]), ("unbind", [])]:
        document = call(api, token, "GET", "/apps/a")
        document["services"] = services
        timed(figures, name, lambda: call(api, token, "PUT", "/apps/a", document))
    timed(figures, "delete", lambda: call(api, token, "DELETE", "/services/s1"))
    return figures


def run(binary, vendor):
    scratch = tempfile.mkdtemp(prefix="afemu-bench-")
    # As root, the servers run as their own users: they must pass through.
    subprocess.run(["chmod", "755", scratch], check=True)
    afemu = subprocess.Popen(
        [binary, "serve", "--api-addr", "127.0.0.1:0", "--router-addr", "127.0.0.1:0",
         "--services", "real", "--data-dir", scratch + "/data"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        api = re.search(r"api (http://\S+)", afemu.stdout.readline()).group(1)
        return measure(api, vendor)
    finally:
        afemu.send_signal(signal.SIGTERM)
        afemu.wait()
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    vendor = sys.argv[3] if len(sys.argv) > 3 else "rabbitmq"
    results = [run(binary, vendor) for _ in range(runs)]
    print(f"{vendor}, {runs} runs")
    for name in results[0]:
        values = sorted(r[name] for r in results)
        print(f"  {name}: median {values[len(values) // 2]:.2f} s "
              f"(least {values[0]:.2f}, most {values[-1]:.2f})")


main()
