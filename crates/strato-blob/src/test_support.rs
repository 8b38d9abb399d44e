//! Real S3 servers for tests, on free loopback ports: [moto](https://github.com/getmoto/moto) in server mode, and
//! [s3s-fs](https://github.com/Nugine/s3s) ([`S3sFs`]), which checks SigV4 signatures, presigned URLs' included,
//! and keeps objects on disk (moto accepts any signature, expired ones too, and keeps everything in memory).
//!
//! Enabled by the `test-support` feature, for this crate's tests and other crates' (as a dev-dependency):
//!
//! ```no_run
//! # async fn demo() -> Result<(), strato_blob::BlobError> {
//! use strato_blob::{test_support::MotoServer, BlobStore};
//!
//! let Some(moto) = MotoServer::start() else { return Ok(()) }; // printed a SKIPPED line: moto is missing
//! moto.create_bucket("strato-test");
//! let store = BlobStore::s3(&moto.s3_options("strato-test", Some("run-1")))?;
//! # Ok(()) }
//! ```
//!
//! moto keeps its state in memory, so a plain restart would lose every bucket and object. The server runs with
//! moto's request recorder on, and [`MotoServer::restart`] replays the recording into the new process: buckets and
//! objects survive a stop/restart, as they would on real S3. Everything here is blocking and panics on failure:
//! it is test scaffolding.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{S3Options, DEFAULT_REGION, S3_ENDPOINT_ENV};

/// Path of the `moto_server` executable. When set, a server that fails to start fails the test instead of
/// skipping it, so CI never skips silently.
pub const MOTO_SERVER_ENV: &str = "STRATO_TEST_MOTO_SERVER";

/// moto accepts any credentials; these are the ones its documentation uses.
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";

/// Python imports take a few seconds on a busy machine; this is generous so a loaded CI box does not flake.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running moto server; killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    program: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Holds the request recording (replayed on restart) and the server's log.
    dir: tempfile::TempDir,
}

impl MotoServer {
    /// Starts moto from [`MOTO_SERVER_ENV`], else `moto_server` on `PATH`. Returns `None`, after printing a `SKIPPED`
    /// line to stderr, when neither is there (or the one on `PATH` does not start). Panics when [`MOTO_SERVER_ENV`]
    /// is set and the server does not start.
    pub fn start() -> Option<Self> {
        let from_env = std::env::var_os(MOTO_SERVER_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let required = from_env.is_some();
        let Some(program) = from_env.or_else(|| find_on_path("moto_server")) else {
            skip("moto_server is not on PATH");
            return None;
        };
        match Self::launch(program.clone()) {
            Ok(server) => Some(server),
            Err(e) if required => panic!("{MOTO_SERVER_ENV}={} is set but moto did not start: {e}", program.display()),
            Err(e) => {
                skip(&format!("{} did not start: {e}", program.display()));
                None
            }
        }
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates `bucket` (3 to 63 lowercase letters, digits, `.` or `-`: moto checks like AWS). Panics on failure.
    pub fn create_bucket(&self, bucket: &str) {
        // A plain PUT: moto does not check signatures.
        match http(self.port, "PUT", &format!("/{bucket}"), Duration::from_secs(30)) {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("creating bucket {bucket} on moto answered {status}: {body}"),
            Err(e) => panic!("creating bucket {bucket} on moto failed: {e}"),
        }
    }

    /// Options reaching `bucket` (under `prefix`) on this server with moto's dummy credentials.
    pub fn s3_options(&self, bucket: &str, prefix: Option<&str>) -> S3Options {
        S3Options {
            prefix: prefix.map(str::to_string),
            endpoint: Some(self.endpoint()),
            region: DEFAULT_REGION.to_string(),
            access_key_id: Some(ACCESS_KEY_ID.to_string()),
            secret_access_key: Some(SECRET_ACCESS_KEY.to_string()),
            session_token: None,
            allow_http: true,
            ..S3Options::new(bucket)
        }
    }

    /// Environment for a child process (such as `strato serve --storage s3://bucket`) to reach this server.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (S3_ENDPOINT_ENV, self.endpoint()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
            ("AWS_REGION", DEFAULT_REGION.to_string()),
        ]
    }

