//! One running instance of a function version: its process (AWS's runtime client, or the code's `bootstrap`), its
//! Runtime API listener, its captured output and its own temporary directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{mpsc, oneshot, watch};

use crate::runtime_api::{Delivery, Reply, RuntimeApi};

/// How to start an instance.
pub(crate) struct Launch<'a> {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Working directory: the code (`LAMBDA_TASK_ROOT`).
    pub task_root: &'a Path,
    /// The whole environment (nothing of Strato's own is passed on but `PATH` and the locale).
    pub env: BTreeMap<String, String>,
    /// Where the instance's temporary directory is made.
    pub tmp_parent: &'a Path,
    /// The user it runs as (its temporary directory is given to that user).
    pub run_as: Option<RunAs>,
}

/// A process's starting environment: the function's variables, then only what a process needs to find programs
/// and speak a language from Strato's own; none of Strato's settings or secrets.
pub(crate) fn clean_env(function_env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = function_env.clone();
    for k in ["PATH", "LANG", "LC_ALL"] {
        if let Ok(v) = std::env::var(k) {
            env.insert(k.into(), v);
        }
    }
    env.entry("PATH".into()).or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    env.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
    env
}

/// An unprivileged user for instances: the process switches to it (and drops every supplementary group) before
/// the runtime starts, so a handler cannot read what only Strato's user may (its database, its keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl RunAs {
    /// `NAME` (from `/etc/passwd`), `UID` or `UID:GID`.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let numeric = |s: &str| s.parse::<u32>().ok();
        if let Some((u, g)) = spec.split_once(':') {
            return match (numeric(u), numeric(g)) {
                (Some(uid), Some(gid)) => Ok(Self { uid, gid }),
                _ => Err(format!("{spec:?} is not UID:GID")),
            };
        }
        if let Some(uid) = numeric(spec) {
            return Ok(Self { uid, gid: uid });
        }
        let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
        passwd
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.first() == Some(&spec))
            .and_then(|f| Some(Self { uid: numeric(f.get(2)?)?, gid: numeric(f.get(3)?)? }))
            .ok_or_else(|| format!("no user {spec:?} in /etc/passwd: give its name, UID or UID:GID"))
    }
}

/// The outcome of handing an invocation to an instance.
pub(crate) enum Outcome {
    /// The runtime answered.
    Replied(Reply),
    /// The runtime reported an initialisation failure (and will exit).
    InitFailed(Reply),
    /// The process ended before answering; how it ended.
    Exited(String),
    /// The time limit passed; the instance was killed.
    TimedOut,
}

/// A running instance.
pub(crate) struct Instance {
    pub id: String,
    api: Arc<RuntimeApi>,
    deliver: mpsc::Sender<Delivery>,
    init_error: parking_lot::Mutex<Option<oneshot::Receiver<Reply>>>,
    exited: watch::Receiver<Option<String>>,
    pid: Option<u32>,
    server: tokio::task::JoinHandle<()>,
    output: Arc<parking_lot::Mutex<String>>,
    pub started: Instant,
    /// Reported once, on the instance's first invocation.
    init_reported: std::sync::atomic::AtomicBool,
    /// Cleared when the instance must not be reused (timed out, crashed, killed).
    healthy: std::sync::atomic::AtomicBool,
    pub last_used: parking_lot::Mutex<Instant>,
    /// The instance's own temporary directory (`TMPDIR`), removed with it.
    _tmp: tempfile::TempDir,
}

/// Output kept between invocations at most (a runtime printing without end between calls cannot grow memory).
const MAX_PENDING_OUTPUT: usize = 1 << 20;

