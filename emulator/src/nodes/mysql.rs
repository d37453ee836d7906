//! v1's MySQL node (`vcap-services/mysql/lib/mysql_service/node.rb`) over one shared MariaDB (or
//! MySQL) server, started on the first provision:
//!
//! - provision: a database `d<id>` and a user `u<id>` with password `p<id>`, granted everything
//!   on it from anywhere (`'%'`) and from `localhost`;
//! - bind: a further user per bound app, with the same grants;
//! - unbind: that user dropped;
//! - unprovision: the database dropped, and every user granted on it.
//!
//! The server listens on a loopback port for apps and on a socket in its directory for afemu,
//! which reaches it as the system user it runs as (MariaDB's `unix_socket` authentication).

use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::probe::Mysql as Programs;
use super::server::{Server, ServerSpec, Shared};
use super::{Context, NodeError, database_credentials, identifier, new_id, run_client, run_setup};

pub(crate) struct Node {
    programs: Programs,
    context: Context,
    dir: PathBuf,
    server: Shared,
}

impl Node {
    pub(crate) fn new(programs: Programs, context: Context) -> Node {
        let dir = context.root.join("mysql");
        Node {
            programs,
            context,
            dir,
            server: Shared::default(),
        }
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    pub(crate) fn port(&self) -> Option<u16> {
        self.server.port()
    }

    pub(crate) fn servers(&self) -> Vec<Arc<Server>> {
        self.server.servers()
    }

    /// The server, initialised and started if it is not running yet; ready.
    async fn running(&self) -> Result<Arc<Server>, NodeError> {
        self.server.running(self.start()).await
    }

    /// The system user afemu runs as: MariaDB's administrator through the socket.
    fn admin() -> Result<String, NodeError> {
        nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .ok_or_else(|| NodeError("afemu's own user has no name in the user database".into()))
    }

    async fn start(&self) -> Result<Arc<Server>, NodeError> {
        let data = self.dir.join("data");
        super::private_dir(&self.dir)?;
        let socket_len = self.socket().as_os_str().len();
        if socket_len > 107 {
            return Err(NodeError(format!(
                "MariaDB's socket would be {socket_len} bytes long (at most 107): use a shorter \
                 --data-dir"
            )));
        }
        // mariadb-install-db is a shell script that splits its paths at spaces.
        if self.dir.to_string_lossy().contains(char::is_whitespace) {
            return Err(NodeError(format!(
                "MariaDB's setup cannot use a directory with a space in its path ({}): use \
                 another --data-dir",
                self.dir.display()
            )));
        }
        // As root, run it as the user Debian made for it, as its packaged service does.
        let run_as = super::unprivileged_user("mysql")?;
        let log = self.dir.join("server.log");
        // Its temporary files in a directory of its own: afemu's TMPDIR may not be writable by
        // the user it runs as.
        let tmp = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp)?;
        let env = vec![("TMPDIR".into(), tmp.clone().into_os_string())];
        if !super::initialised(&self.dir) {
            // A directory left by an initialisation that was cut short is made again.
            if data.exists() {
                std::fs::remove_dir_all(&data)?;
            }
            std::fs::create_dir_all(&data)?;
            if let Some((user, name)) = &run_as {
                super::hand_over(&[&self.dir, &data, &tmp], &self.context.root, *user)?;
                super::check_reachable(&data, *user, name).await?;
            }
            tracing::info!(dir = %data.display(), "mysql: initialising the server's data directory");
            let mut args: Vec<std::ffi::OsString> = vec![
                "--no-defaults".into(),
                format!("--datadir={}", data.display()).into(),
                "--auth-root-authentication-method=socket".into(),
                format!("--auth-root-socket-user={}", Self::admin()?).into(),
                "--skip-test-db".into(),
            ];
            if let Some((_, name)) = &run_as {
                args.push(format!("--user={name}").into());
            }
            run_setup(
                &self.programs.install_db,
                &args,
                &env,
                &self.dir,
                &log,
                None,
            )
            .await?;
            super::mark_initialised(&self.dir)?;
        } else if let Some((user, _)) = &run_as {
            super::hand_over(&[&self.dir, &tmp], &self.context.root, *user)?;
        }
        let port = super::server::stable_port(&self.dir.join("port"))?;
        let spec = ServerSpec {
            name: "mysql".into(),
            program: self.programs.server.clone(),
            args: vec![
                "--no-defaults".into(),
                format!("--datadir={}", data.display()).into(),
                format!("--port={port}").into(),
                "--bind-address=127.0.0.1".into(),
                format!("--socket={}", self.socket().display()).into(),
                format!("--pid-file={}", self.dir.join("mysqld.pid").display()).into(),
                "--skip-name-resolve".into(),
                "--max-connections=200".into(),
                format!("--tmpdir={}", tmp.display()).into(),
            ],
            dir: self.dir.clone(),
            env,
            log,
            ready_line: "ready for connections",
            stop_signal: Signal::SIGTERM,
            run_as: run_as.map(|(user, _)| user),
            port,
        };
        Ok(self.context.start_server(spec))
    }

