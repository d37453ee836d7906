//! v1's PostgreSQL node (`vcap-services/postgresql/lib/postgresql_service/node.rb`) over one
//! shared server, started on the first provision:
//!
//! - provision: a login role `u<id>` with password `p<id>`, a database `d<id>` it owns, and no
//!   access to it for anyone else (`REVOKE ALL … FROM PUBLIC`);
//! - bind: a further login role per bound app, member of the database's role and acting as it
//!   (`ALTER ROLE … SET ROLE`), so that every app bound to the service sees the same tables;
//! - unbind: that role's sessions ended, what it owns dropped, the role dropped;
//! - unprovision: every session on the database ended, the database and its roles dropped.
//!
//! The server listens on a loopback port for apps (password authentication) and on a socket in
//! its data directory for afemu (no one else can open it).

use std::path::PathBuf;
use std::sync::Arc;

use nix::sys::signal::Signal;
use serde_json::Value;

use super::probe::Postgresql as Programs;
use super::server::{Server, ServerSpec, Shared};
use super::{Context, NodeError, database_credentials, identifier, new_id, run_client, run_setup};

/// The superuser initdb makes, reached only through the socket.
const ADMIN: &str = "postgres";
/// Longest path of a Unix socket (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

pub(crate) struct Node {
    programs: Programs,
    context: Context,
    dir: PathBuf,
    server: Shared,
}

/// SQL that makes a login role with this password, or gives one that exists (a restore) this
/// password again.
fn login_role(user: &str, password: &str) -> String {
    format!(
        "SELECT 'CREATE ROLE \"{user}\" LOGIN PASSWORD ''{password}'''\n\
         WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{user}') \\gexec\n\
         ALTER ROLE \"{user}\" LOGIN PASSWORD '{password}';\n"
    )
}