impl Instance {
    /// Starts the process and its Runtime API.
    pub async fn launch(mut l: Launch<'_>) -> std::io::Result<Arc<Self>> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (api, deliver, init_error) = RuntimeApi::new();
        let server = tokio::spawn(api.clone().serve(listener));
        std::fs::create_dir_all(l.tmp_parent)?;
        let tmp = tempfile::Builder::new().prefix("instance-").tempdir_in(l.tmp_parent)?;
        if let Some(u) = l.run_as {
            // Its own temporary directory is the one place the instance's user may write.
            std::os::unix::fs::chown(tmp.path(), Some(u.uid), Some(u.gid))?;
            traversable(l.tmp_parent, l.tmp_parent.parent().unwrap_or(l.tmp_parent))?;
        }
        l.env.insert("AWS_LAMBDA_RUNTIME_API".into(), addr.to_string());
        l.env.insert("TMPDIR".into(), tmp.path().display().to_string());
        if l.run_as.is_some() {
            if let Some(unshare) = private_tmp_possible(&l) {
                // A mount namespace of its own where its TMPDIR is `/tmp`, as Lambda's instances have: mounted as
                // root, then `setpriv` switches user.
                let at = l.argv.iter().position(|a| a.ends_with("/setpriv")).unwrap_or(0);
                let wrapper = [
                    unshare.display().to_string(),
                    "--mount".into(),
                    "--propagation".into(),
                    "private".into(),
                    "--".into(),
                    "/bin/sh".into(),
                    "-c".into(),
                    r#"mount --bind "$0" /tmp && exec "$@""#.into(),
                    tmp.path().display().to_string(),
                ];
                l.argv.splice(at..at, wrapper);
                l.env.insert("TMPDIR".into(), "/tmp".into());
            }
        }
        let mut cmd = tokio::process::Command::new(&l.argv[0]);
        cmd.args(&l.argv[1..])
            .current_dir(l.task_root)
            .env_clear()
            .envs(&l.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills whatever it started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                server.abort();
                return Err(e);
            }
        };
        let pid = child.id();
        let output = Arc::new(parking_lot::Mutex::new(String::new()));
        if let Some(s) = child.stdout.take() {
            tokio::spawn(capture(s, output.clone()));
        }
        if let Some(s) = child.stderr.take() {
            tokio::spawn(capture(s, output.clone()));
        }
        let (exit_tx, exited) = watch::channel(None);
        tokio::spawn(async move {
            let how = match child.wait().await {
                Ok(s) => describe_exit(s),
                Err(e) => format!("the process could not be waited for: {e}"),
            };
            let _ = exit_tx.send(Some(how));
        });
        Ok(Arc::new(Self {
            id,
            api,
            deliver,
            init_error: parking_lot::Mutex::new(Some(init_error)),
            exited,
            pid,
            server,
            output,
            started: Instant::now(),
            init_reported: Default::default(),
            healthy: std::sync::atomic::AtomicBool::new(true),
            last_used: parking_lot::Mutex::new(Instant::now()),
            _tmp: tmp,
        }))
    }

    /// Whether the instance may take another invocation.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed) && self.exited.borrow().is_none()
    }

    /// Initialisation time, the first time it is asked after the runtime became ready.
    pub fn take_init_duration(&self) -> Option<Duration> {
        let ready = *self.api.ready_at.get()?;
        (!self.init_reported.swap(true, std::sync::atomic::Ordering::Relaxed)).then(|| ready - self.started)
    }

    /// When the runtime first asked for an invocation (its initialisation ended), if it has.
    pub fn ready_at(&self) -> Option<Instant> {
        self.api.ready_at.get().copied()
    }

    /// Output captured since the last call.
    pub fn take_output(&self) -> String {
        std::mem::take(&mut *self.output.lock())
    }

    /// Peak resident memory of the process so far, in MB.
    pub fn max_memory_mb(&self) -> u64 {
        let Some(pid) = self.pid else { return 0 };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb.div_ceil(1024))
    }

    /// Hands an invocation to the runtime and waits for its answer, the end of the process, or `limit`.
    #[allow(clippy::too_many_arguments, reason = "the invocation's fields, passed once")]
    pub async fn invoke(
        &self,
        id: &str,
        payload: Bytes,
        deadline_ms: i64,
        arn: &str,
        client_context: Option<String>,
        cognito_identity: Option<String>,
        limit: Duration,
    ) -> Outcome {
        let (reply_tx, reply_rx) = oneshot::channel();
        let trace_id = format!(
            "Root=1-{:08x}-{}",
            chrono::Utc::now().timestamp(),
            &uuid::Uuid::new_v4().simple().to_string()[..24]
        );
        let d = Delivery {
            id: id.to_string(),
            payload,
            deadline_ms,
            arn: arn.to_string(),
            trace_id,
            client_context,
            cognito_identity,
            reply: reply_tx,
        };
        let until = tokio::time::Instant::now() + limit;
        if self.deliver.send(d).await.is_err() {
            return Outcome::Exited("the runtime stopped taking invocations".into());
        }
        let mut init_error = self.init_error.lock().take();
        let mut exited = self.exited.clone();
        let outcome = tokio::select! {
            r = reply_rx => match r {
                Ok(reply) => Outcome::Replied(reply),
                // Dropped unanswered: the runtime asked for the next invocation without answering this one.
                Err(_) => Outcome::Exited("the runtime asked for the next invocation without answering".into()),
            },
            r = async { init_error.as_mut().expect("checked").await }, if init_error.is_some() => match r {
                Ok(reply) => Outcome::InitFailed(reply),
                Err(_) => Outcome::Exited("the runtime stopped".into()),
            },
            how = exited.wait_for(|e| e.is_some()) => Outcome::Exited(
                how.ok().and_then(|h| h.clone()).unwrap_or_else(|| "the process ended".into())
            ),
            _ = tokio::time::sleep_until(until) => Outcome::TimedOut,
        };
        // An init error is also followed by the exit; whichever came first, report the init error.
        let outcome = match outcome {
            Outcome::Exited(how) => match init_error.as_mut().map(|r| r.try_recv()) {
                Some(Ok(reply)) => Outcome::InitFailed(reply),
                _ => Outcome::Exited(how),
            },
            o => o,
        };
        if init_error.is_some() && matches!(outcome, Outcome::Replied(_)) {
            *self.init_error.lock() = init_error;
        }
        if !matches!(outcome, Outcome::Replied(_)) {
            self.kill();
        }
        *self.last_used.lock() = Instant::now();
        outcome
    }

    /// Kills the process group and stops the listener; the instance is not reused.
    pub fn kill(&self) {
        if self.healthy.swap(false, std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!(instance = %self.id, "stopping a function instance");
        }
        if let Some(pid) = self.pid {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
        self.server.abort();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Appends a stream's lines to the instance's pending output.
async fn capture(stream: impl tokio::io::AsyncRead + Unpin, output: Arc<parking_lot::Mutex<String>>) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let mut out = output.lock();
        if out.len() < MAX_PENDING_OUTPUT {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("signal: {sig}"),
        _ => "unknown exit".into(),
    }
}

/// The program that runs a function version, under its memory limit where `prlimit` (util-linux) is installed: the
/// data segment (heap and private writable mappings, `RLIMIT_DATA`) is capped at the function's memory size, so an
/// allocation past it fails in the function (Python's `MemoryError`) instead of growing the host.
pub(crate) fn argv(
    runtime: &crate::config::Runtime,
    handler: &str,
    python: &Path,
    task_root: &Path,
    memory_mb: u32,
    run_as: Option<RunAs>,
) -> Result<Vec<String>, String> {
    let mut argv = Vec::new();
    if let Some(prlimit) = prlimit() {
        argv.extend([prlimit.display().to_string(), format!("--data={}", u64::from(memory_mb) << 20), "--".into()]);
    }
    if let Some(u) = run_as {
        // util-linux's setpriv switches user and group and clears the supplementary groups, after the limits are
        // set and before the runtime runs.
        let setpriv = tool("setpriv").ok_or("running instances as another user needs setpriv (util-linux) on PATH")?;
        argv.extend([
            setpriv.display().to_string(),
            format!("--reuid={}", u.uid),
            format!("--regid={}", u.gid),
            "--clear-groups".into(),
            "--".into(),
        ]);
    }
    match runtime {
        crate::config::Runtime::Python(_) => {
            argv.extend([python.display().to_string(), "-m".into(), "awslambdaric".into(), handler.to_string()]);
        }
        crate::config::Runtime::Provided(_) => argv.push(task_root.join("bootstrap").display().to_string()),
        // Never started as an instance: its invocations are jobs (`notebook.rs`).
        crate::config::Runtime::Notebook => {
            argv.extend([python.display().to_string(), "-c".into(), "raise SystemExit('run as a job')".into()]);
        }
    }
    Ok(argv)
}

/// Lets other users pass through (never list) `dir` and its ancestors up to `stop_at` (Strato's own functions
/// directory): the instance's user must reach its code and its temporary directory. Directories above `stop_at`
/// are the operator's to open (the data directory's parents).
fn traversable(dir: &Path, stop_at: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for d in dir.ancestors() {
        if !d.starts_with(stop_at) {
            break;
        }
        let mode = std::fs::metadata(d)?.permissions().mode();
        if mode & 0o001 == 0 {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode | 0o001))?;
        }
    }
    Ok(())
}