    async fn sql(&self, sql: &str) -> Result<String, NodeError> {
        let args = [
            "--no-defaults".to_owned(),
            "--protocol=socket".to_owned(),
            format!("--socket={}", self.socket().display()),
            format!("--user={}", Self::admin()?),
            "--batch".to_owned(),
            "--skip-column-names".to_owned(),
        ];
        run_client(&self.programs.client, &args, sql).await
    }

    /// A user with every right on the database, from anywhere and from the socket.
    fn grant(name: &str, user: &str, password: &str) -> String {
        let mut sql = String::new();
        for host in ["%", "localhost"] {
            sql.push_str(&format!(
                "CREATE USER IF NOT EXISTS '{user}'@'{host}' IDENTIFIED BY '{password}';\n\
                 ALTER USER '{user}'@'{host}' IDENTIFIED BY '{password}';\n\
                 GRANT ALL ON `{name}`.* TO '{user}'@'{host}';\n"
            ));
        }
        sql
    }

    pub(crate) async fn provision(&self) -> Result<Value, NodeError> {
        let server = self.running().await?;
        // Each drawn on its own: a database's name is no secret, its password must not follow.
        let (name, user, password) = (new_id('d'), new_id('u'), new_id('p'));
        self.create(&name, &user, &password).await?;
        tracing::info!(database = %name, "mysql: provisioned");
        Ok(database_credentials(
            &name,
            server.spec.port,
            &user,
            &password,
        ))
    }

    async fn create(&self, name: &str, user: &str, password: &str) -> Result<(), NodeError> {
        self.sql(&format!(
            "CREATE DATABASE IF NOT EXISTS `{name}`;\n{}FLUSH PRIVILEGES;\n",
            Self::grant(name, user, password)
        ))
        .await?;
        Ok(())
    }

    pub(crate) async fn bind(&self, service: &Value) -> Result<Value, NodeError> {
        let name = identifier(service, "name")?;
        let server = self.running().await?;
        let (user, password) = (new_id('u'), new_id('p'));
        self.sql(&format!(
            "{}FLUSH PRIVILEGES;\n",
            Self::grant(name, &user, &password)
        ))
        .await?;
        tracing::info!(database = %name, %user, "mysql: bound");
        Ok(database_credentials(
            name,
            server.spec.port,
            &user,
            &password,
        ))
    }

    pub(crate) async fn unbind(&self, service: &Value, binding: &Value) -> Result<(), NodeError> {
        let parent = identifier(service, "user")?;
        let user = identifier(binding, "user")?;
        if user == parent {
            return Ok(());
        }
        self.running().await?;
        self.drop_users(&[user.to_owned()]).await?;
        tracing::info!(%user, "mysql: unbound");
        Ok(())
    }

    async fn drop_users(&self, users: &[String]) -> Result<(), NodeError> {
        let mut sql = String::new();
        for user in users {
            for host in ["%", "localhost"] {
                sql.push_str(&format!("DROP USER IF EXISTS '{user}'@'{host}';\n"));
            }
        }
        sql.push_str("FLUSH PRIVILEGES;\n");
        self.sql(&sql).await?;
        Ok(())
    }

    pub(crate) async fn unprovision(&self, service: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        self.running().await?;
        // Every user granted on the database: the service's own and every binding's.
        let granted = self
            .sql(&format!(
                "SELECT DISTINCT User FROM mysql.db WHERE Db = '{name}';\n"
            ))
            .await?;
        let users: Vec<String> = granted
            .lines()
            .map(str::trim)
            // Only names afemu could have made go into the DROP statements.
            .filter(|u| identifier(&serde_json::json!({"user": u}), "user").is_ok())
            .map(str::to_owned)
            .collect();
        self.sql(&format!("DROP DATABASE IF EXISTS `{name}`;\n"))
            .await?;
        self.drop_users(&users).await?;
        tracing::info!(database = %name, "mysql: unprovisioned");
        Ok(())
    }

    pub(crate) async fn restore(
        &self,
        service: &Value,
        bindings: &[Value],
    ) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let user = identifier(service, "user")?;
        let password = identifier(service, "password")?;
        self.running().await?;
        self.create(name, user, password).await?;
        for binding in bindings {
            let user = identifier(binding, "user")?;
            let password = identifier(binding, "password")?;
            self.sql(&format!(
                "{}FLUSH PRIVILEGES;\n",
                Self::grant(name, user, password)
            ))
            .await?;
        }
        Ok(())
    }
}
