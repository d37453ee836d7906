//! Which database servers this machine has: found once per process (the machine does not change
//! under a running afemu), on `PATH` and where Debian puts them (`/usr/sbin`,
//! `/usr/lib/postgresql/<major>/bin`, `/usr/lib/rabbitmq/bin`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// PostgreSQL's programs, from one installation.
#[derive(Clone, Debug)]
pub(crate) struct Postgresql {
    pub(crate) postgres: PathBuf,
    pub(crate) initdb: PathBuf,
    pub(crate) psql: PathBuf,
    pub(crate) version: String,
}

/// MariaDB's (or MySQL's) programs.
#[derive(Clone, Debug)]
pub(crate) struct Mysql {
    pub(crate) server: PathBuf,
    pub(crate) install_db: PathBuf,
    pub(crate) client: PathBuf,
    pub(crate) version: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Redis {
    pub(crate) server: PathBuf,
    pub(crate) version: String,
}

/// RabbitMQ's programs: the broker's own scripts (not Debian's wrappers in `/usr/sbin`, which
/// switch to the `rabbitmq` user with `su` and lose the environment afemu sets) and the
/// Erlang port mapper afemu runs for its brokers.
#[derive(Clone, Debug)]
pub(crate) struct Rabbitmq {
    pub(crate) server: PathBuf,
    pub(crate) ctl: PathBuf,
    pub(crate) epmd: PathBuf,
    pub(crate) version: String,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Machine {
    pub(crate) postgresql: Option<Postgresql>,
    pub(crate) mysql: Option<Mysql>,
    pub(crate) redis: Option<Redis>,
    pub(crate) rabbitmq: Option<Rabbitmq>,
}

impl Postgresql {
    pub(crate) fn describe(&self) -> String {
        format!("PostgreSQL {} at {}", self.version, self.postgres.display())
    }
}

impl Mysql {
    pub(crate) fn describe(&self) -> String {
        format!("{} at {}", self.version, self.server.display())
    }
}

impl Redis {
    pub(crate) fn describe(&self) -> String {
        format!("redis-server {} at {}", self.version, self.server.display())
    }
}

impl Rabbitmq {
    pub(crate) fn describe(&self) -> String {
        format!(
            "rabbitmq-server {} at {}",
            self.version,
            self.server.display()
        )
    }
}

/// What this machine has (probed once).
pub(crate) fn machine() -> Machine {
    static MACHINE: OnceLock<Machine> = OnceLock::new();
    MACHINE
        .get_or_init(|| Machine {
            postgresql: postgresql(),
            mysql: mysql(),
            redis: redis(),
            rabbitmq: rabbitmq(),
        })
        .clone()
}

/// Why a vendor afemu has no node for is a record.
pub(crate) fn unsupported(vendor: &str) -> String {
    let server = match vendor {
        "mongodb" => "mongod",
        other => other,
    };
    if find(server, &["/usr/sbin", "/usr/bin"]).is_some() {
        format!("{server} is installed, but afemu does not run it yet")
    } else {
        format!("{server} not installed")
    }
}

/// A program on `PATH` or in one of `extra`.
fn find(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The first line a program prints for `--version`.
fn version_line(program: &Path) -> Option<String> {
    let output = std::process::Command::new(program)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .next()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
}

fn postgresql() -> Option<Postgresql> {
    // Debian keeps the server out of PATH, one directory per major version: take the newest.
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .collect();
    dirs.sort();
    let in_dir = |dir: &Path| -> Option<(PathBuf, PathBuf, PathBuf)> {
        let at = |name: &str| Some(dir.join(name)).filter(|p| is_executable(p));
        Some((at("postgres")?, at("initdb")?, at("psql")?))
    };
    let (postgres, initdb, psql) =
        dirs.iter()
            .rev()
            .find_map(|(_, dir)| in_dir(dir))
            .or_else(|| {
                Some((
                    find("postgres", &[])?,
                    find("initdb", &[])?,
                    find("psql", &[])?,
                ))
            })?;
    // "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
    let line = version_line(&postgres)?;
    let version = line
        .split_whitespace()
        .nth(2)
        .unwrap_or(line.as_str())
        .to_owned();
    Some(Postgresql {
        postgres,
        initdb,
        psql,
        version,
    })
}

fn mysql() -> Option<Mysql> {
    let sbin = ["/usr/sbin", "/usr/local/sbin"];
    let server = find("mariadbd", &sbin).or_else(|| find("mysqld", &sbin))?;
    let install_db =
        find("mariadb-install-db", &sbin).or_else(|| find("mysql_install_db", &sbin))?;
    let client = find("mariadb", &[]).or_else(|| find("mysql", &[]))?;
    // "/usr/sbin/mariadbd  Ver 10.11.14-MariaDB-0+deb12u2 for debian-linux-gnu on x86_64 (Debian 12)"
    let line = version_line(&server)?;
    let version = line
        .split_whitespace()
        .skip_while(|w| *w != "Ver")
        .nth(1)
        .map(|v| match v.split_once("-MariaDB") {
            Some((number, _)) => format!("MariaDB {number}"),
            None => format!("MySQL {v}"),
        })
        .unwrap_or(line);
    Some(Mysql {
        server,
        install_db,
        client,
        version,
    })
}

fn redis() -> Option<Redis> {
    let server = find("redis-server", &["/usr/bin", "/usr/sbin"])?;
    // "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=…"
    let line = version_line(&server)?;
    let version = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .unwrap_or(line.as_str())
        .to_owned();
    Some(Redis { server, version })
}

fn rabbitmq() -> Option<Rabbitmq> {
    // The broker's scripts sit together (`rabbitmq-server`, `rabbitmqctl`, `rabbitmq-env`);
    // Debian links them from /usr/lib/rabbitmq/bin into rabbitmq_server-<version>/sbin.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let server = ["/usr/lib/rabbitmq/bin", "/usr/lib/rabbitmq/sbin"]
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .chain(["/usr/sbin", "/usr/local/sbin"].iter().map(PathBuf::from))
        .map(|dir| dir.join("rabbitmq-server"))
        .filter(|candidate| is_executable(candidate))
        .filter_map(|candidate| std::fs::canonicalize(candidate).ok())
        // Debian's wrapper (`rabbitmq-script-wrapper`) is not the broker's own script.
        .find(|real| {
            real.file_name().is_some_and(|n| n == "rabbitmq-server")
                && real.with_file_name("rabbitmqctl").is_file()
        })?;
    let ctl = server.with_file_name("rabbitmqctl");
    let epmd = find("epmd", &["/usr/bin", "/usr/lib/erlang/bin"])?;
    // ".../rabbitmq_server-3.10.8/sbin/rabbitmq-server"
    let version = server
        .ancestors()
        .filter_map(|dir| dir.file_name()?.to_str()?.strip_prefix("rabbitmq_server-"))
        .next()
        .unwrap_or("(version unknown)")
        .to_owned();
    Some(Rabbitmq {
        server,
        ctl,
        epmd,
        version,
    })
}
