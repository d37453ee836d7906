//! v1's Redis node (`vcap-services/redis/lib/redis_service/node.rb`): a server of its own per
//! provisioned service, on a port of its own, with a password (`requirepass`); binding hands out
//! the same credentials (`{name, hostname, host, port, password}`), unbinding changes nothing,
//! unprovisioning stops the server and removes its data.
//!
//! Each server keeps its data in its directory (append-only file), so it survives a restart of
//! afemu with the same data directory.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use super::probe::Redis as Programs;
use super::server::{Server, ServerSpec};
use super::{Context, NodeError, identifier};

pub(crate) struct Node {
    programs: Programs,
    context: Context,
    dir: PathBuf,
    /// One server per service, by the service's credentials' `name`.
    servers: tokio::sync::Mutex<BTreeMap<String, Arc<Server>>>,
    current: Mutex<BTreeMap<String, Arc<Server>>>,
}

/// A path as a Redis configuration value: double-quoted, with `\\` and `"` escaped.
fn quoted(path: &std::path::Path) -> Result<String, NodeError> {
    let text = path
        .to_str()
        .filter(|t| !t.contains(['\n', '\r']))
        .ok_or_else(|| {
            NodeError(format!(
                "{} cannot be written in redis.conf",
                path.display()
            ))
        })?;
    Ok(format!(
        "\"{}\"",
        text.replace('\\', "\\\\").replace('"', "\\\"")
    ))
}

impl Node {
    pub(crate) fn new(programs: Programs, context: Context) -> Node {
        let dir = context.root.join("redis");
        Node {
            programs,
            context,
            dir,
            servers: tokio::sync::Mutex::new(BTreeMap::new()),
            current: Mutex::new(BTreeMap::new()),
        }
    }

    pub(crate) fn port(&self, service: &Value) -> Option<u16> {
        let name = service.get("name")?.as_str()?;
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .map(|s| s.spec.port)
    }

    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The service's server, started (with its configuration written) if it is not running.
    async fn running(&self, name: &str, password: &str) -> Result<Arc<Server>, NodeError> {
        let mut servers = self.servers.lock().await;
        if let Some(server) = servers.get(name)
            && super::usable(server)
        {
            let server = server.clone();
            drop(servers);
            server.ready().await.map_err(NodeError)?;
            return Ok(server);
        }
        let dir = self.dir.join(name);
        super::private_dir(&self.dir)?;
        super::private_dir(&dir)?;
        let port = super::server::stable_port(&dir.join("port"))?;
        let socket = dir.join("redis.sock");
        if socket.as_os_str().len() > 107 {
            return Err(NodeError(format!(
                "Redis's socket would be {} bytes long (at most 107): use a shorter --data-dir",
                socket.as_os_str().len()
            )));
        }
        // The password goes in a file only its owner reads, not on a command line; paths are
        // quoted (a data directory may have spaces in it).
        let config = format!(
            "port {port}\nbind 127.0.0.1\nprotected-mode yes\nrequirepass {password}\n\
             dir {dir}\nunixsocket {socket}\nunixsocketperm 700\ndaemonize no\nlogfile \"\"\n\
             appendonly yes\nsave \"\"\n",
            dir = quoted(&dir)?,
            socket = quoted(&socket)?,
        );
        let config_file = dir.join("redis.conf");
        crate::atomic_file::write_atomically(&config_file, config.as_bytes())?;
        // As root, run it as the user Debian made for it (or nobody), as the others.
        let run_as = super::unprivileged_user("redis")?;
        if let Some((user, name)) = &run_as {
            super::hand_over(&[&self.dir, &dir, &config_file], &self.context.root, *user)?;
            super::check_reachable(&dir, *user, name).await?;
        }
        let spec = ServerSpec {
            name: format!("redis {name}"),
            program: self.programs.server.clone(),
            args: vec![config_file.into_os_string()],
            dir: dir.clone(),
            env: Vec::new(),
            log: dir.join("server.log"),
            ready_line: "Ready to accept connections",
            stop_signal: Signal::SIGTERM,
            run_as: run_as.map(|(user, _)| user),
            port,
        };
        let server = self.context.start_server(spec);
        servers.insert(name.to_owned(), server.clone());
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), server.clone());
        drop(servers);
        server.ready().await.map_err(NodeError)?;
        Ok(server)
    }

    pub(crate) async fn provision(&self) -> Result<Value, NodeError> {
        let name = crate::clock::random_hex(16);
        let password = crate::clock::random_hex(16);
        let server = match self.running(&name, &password).await {
            Ok(server) => server,
            Err(error) => {
                // Nothing of a provision that failed is kept: its server, its directory.
                let _ = self.unprovision(&json!({"name": name})).await;
                return Err(error);
            }
        };
        tracing::info!(%name, port = server.spec.port, "redis: provisioned");
        Ok(json!({
            "name": name,
            "hostname": "127.0.0.1",
            "host": "127.0.0.1",
            "port": server.spec.port,
            "password": password,
        }))
    }

    pub(crate) async fn bind(&self, service: &Value) -> Result<Value, NodeError> {
        let name = identifier(service, "name")?;
        let password = identifier(service, "password")?;
        let server = self.running(name, password).await?;
        let mut credentials = service.clone();
        credentials["port"] = json!(server.spec.port);
        Ok(credentials)
    }

    pub(crate) async fn unprovision(&self, service: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let server = self.servers.lock().await.remove(name);
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        if let Some(server) = server {
            server.stop().await;
        }
        let dir = self.dir.join(name);
        if dir.exists() {
            tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir))
                .await
                .map_err(|e| NodeError(e.to_string()))??;
        }
        tracing::info!(%name, "redis: unprovisioned");
        Ok(())
    }

    pub(crate) async fn restore(&self, service: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let password = identifier(service, "password")?;
        self.running(name, password).await?;
        Ok(())
    }
}