impl Node {
    pub(crate) fn new(programs: Programs, context: Context) -> Node {
        let dir = context.root.join("postgresql");
        Node {
            programs,
            context,
            dir,
            server: Shared::default(),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
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

    async fn start(&self) -> Result<Arc<Server>, NodeError> {
        let data = self.data();
        super::private_dir(&self.dir)?;
        let socket_len = data.as_os_str().len() + "/.s.PGSQL.65535".len();
        if socket_len > MAX_SOCKET_PATH {
            return Err(NodeError(format!(
                "PostgreSQL's socket would be {socket_len} bytes long under {} (at most \
                 {MAX_SOCKET_PATH}): use a shorter --data-dir",
                data.display()
            )));
        }
        // PostgreSQL refuses to run as root.
        let run_as = super::unprivileged_user("postgres")?;
        let log = self.dir.join("server.log");
        if !super::initialised(&self.dir) {
            // A directory left by an initialisation that was cut short is made again.
            if data.exists() {
                std::fs::remove_dir_all(&data)?;
            }
            std::fs::create_dir_all(&data)?;
            if let Some((user, name)) = &run_as {
                super::hand_over(&[&self.dir, &data], &self.context.root, *user)?;
                super::check_reachable(&data, *user, name).await?;
            }
            tracing::info!(dir = %data.display(), "postgresql: initialising the server's data directory");
            run_setup(
                &self.programs.initdb,
                &[
                    "-D".into(),
                    data.clone().into(),
                    "-U".into(),
                    ADMIN.into(),
                    "--auth-local=trust".into(),
                    "--auth-host=scram-sha-256".into(),
                    "--encoding=UTF8".into(),
                    "--locale=C".into(),
                ],
                &[],
                &self.dir,
                &log,
                run_as.as_ref().map(|(user, _)| *user),
            )
            .await?;
            super::mark_initialised(&self.dir)?;
        } else if let Some((user, _)) = &run_as {
            super::hand_over(&[&self.dir], &self.context.root, *user)?;
        }
        let port = super::server::stable_port(&self.dir.join("port"))?;
        let spec = ServerSpec {
            name: "postgresql".into(),
            program: self.programs.postgres.clone(),
            args: [
                "-D".into(),
                data.clone().into_os_string(),
                "-p".into(),
                port.to_string().into(),
                "-c".into(),
                "listen_addresses=127.0.0.1".into(),
                "-c".into(),
                format!("unix_socket_directories={}", data.display()).into(),
                "-c".into(),
                "unix_socket_permissions=0700".into(),
            ]
            .into(),
            dir: self.dir.clone(),
            env: Vec::new(),
            log,
            ready_line: "database system is ready to accept connections",
            stop_signal: Signal::SIGINT,
            run_as: run_as.map(|(user, _)| user),
            port,
        };
        Ok(self.context.start_server(spec))
    }

    /// Runs SQL as the superuser in `database`; the output, unaligned.
    async fn sql(&self, server: &Server, database: &str, sql: &str) -> Result<String, NodeError> {
        let args = [
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &self.data().display().to_string(),
            "-p",
            &server.spec.port.to_string(),
            "-U",
            ADMIN,
            "-d",
            database,
        ]
        .map(str::to_owned);
        run_client(&self.programs.psql, &args, sql).await
    }

    pub(crate) async fn provision(&self) -> Result<Value, NodeError> {
        let server = self.running().await?;
        // Each drawn on its own: a database's name is no secret, its password must not follow.
        let (name, user, password) = (new_id('d'), new_id('u'), new_id('p'));
        self.create(&server, &name, &user, &password).await?;
        tracing::info!(database = %name, "postgresql: provisioned");
        Ok(database_credentials(
            &name,
            server.spec.port,
            &user,
            &password,
        ))
    }

    /// The database and its owner role (each only if missing: a restore keeps what is there).
    async fn create(
        &self,
        server: &Server,
        name: &str,
        user: &str,
        password: &str,
    ) -> Result<(), NodeError> {
        self.sql(
            server,
            "postgres",
            &format!(
                "{}SELECT 'CREATE DATABASE \"{name}\" OWNER \"{user}\"'\n\
                 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '{name}') \\gexec\n\
                 REVOKE ALL ON DATABASE \"{name}\" FROM PUBLIC;\n\
                 GRANT ALL ON DATABASE \"{name}\" TO \"{user}\";\n",
                login_role(user, password)
            ),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn bind(&self, service: &Value) -> Result<Value, NodeError> {
        let name = identifier(service, "name")?;
        let parent = identifier(service, "user")?;
        let server = self.running().await?;
        let (user, password) = (new_id('u'), new_id('p'));
        self.create_binding(&server, parent, &user, &password)
            .await?;
        tracing::info!(database = %name, %user, "postgresql: bound");
        Ok(database_credentials(
            name,
            server.spec.port,
            &user,
            &password,
        ))
    }

    async fn create_binding(
        &self,
        server: &Server,
        parent: &str,
        user: &str,
        password: &str,
    ) -> Result<(), NodeError> {
        self.sql(
            server,
            "postgres",
            &format!(
                // GRANT, not CREATE … IN ROLE: a restored role that exists already becomes a
                // member too.
                "{}GRANT \"{parent}\" TO \"{user}\";\n\
                 ALTER ROLE \"{user}\" SET ROLE = \"{parent}\";\n",
                login_role(user, password)
            ),
        )
        .await?;
        Ok(())
    }

    pub(crate) async fn unbind(&self, service: &Value, binding: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let parent = identifier(service, "user")?;
        let user = identifier(binding, "user")?;
        if user == parent {
            return Ok(());
        }
        let server = self.running().await?;
        self.sql(
            &server,
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{user}';\n"
            ),
        )
        .await?;
        // What it owns is in the service's database (acting as the parent, it should own
        // nothing, but a role cannot go while it owns something).
        let exists = self
            .sql(
                &server,
                "postgres",
                &format!(
                    "SELECT count(*) FROM pg_database WHERE datname = '{name}';\n\
                     SELECT count(*) FROM pg_roles WHERE rolname = '{user}';\n"
                ),
            )
            .await?;
        let mut counts = exists.lines().map(str::trim);
        let (database, role) = (counts.next() == Some("1"), counts.next() == Some("1"));
        if !role {
            return Ok(());
        }
        if database {
            self.sql(
                &server,
                name,
                &format!("DROP OWNED BY \"{user}\" CASCADE;\n"),
            )
            .await?;
        }
        self.sql(&server, "postgres", &format!("DROP ROLE \"{user}\";\n"))
            .await?;
        tracing::info!(database = %name, %user, "postgresql: unbound");
        Ok(())
    }

    pub(crate) async fn unprovision(&self, service: &Value) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let parent = identifier(service, "user")?;
        let server = self.running().await?;
        self.sql(
            &server,
            "postgres",
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}';\n\
                 DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE);\n\
                 SELECT format('DROP ROLE %I', m.rolname) FROM pg_auth_members a\n\
                   JOIN pg_roles m ON m.oid = a.member JOIN pg_roles p ON p.oid = a.roleid\n\
                   WHERE p.rolname = '{parent}' \\gexec\n\
                 DROP ROLE IF EXISTS \"{parent}\";\n"
            ),
        )
        .await?;
        tracing::info!(database = %name, "postgresql: unprovisioned");
        Ok(())
    }

    pub(crate) async fn restore(
        &self,
        service: &Value,
        bindings: &[Value],
    ) -> Result<(), NodeError> {
        let name = identifier(service, "name")?;
        let parent = identifier(service, "user")?;
        let password = identifier(service, "password")?;
        let server = self.running().await?;
        self.create(&server, name, parent, password).await?;
        for binding in bindings {
            let user = identifier(binding, "user")?;
            if user != parent {
                let password = identifier(binding, "password")?;
                self.create_binding(&server, parent, user, password).await?;
            }
        }
        Ok(())
    }
}
