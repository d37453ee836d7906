#!/bin/sh
# The benchmark's backend app: nginx answering every request with the same small body on the port
# afemu gives the instance ($VCAP_APP_PORT). afemu runs it as `sh start.sh -p PORT` (v1's startup
# script appended `-p PORT`); the arguments are not needed. $NGINX is the nginx binary, set in the
# app's environment by bench/bench.py.
set -e
dir=$(pwd)
mkdir -p "$dir/tmp"
cat > "$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/tmp/body;
  proxy_temp_path $dir/tmp/proxy;
  fastcgi_temp_path $dir/tmp/fastcgi;
  uwsgi_temp_path $dir/tmp/uwsgi;
  scgi_temp_path $dir/tmp/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$VCAP_APP_PORT;
    location / {
      default_type text/plain;
      return 200 "hello from the afemu benchmark backend\n";
    }
  }
}
CONF
exec "${NGINX:-nginx}" -e stderr -p "$dir/" -c "$dir/nginx.conf"
