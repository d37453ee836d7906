#!/usr/bin/env python3
"""afemu from another language: drives `afemu serve` with nothing but HTTP and the /_afemu/
endpoints — reset, load a state fixture, wait for the app's route, send traffic through the
router, read the journal — using only Python's standard library.

    python3 tests/admin_api.py AFEMU_BINARY STATE_FIXTURE

Exits 0 when every check holds; prints what failed otherwise.
"""
import json
import signal
import subprocess
import sys
import urllib.request


def call(method, url, body=None, headers=None):
    data = None if body is None else body.encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def check(condition, message):
    if not condition:
        print("FAILED:", message)
        sys.exit(1)


def main():
    binary, fixture = sys.argv[1], sys.argv[2]
    afemu = subprocess.Popen(
        [binary, "serve", "--api-addr", "127.0.0.1:0", "--router-addr", "127.0.0.1:0",
         "--profile", "instant"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = afemu.stdout.readline().split()
        api = ready[ready.index("api") + 1]
        router = ready[ready.index("router") + 1]

        status, _, body = call("GET", api + "/_afemu/health")
        check(status == 200 and json.loads(body)["status"] == "ok", "health: %s %s" % (status, body))

        status, _, _ = call("POST", api + "/_afemu/reset")
        check(status == 200, "reset: %s" % status)

        with open(fixture) as f:
            state = f.read()
        status, _, body = call("PUT", api + "/_afemu/state", state, {"Content-Type": "application/json"})
        check(status == 200, "load state: %s %s" % (status, body))

        # The fixture's token is valid again, and its app is there.
        status, _, body = call("GET", api + "/apps", headers={"AUTHORIZATION": "fixture-token-0001"})
        check(status == 200 and [a["name"] for a in json.loads(body)] == ["example"], "apps: %s" % body)

        # Wait for the app's route: the journal's long poll is the event to wait on, but the
        # route table tells when the instances are registered. Poll it with the API's own wait.
        since = 0
        for _ in range(600):
            status, _, body = call("GET", api + "/_afemu/routes")
            backends = json.loads(body)["hosts"].get("example.com", [])
            if len(backends) == 2:
                break
            # Not yet: wait for any journal activity or half a second, whichever comes first.
            call("GET", api + "/_afemu/journal?since=%d&wait=500ms" % since)
        check(len(backends) == 2, "example.com has two instances: %s" % body)

        for _ in range(4):
            status, headers, body = call("GET", router + "/", headers={"Host": "example.com"})
            check(status == 200 and "example v1" in body, "through the router: %s" % status)
        status, headers, _ = call("GET", router + "/", headers={"Host": "nowhere.example"})
        check(status == 404 and headers.get("x-afemu-router-error") == "no-route", "no route: %s" % headers)

        status, _, lines = call("GET", api + "/_afemu/journal?since=0")
        entries = [json.loads(line) for line in lines.splitlines() if line]
        served = [e for e in entries if e.get("host") == "example.com"]
        check(len(served) == 4 and {e["instance"] for e in served} == {0, 1}, "journal: %s" % served)
        check(all(e["app"] == "example" and e["status"] == 200 for e in served), "served by example")
        check(any(e.get("router_error") == "no-route" for e in entries), "the 404 is recorded")

        # A reset empties everything again.
        call("POST", api + "/_afemu/reset")
        status, _, _ = call("GET", api + "/apps", headers={"AUTHORIZATION": "fixture-token-0001"})
        check(status == 403, "the token is gone after a reset: %s" % status)
        status, _, lines = call("GET", api + "/_afemu/journal?since=0")
        check(all("host" not in json.loads(line) for line in lines.splitlines() if line),
              "the journal holds no request after a reset: %s" % lines)
        print("ok")
    finally:
        afemu.send_signal(signal.SIGTERM)
        afemu.wait(timeout=60)


if __name__ == "__main__":
    main()