    /// Kills the server: from now on connections to [`Self::endpoint`] are refused. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and replays every request it has recorded, so buckets and objects
    /// are back as they were at [`Self::stop`]. Panics on failure.
    pub fn restart(&mut self) {
        self.stop();
        // 1. The old socket is closed, but give the port a moment in case the kernel is slow to release it.
        let deadline = Instant::now() + Duration::from_secs(10);
        let child = loop {
            match spawn_and_wait(&self.program, self.port, self.dir.path()) {
                Ok(child) => break child,
                Err(e) if Instant::now() >= deadline => panic!("restarting moto on port {}: {e}", self.port),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        self.child = Some(child);
        // 2. Rebuild the state.
        match http(self.port, "POST", "/moto-api/recorder/replay-recording", Duration::from_secs(120)) {
            Ok((200, _)) => {}
            Ok((status, body)) => panic!("replaying moto's recording answered {status}: {body}"),
            Err(e) => panic!("replaying moto's recording failed: {e}"),
        }
    }

    fn launch(program: PathBuf) -> Result<Self, String> {
        let dir = tempfile::Builder::new().prefix("strato-moto-").tempdir().map_err(|e| e.to_string())?;
        // Another process may take the free port between our probe and moto's bind: try a few.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port().map_err(|e| format!("no free port: {e}"))?;
            match spawn_and_wait(&program, port, dir.path()) {
                Ok(child) => return Ok(Self { program, port, child: Some(child), dir }),
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Spawns moto on `port` with its recorder writing into `dir`, and waits until it answers.
fn spawn_and_wait(program: &Path, port: u16, dir: &Path) -> Result<Child, String> {
    let mut cmd = Command::new(program);
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        // The recorder appends each request to the file; `restart` replays it into the fresh process.
        .env("MOTO_ENABLE_RECORDING", "True")
        .env("MOTO_RECORDER_FILEPATH", dir.join("recording.jsonl"));
    launch_server("moto", cmd, &dir.join("moto.log"), || {
        matches!(http(port, "GET", "/", Duration::from_secs(5)), Ok((200, _)))
    })
}

/// Runs a test server with its output appended to `log_path` and polls `ready` until it says yes, the server
/// exits, or `START_TIMEOUT` passes (the server is then killed); errors carry the log's tail.
fn launch_server(name: &str, mut cmd: Command, log_path: &Path, ready: impl Fn() -> bool) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path).map_err(|e| e.to_string())?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let mut child =
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2).spawn().map_err(|e| format!("cannot run {name}: {e}"))?;
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("{name} exited with {status}; log:\n{}", log_tail(log_path)));
        }
        if ready() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{name} did not answer within {START_TIMEOUT:?}; log:\n{}", log_tail(log_path)));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request with an empty body; returns the status and the whole response.
fn http(port: u16, method: &str, path: &str, timeout: Duration) -> io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_secs(2))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    match text.split_whitespace().nth(1).and_then(|code| code.parse().ok()) {
        Some(status) => Ok((status, text)),
        None => Err(io::Error::other(format!("not an HTTP response: {}", text.chars().take(200).collect::<String>()))),
    }
}

fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| is_executable(p))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The visible skip line: the test returns early and passes, and the reason is in the output.
fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("test");
    eprintln!(
        "SKIPPED {test}: {reason}; set {MOTO_SERVER_ENV} to a moto_server executable (pip install 'moto[server]')"
    );
}

/// Path of the `s3s-fs` executable (`cargo install s3s-fs --features binary`). When set, a server that fails to
/// start fails the test instead of skipping it.
pub const S3S_FS_ENV: &str = "STRATO_TEST_S3S_FS";

/// The credentials s3s-fs is started with: it checks every signature against them.
const S3S_ACCESS_KEY: &str = "strato-test-access";
const S3S_SECRET_KEY: &str = "strato-test-secret-0123456789";

/// A running s3s-fs with one bucket, its objects in a temporary directory; killed on drop.
#[derive(Debug)]
pub struct S3sFs {
    port: u16,
    bucket: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl S3sFs {
    /// Starts s3s-fs from [`S3S_FS_ENV`] (else `s3s-fs` on `PATH`) with `bucket`. Returns `None`, after printing a
    /// `SKIPPED` line, when there is none; panics when [`S3S_FS_ENV`] is set and it does not start.
    pub fn start(bucket: &str) -> Option<Self> {
        let from_env = std::env::var_os(S3S_FS_ENV).filter(|v| !v.is_empty()).map(PathBuf::from);
        let required = from_env.is_some();
        let Some(program) = from_env.or_else(|| find_on_path("s3s-fs")) else {
            let test = std::thread::current().name().unwrap_or("test").to_string();
            eprintln!(
                "SKIPPED {test}: s3s-fs is not on PATH; set {S3S_FS_ENV} to one (cargo install s3s-fs --features binary)"
            );
            return None;
        };
        let dir = tempfile::Builder::new().prefix("strato-s3s-").tempdir().ok()?;
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join(bucket)).ok()?;
        let mut last = String::new();
        for _ in 0..3 {
            let Ok(port) = free_port() else { continue };
            match Self::spawn(&program, port, dir.path()) {
                Ok(child) => return Some(Self { port, bucket: bucket.to_string(), child, dir }),
                Err(e) => last = e,
            }
        }
        if required {
            panic!("{S3S_FS_ENV}={} is set but s3s-fs did not start: {last}", program.display());
        }
        eprintln!("SKIPPED: {} did not start: {last}", program.display());
        None
    }

    fn spawn(program: &Path, port: u16, dir: &Path) -> Result<Child, String> {
        let mut cmd = Command::new(program);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3S_ACCESS_KEY, "--secret-key", S3S_SECRET_KEY])
            .arg(dir.join("root"));
        // Any HTTP answer (an unsigned request is refused) means it is serving.
        launch_server("s3s-fs", cmd, &dir.join("s3s.log"), || http(port, "GET", "/", Duration::from_secs(5)).is_ok())
    }

    /// Base URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where the server keeps its objects (`<dir>/<bucket>/<key>`).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Options reaching the bucket (under `prefix`) with the server's credentials.
    pub fn s3_options(&self, prefix: Option<&str>) -> S3Options {
        S3Options {
            prefix: prefix.map(str::to_string),
            endpoint: Some(self.endpoint()),
            region: DEFAULT_REGION.to_string(),
            access_key_id: Some(S3S_ACCESS_KEY.to_string()),
            secret_access_key: Some(S3S_SECRET_KEY.to_string()),
            session_token: None,
            allow_http: true,
            ..S3Options::new(self.bucket.clone())
        }
    }

    /// `--storage` for a child process: the bucket, under `prefix`.
    pub fn storage(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// Environment for a child process (such as `strato serve --storage s3://bucket`) to reach this server.
    pub fn client_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (S3_ENDPOINT_ENV, self.endpoint()),
            ("AWS_ACCESS_KEY_ID", S3S_ACCESS_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", S3S_SECRET_KEY.to_string()),
            ("AWS_REGION", DEFAULT_REGION.to_string()),
        ]
    }
}

impl Drop for S3sFs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
