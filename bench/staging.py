#!/usr/bin/env python3
"""Times staging through the v1 API of a fresh `afemu serve --profile instant` (no simulated
delays: the time is the real work): the PUT that starts an app stages it before it answers, as
v1's cloud controller did, so its duration is the staging.

    python3 bench/staging.py AFEMU_BINARY [RUNS]

Cases: a node app with 10 dependencies from the npm registry (the machine's npm configuration),
with an empty staging cache (cold) and with the cache the cold staging filled (cached); a Python
app whose requirements.txt names `requests` (5 packages from the package index), cold and
cached; a Bundler app whose one gem is in vendor/cache; a WAR (a servlet compiled here with javac)
given to Jetty. Each run uses a new afemu and data directory; the cold runs a new cache. For each,
the staging (the PUT) and the time until the instance was RUNNING; the figures are the median,
least and most over the runs, in seconds. docs/PERFORMANCE.md
("Staging") has the results."""
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
import zipfile

NODE_DEPENDENCIES = {
    "ms": "2.1.3",
    "debug": "4.3.7",
    "uuid": "9.0.1",
    "semver": "7.6.3",
    "minimist": "1.2.8",
    "commander": "12.1.0",
    "dotenv": "16.4.5",
    "lodash": "4.17.21",
    "chalk": "4.1.2",
    "qs": "6.13.0",
}


def call(api, token, method, path, body=None, content_type="application/json", raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = token
    request = urllib.request.Request(api + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=600) as response:
        text = response.read()
        return json.loads(text) if text else None


def zip_dir(directory):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for root, _, files in os.walk(directory):
            for name in files:
                path = os.path.join(root, name)
                archive.write(path, os.path.relpath(path, directory))
    return buffer.getvalue()


def upload(api, token, name, directory):
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nput\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"resources\"\r\n\r\n[]\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"application\"; "
        f"filename=\"app.zip\"\r\nContent-Type: application/zip\r\n\r\n"
    ).encode() + zip_dir(directory) + f"\r\n--{boundary}--\r\n".encode()
    call(api, token, "POST", f"/apps/{name}/application", raw=body,
         content_type=f"multipart/form-data; boundary={boundary}")


def stage(api, token, name, framework, directory, command=None):
    """Creates, uploads and starts the app: the seconds the starting PUT took (the staging), and
    until the instance was RUNNING (its port accepted a connection: the app has a URI, without which
    v1 counted it ready at once)."""
    staging = {"framework": framework}
    if command:
        staging["command"] = command
    call(api, token, "POST", "/apps", {
        "name": name, "staging": staging, "uris": [f"{name}.bench.example.com"], "instances": 1,
        "resources": {"memory": 256},
    })
    upload(api, token, name, directory)
    document = call(api, token, "GET", f"/apps/{name}")
    document["state"] = "STARTED"
    start = time.monotonic()
    call(api, token, "PUT", f"/apps/{name}", document)
    staged = time.monotonic() - start
    while True:
        instances = call(api, token, "GET", f"/apps/{name}/instances")["instances"]
        if instances and instances[0]["state"] == "RUNNING":
            return staged, time.monotonic() - start
        if time.monotonic() - start > 120:
            raise RuntimeError(f"{name} is not RUNNING: {instances}")
        time.sleep(0.02)


def node_app(scratch):
    app = os.path.join(scratch, "node")
    os.makedirs(app)
    with open(os.path.join(app, "package.json"), "w") as f:
        json.dump({"name": "bench", "version": "1.0.0", "dependencies": NODE_DEPENDENCIES}, f)
    with open(os.path.join(app, "server.js"), "w") as f:
        f.write("require('http').createServer((q, s) => s.end('ok')).listen(process.env.VCAP_APP_PORT);\n")
    return app


def python_app(scratch):
    app = os.path.join(scratch, "python")
    os.makedirs(app)
    with open(os.path.join(app, "requirements.txt"), "w") as f:
        f.write("requests==2.32.3\n")
    with open(os.path.join(app, "app.py"), "w") as f:
        f.write("import os, requests, http.server\n"
                "http.server.HTTPServer(('127.0.0.1', int(os.environ['VCAP_APP_PORT'])),"
                " http.server.SimpleHTTPRequestHandler).serve_forever()\n")
    return app


