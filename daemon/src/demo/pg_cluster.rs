//! A private, throwaway PostgreSQL cluster for tests and benchmarks of the PostgreSQL state:
//! Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, or `SKLADSYNC_PG_BIN`),
//! a data directory and socket directory in a temporary directory, listening on loopback on
//! a free port, `trust` authentication, a database per test.
//!
//! As root, `initdb` and `postgres` refuse to run: the cluster then runs as the `postgres`
//! user (`runuser -u postgres --`), which owns the temporary directory. One cluster serves
//! a whole test binary ([`PgCluster::shared`]); a watchdog process stops it and removes its
//! directory when the test process ends, however it ends (a panic, `kill -9`), so no server
//! outlives its run.
//!
//! PostgreSQL missing is an error saying how to install it, never a silent skip.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// What can go wrong starting the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The server binaries are missing.
    #[error(
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, and \
         SKLADSYNC_PG_BIN is not set): install Debian's `postgresql` package \
         (`apt-get install postgresql`; .ci/run does it) to run the PostgreSQL state tests"
    )]
    NotInstalled,
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was run.
        what: String,
        /// Its output or error.
        detail: String,
    },
}

/// A running throwaway cluster.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Run the server commands as `postgres` (we are root).
    as_postgres: bool,
}

const USER: &str = "skladsync";

fn bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(b) = std::env::var_os("SKLADSYNC_PG_BIN").filter(|b| !b.is_empty()) {
        let b = PathBuf::from(b);
        if b.join("initdb").is_file() {
            return Ok(b);
        }
        return Err(ClusterError::NotInstalled);
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| ClusterError::NotInstalled)?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v: u32 = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, b)| b)
        .ok_or(ClusterError::NotInstalled)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(mut cmd: Command, what: &str) -> Result<String, ClusterError> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ClusterError::Command {
            what: what.to_string(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            what: what.to_string(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn free_port() -> Result<u16, ClusterError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| ClusterError::Command {
            what: "finding a free port".into(),
            detail: e.to_string(),
        })
}

impl PgCluster {
    /// The cluster of this test process, started on first use.
    pub fn shared() -> Result<&'static PgCluster, String> {
        static SHARED: OnceLock<Result<PgCluster, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| PgCluster::start().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Starts a new cluster (stopped and removed when this process ends).
    pub fn start() -> Result<PgCluster, ClusterError> {
        let bin = bin_dir()?;
        let as_postgres = is_root();
        static N: AtomicU32 = AtomicU32::new(0);
        // As root the server runs as `postgres`, who must reach the directory: /tmp (a
        // TMPDIR under /root would not do).
        let base = if as_postgres {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "skladsync-pg-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        std::fs::create_dir_all(&dir).map_err(|e| ClusterError::Command {
            what: format!("creating {}", dir.display()),
            detail: e.to_string(),
        })?;
        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            as_postgres,
        };
        if as_postgres {
            let mut chown = Command::new("chown");
            chown.arg("postgres:").arg(&cluster.dir);
            run(chown, "chown postgres (the cluster runs as postgres)")?;
        }
        cluster.watchdog()?;
        let mut initdb = cluster.server_cmd("initdb");
        initdb.arg("-D").arg(cluster.data()).args([
            "-A",
            "trust",
            "-U",
            USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(initdb, "initdb")?;
        let mut last = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            let mut start = cluster.server_cmd("pg_ctl");
            start
                .arg("-D")
                .arg(cluster.data())
                .arg("-l")
                .arg(cluster.dir.join("log"))
                .arg("-o")
                .arg(format!(
                    "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                     -c max_connections=300 -c shared_buffers=16MB",
                    cluster.port,
                    cluster.dir.display()
                ))
                .args(["-w", "-t", "60", "start"]);
            match run(start, "pg_ctl start") {
                Ok(_) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        let log = std::fs::read_to_string(cluster.dir.join("log")).unwrap_or_default();
        Err(match last {
            Some(ClusterError::Command { what, detail }) => ClusterError::Command {
                what,
                detail: format!("{detail}\nserver log:\n{log}"),
            },
            Some(e) => e,
            None => ClusterError::NotInstalled,
        })
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A server command, as `postgres` when we are root.
    fn server_cmd(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// A process that waits for this one to end, then stops the server at once and removes
    /// the directory.
    fn watchdog(&self) -> Result<(), ClusterError> {
        let stop = format!(
            "{} {} -D {} -m immediate stop",
            if self.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            shell_quote(&self.bin.join("pg_ctl")),
            shell_quote(&self.data()),
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             if [ -f {data}/postmaster.pid ]; then {stop} >/dev/null 2>&1; fi; rm -rf {dir}",
            pid = std::process::id(),
            data = shell_quote(&self.data()),
            dir = shell_quote(&self.dir),
        );
        Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(|_| ())
            .map_err(|e| ClusterError::Command {
                what: "starting the cluster's watchdog".into(),
                detail: e.to_string(),
            })
    }

    /// Creates a new, empty database and returns its connection string.
    pub fn database(&self, name: &str) -> Result<String, ClusterError> {
        static N: AtomicU32 = AtomicU32::new(0);
        let db = format!(
            "{}_{}",
            name.chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                })
                .take(40)
                .collect::<String>(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut create = Command::new(self.bin.join("createdb"));
        create
            .args(["-h", "127.0.0.1", "-U", USER, "-p"])
            .arg(self.port.to_string())
            .arg(&db);
        run(create, "createdb")?;
        Ok(self.url(&db))
    }

    /// The connection string of a database of this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', "'\\''"))
}