/// Opens an unpacked code tree (inside Strato's functions directory) to the instances' user: readable files and
/// listable directories (Python's imports list them), and a way through to it. Code from a server directory
/// (an admin's choice) is left as it is.
pub(crate) fn share_code(code: &Path, work_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !code.starts_with(work_dir) {
        return Ok(());
    }
    fn walk(p: &Path) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(p)?;
        let mode = meta.permissions().mode();
        if meta.is_dir() {
            if mode & 0o005 != 0o005 {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | 0o005))?;
            }
            for e in std::fs::read_dir(p)? {
                walk(&e?.path())?;
            }
        } else if meta.is_file() {
            // Executables stay executable for everyone who may run them (a `bootstrap`).
            let add = if mode & 0o100 != 0 { 0o005 } else { 0o004 };
            if mode & add != add {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode | add))?;
            }
        }
        Ok(())
    }
    walk(code)?;
    traversable(code, work_dir)
}

/// `unshare`, when an instance can have `/tmp` to itself: nothing it needs (its code, the programs it starts, its
/// own temporary directory) may live under `/tmp`, which its own directory is mounted over.
fn private_tmp_possible(l: &Launch<'_>) -> Option<PathBuf> {
    let under_tmp = |p: &Path| p.starts_with("/tmp");
    if under_tmp(l.task_root) || under_tmp(l.tmp_parent) || l.argv.iter().any(|a| a.starts_with("/tmp/") || a == "/tmp")
    {
        tracing::debug!("instances share /tmp: their code, runtime or work directory is under /tmp");
        return None;
    }
    tool("unshare")
}

/// A tool found once on `PATH` (or where util-linux puts it).
fn tool(name: &'static str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|d| d.join(name)).find(|p| p.is_file())
}

/// `prlimit`, found once on `PATH` (or where util-linux puts it).
pub(crate) fn prlimit() -> Option<&'static Path> {
    static FOUND: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
            std::env::split_paths(&path)
                .chain([PathBuf::from("/usr/bin")])
                .map(|d| d.join("prlimit"))
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// A directory the instance's files go in, beside the code cache.
pub(crate) fn tmp_parent(work_dir: &Path) -> PathBuf {
    work_dir.join("instances")
}