def bundler_app(scratch):
    gem = os.path.join(scratch, "gem")
    os.makedirs(os.path.join(gem, "lib"))
    with open(os.path.join(gem, "tinygem.gemspec"), "w") as f:
        f.write('Gem::Specification.new do |s|\n  s.name = "tinygem"\n  s.version = "1.0.0"\n'
                '  s.summary = "bench"\n  s.authors = ["afemu"]\n  s.files = ["lib/tinygem.rb"]\nend\n')
    with open(os.path.join(gem, "lib", "tinygem.rb"), "w") as f:
        f.write("module Tinygem; def self.hello; 'hello'; end; end\n")
    subprocess.run(["gem", "build", "tinygem.gemspec"], cwd=gem, check=True, capture_output=True)
    app = os.path.join(scratch, "ruby")
    os.makedirs(os.path.join(app, "vendor", "cache"))
    shutil.copy(os.path.join(gem, "tinygem-1.0.0.gem"), os.path.join(app, "vendor", "cache"))
    with open(os.path.join(app, "Gemfile"), "w") as f:
        f.write('source "https://rubygems.org"\ngem "tinygem"\n')
    with open(os.path.join(app, "main.rb"), "w") as f:
        f.write("require 'socket'\nrequire 'tinygem'\nport = ARGV[ARGV.index('-p') + 1].to_i\n"
                "server = TCPServer.new('127.0.0.1', port)\nloop do\n  c = server.accept\n"
                "  c.gets\n  c.write(\"HTTP/1.0 200 OK\\r\\n\\r\\n#{Tinygem.hello}\")\n  c.close\nend\n")
    return app


def war_app(scratch):
    source = os.path.join(scratch, "servlet")
    classes = os.path.join(scratch, "war", "WEB-INF", "classes")
    os.makedirs(source)
    os.makedirs(classes)
    with open(os.path.join(source, "Hello.java"), "w") as f:
        f.write("import java.io.IOException;\nimport javax.servlet.http.*;\n"
                "public class Hello extends HttpServlet {\n"
                "  protected void doGet(HttpServletRequest q, HttpServletResponse s) throws IOException {\n"
                "    s.getWriter().print(\"hello\");\n  }\n}\n")
    subprocess.run(["javac", "-cp", "/usr/share/java/servlet-api.jar", "-d", classes,
                    os.path.join(source, "Hello.java")], check=True)
    with open(os.path.join(scratch, "war", "WEB-INF", "web.xml"), "w") as f:
        f.write('<web-app xmlns="http://xmlns.jcp.org/xml/ns/javaee" version="3.1">\n'
                "<servlet><servlet-name>h</servlet-name><servlet-class>Hello</servlet-class></servlet>\n"
                "<servlet-mapping><servlet-name>h</servlet-name><url-pattern>/</url-pattern>"
                "</servlet-mapping>\n</web-app>\n")
    return os.path.join(scratch, "war")


class Afemu:
    def __init__(self, binary, cache):
        self.scratch = tempfile.mkdtemp(prefix="afemu-bench-")
        self.process = subprocess.Popen(
            [binary, "serve", "--api-addr", "127.0.0.1:0", "--router-addr", "127.0.0.1:0",
             "--profile", "instant", "--services", "records", "--staging-cache", cache,
             "--data-dir", self.scratch + "/data"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.api = re.search(r"api (http://\S+)", self.process.stdout.readline()).group(1)
        call(self.api, None, "POST", "/users", {"email": "bench@example.com", "password": "pw"})
        self.token = call(self.api, None, "POST", "/users/bench@example.com/tokens",
                          {"password": "pw"})["token"]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def run(binary, apps):
    figures = {}
    cache = tempfile.mkdtemp(prefix="afemu-bench-cache-")
    try:
        afemu = Afemu(binary, cache)
        try:
            figures["node, 10 dependencies, cold"] = stage(afemu.api, afemu.token, "n1", "node", apps["node"])
            figures["node, 10 dependencies, cached"] = stage(afemu.api, afemu.token, "n2", "node", apps["node"])
            figures["python, requests, cold"] = stage(afemu.api, afemu.token, "p1", "standalone", apps["python"], "python3 app.py")
            figures["python, requests, cached"] = stage(afemu.api, afemu.token, "p2", "standalone", apps["python"], "python3 app.py")
            figures["bundler, vendor/cache"] = stage(afemu.api, afemu.token, "r1", "standalone", apps["ruby"], "bundle exec ruby main.rb")
            figures["WAR (java_web)"] = stage(afemu.api, afemu.token, "j1", "java_web", apps["war"])
        finally:
            afemu.stop()
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return figures


def main():
    binary = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    scratch = tempfile.mkdtemp(prefix="afemu-bench-apps-")
    try:
        apps = {"node": node_app(scratch), "python": python_app(scratch),
                "ruby": bundler_app(scratch), "war": war_app(scratch)}
        results = [run(binary, apps) for _ in range(runs)]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"staging, {runs} runs: staged (the PUT) | RUNNING")
    for name in results[0]:
        line = []
        for part in range(2):
            values = sorted(r[name][part] for r in results)
            line.append(f"median {values[len(values) // 2]:.2f} s "
                        f"(least {values[0]:.2f}, most {values[-1]:.2f})")
        print(f"  {name}: " + " | ".join(line))


main()
