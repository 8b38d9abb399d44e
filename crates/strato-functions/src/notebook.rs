//! The notebook model runner: Quetzal's Lambda handler, kept so its models run unchanged, as a built-in runtime
//! (`strato.notebook`) whose invocations are jobs on the `notebooks` queue (hours are fine).
//!
//! The event is Quetzal's: `{"notebook_path", "scenario_path_S3", "launcher_arg": {"training_folder", "params"},
//! "metadata": {"user_email"}}` (other keys pass through). A run copies the model's code into a fresh work
//! directory, lays every file under the scenario prefix (Strato's files, `/v1/files`) over it, then either converts
//! the notebook to a script (nbconvert) and runs it with the JSON `launcher_arg` as its argument, or — for a
//! notebook with a cell tagged `parameters` — runs it with papermill (`launcher_arg`'s keys as parameters), keeping
//! the executed notebook. Both run in the notebook's folder. The merged output streams to
//! `<scenario>logs/<notebook>.txt` while it runs; files the run created or changed go back under the scenario
//! prefix; the event is returned unchanged so steps chain. A failure's error names the traceback and keeps the log.
//!
//! The run's output is drained continuously and progress bars' carriage-return redraws collapse to their last
//! state, so tqdm can neither stall the run (a full pipe) nor flood the log. Cancelling the job, or its time limit,
//! kills the whole process tree (papermill's kernel included, which runs in a session of its own).

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use strato_jobs::{JobContext, JobError, Worker};
use strato_types::{JobArgs, JobDefaults, JobKind, JobRecord, QueueName, ResourceRef};
use tokio::io::AsyncReadExt;

use crate::service::Functions;
use crate::{FunctionError, FUNCTION};

/// Where Strato's files (`/v1/files`) live in blob storage.
const FILES: &str = "files/";
/// How often the log is written to storage while the run goes on.
const LOG_FLUSH: Duration = Duration::from_secs(2);
/// The stored log keeps its first and last this many bytes; the middle of a longer one is cut.
const LOG_HALF: usize = 4 << 20;
/// Most scenario files a run downloads.
const MAX_SCENARIO_FILES: usize = 10_000;
/// Directories of the work directory that are the runner's own, never uploaded.
const PRIVATE_DIRS: &[&str] = &[".strato", "__pycache__", ".ipynb_checkpoints"];

/// One run of a notebook model, as stored in its job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotebookRunArgs {
    /// The function (a `strato.notebook` one).
    pub function: String,
    /// `$LATEST` or a version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qualifier: Option<String>,
    /// The event, returned unchanged.
    pub event: Value,
    /// The invocation's request id.
    pub request_id: String,
}

impl JobArgs for NotebookRunArgs {
    const KIND: JobKind = JobKind::new("notebook.run");

    fn defaults() -> JobDefaults {
        // The limit is set per job from the function's timeout; this default only covers a job made by hand.
        JobDefaults {
            queue: QueueName::new("notebooks"),
            timeout: Duration::from_secs(3600),
            max_attempts: 1,
            priority: 0,
        }
    }

    fn resource(&self) -> Option<ResourceRef> {
        Some(ResourceRef::new(FUNCTION, &self.function))
    }
}

/// Runs notebook models.
pub struct NotebookWorker {
    functions: Functions,
}

impl NotebookWorker {
    /// A worker running models through `functions`.
    pub fn new(functions: Functions) -> Self {
        Self { functions }
    }
}

#[async_trait]
impl Worker for NotebookWorker {
    type Args = NotebookRunArgs;

    async fn work(&self, a: NotebookRunArgs, job: &JobRecord, ctx: &JobContext) -> Result<Value, JobError> {
        run(&self.functions, &a, job, ctx).await
    }
}

/// Quetzal's event, checked.
#[derive(Debug)]
pub(crate) struct Event {
    /// The notebook, relative to the model's root.
    notebook: PathBuf,
    /// The scenario's prefix in Strato's files, ending in `/`.
    scenario: String,
    /// The script's argument / papermill's parameters.
    launcher_arg: Value,
}

fn invalid(m: impl Into<String>) -> FunctionError {
    FunctionError::Invalid(m.into())
}

/// A relative path that stays inside its root.
fn inside(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\0')
        && p.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    ok.then(|| p.to_path_buf())
}

/// Parses and checks the event of a notebook run.
pub(crate) fn parse_event(event: &Value) -> Result<Event, FunctionError> {
    let obj = event.as_object().ok_or_else(|| invalid("the event must be a JSON object with notebook_path"))?;
    let nb = obj
        .get("notebook_path")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("\"notebook_path\" is required: the notebook, relative to the model's root"))?;
    let notebook = inside(nb).filter(|p| p.extension().is_some_and(|e| e == "ipynb")).ok_or_else(|| {
        invalid(format!("\"notebook_path\" {nb:?} must be a relative path to an .ipynb inside the model"))
    })?;
    let scenario = match obj.get("scenario_path_S3") {
        Some(Value::String(s)) if !s.is_empty() && !s.starts_with('/') && inside(s.trim_end_matches('/')).is_some() => {
            format!("{}/", s.trim_end_matches('/'))
        }
        _ => return Err(invalid(
            "\"scenario_path_S3\" is required: the prefix of the scenario's files in Strato's files, e.g. \"base/\"",
        )),
    };
    let launcher_arg = match obj.get("launcher_arg") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(invalid("\"launcher_arg\" must be a JSON object")),
    };
    Ok(Event { notebook, scenario, launcher_arg })
}

impl Event {
    /// The scenario prefix the run reads and writes (for the caller's grant check).
    pub(crate) fn scenario(&self) -> &str {
        &self.scenario
    }
}

/// The run's output as it will be stored: carriage-return redraws collapse to their last state, and past twice
/// [`LOG_HALF`] the middle is cut.
#[derive(Default)]
struct Log {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    cut: u64,
    /// The line being written (a progress bar redraws it).
    line: Vec<u8>,
    changed: bool,
}

impl Log {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => {
                    let line = std::mem::take(&mut self.line);
                    self.commit(&line);
                    self.commit(b"\n");
                }
                b'\r' => self.line.clear(),
                _ if self.line.len() < 64 << 10 => self.line.push(b),
                _ => {}
            }
        }
        self.changed = true;
    }

    fn commit(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.head.len() < LOG_HALF {
                self.head.push(b);
            } else {
                self.tail.push_back(b);
                if self.tail.len() > LOG_HALF {
                    self.tail.pop_front();
                    self.cut += 1;
                }
            }
        }
    }

    fn note(&mut self, text: &str) {
        self.push(format!("{text}\n").as_bytes());
    }

    fn text(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        if self.cut > 0 {
            out.extend(format!("\n[… {} bytes of output cut …]\n", self.cut).as_bytes());
        }
        out.extend(self.tail.iter());
        out.extend(&self.line);
        out
    }

    /// The last Python traceback in the output, if any: from `Traceback (most recent call last):` to the exception
    /// line.
    fn traceback(&self) -> Option<Vec<String>> {
        let text = String::from_utf8_lossy(&self.text()).into_owned();
        let start = text.rfind("Traceback (most recent call last):")?;
        let lines: Vec<String> = text[start..].lines().map(str::to_string).collect();
        // The exception line is the first after the frames that is not indented.
        let end =
            lines.iter().skip(1).position(|l| !l.starts_with(' ') && !l.is_empty()).map_or(lines.len(), |i| i + 2);
        Some(lines[..end.min(lines.len())].to_vec())
    }
}

/// Whether a notebook has a cell tagged `parameters` (papermill's convention).
fn has_parameters_cell(notebook: &Value) -> bool {
    notebook["cells"].as_array().is_some_and(|cells| {
        cells.iter().any(|c| c["metadata"]["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "parameters")))
    })
}

/// Every process descending from `pid` (from `/proc`), deepest last.
fn descendants(pid: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so read after the last `)`.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or_default() {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// Kills a process, its group and every descendant (papermill's kernel runs in a session of its own).
fn kill_tree(pid: u32) {
    use nix::sys::signal::{kill, killpg, Signal};
    use nix::unistd::Pid;
    let Ok(pid) = i32::try_from(pid) else { return };
    // Stop the tree from growing first, then kill it all.
    let tree = descendants(pid);
    let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
    for &p in &tree {
        let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
    }
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// Kills a run's process tree when dropped.
struct TreeGuard(u32);

impl Drop for TreeGuard {
    fn drop(&mut self) {
        kill_tree(self.0);
    }
}

/// Copies a directory tree (regular files and directories only; the code cache holds nothing else).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()))?;
        } else if t.is_file() {
            std::fs::copy(e.path(), to.join(e.file_name()))?;
        }
    }
    Ok(())
}

/// Every regular file under `root` with its size and modification time, by path relative to `root`, skipping the
/// runner's own directories.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, Option<SystemTime>)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, Option<SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            let name = e.file_name();
            if t.is_dir() && !PRIVATE_DIRS.iter().any(|p| name == *p) {
                walk(root, &e.path(), out);
            } else if t.is_file() {
                if let (Ok(m), Ok(rel)) = (e.metadata(), e.path().strip_prefix(root)) {
                    out.insert(rel.to_path_buf(), (m.len(), m.modified().ok()));
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn storage(what: &str) -> impl Fn(strato_blob::BlobError) -> JobError + '_ {
    move |e| JobError::Retryable(format!("{what}: {e}"))
}

/// A failed run's error, as the job's error and the invocation's error document: Lambda's
/// `{"errorType", "errorMessage", "stackTrace"}`, the traceback's lines as the stack.
fn failure(kind: &str, message: String, trace: Vec<String>) -> JobError {
    JobError::Permanent(json!({"errorType": kind, "errorMessage": message, "stackTrace": trace}).to_string())
}

/// What a run's process ended with.
enum Ended {
    Exited(std::process::ExitStatus),
    Stopped,
}

/// Runs one step (nbconvert or the model itself), streaming its merged output into the log and the log to storage,
/// reporting progress from papermill's cell lines, and killing the tree when the job must stop.
#[allow(clippy::too_many_arguments)]
async fn step(
    functions: &Functions,
    argv: &[String],
    cwd: &Path,
    env: &BTreeMap<String, String>,
    log: &Arc<parking_lot::Mutex<Log>>,
    log_key: &str,
    ctx: &JobContext,
    cells: Option<usize>,
) -> Result<Ended, JobError> {
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| JobError::Retryable(format!("{} could not be started: {e}", argv[0])))?;
    let pid = child.id().unwrap_or_default();
    // Also when this future is dropped (the worker pool aborts a job at shutdown): nothing of the run survives it.
    let tree = TreeGuard(pid);
    let mut readers = Vec::new();
    let cells_done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child.stderr.take().map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        let cells_done = cells_done.clone();
        readers.push(tokio::spawn(async move {
            let mut stream = stream;
            let mut buf = vec![0u8; 64 << 10];
            // Drained as fast as it comes, whatever it holds: a full pipe would stall the model.
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let chunk = &buf[..n];
                let ended = chunk.windows(11).filter(|w| w == b"Ending Cell").count();
                if ended > 0 {
                    cells_done.fetch_add(ended, std::sync::atomic::Ordering::Relaxed);
                }
                log.lock().push(chunk);
            }
        }));
    }
    let mut flush = tokio::time::interval(LOG_FLUSH);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop_check = tokio::time::interval(Duration::from_millis(200));
    let ended = loop {
        tokio::select! {
            status = child.wait() => {
                break Ended::Exited(status.map_err(|e| JobError::Retryable(format!("waiting for the run: {e}")))?);
            }
            _ = flush.tick() => {
                write_log(functions, log, log_key, false).await;
                if let Some(total) = cells.filter(|t| *t > 0) {
                    let done = cells_done.load(std::sync::atomic::Ordering::Relaxed);
                    ctx.set_progress((10 + 80 * done / total).min(90) as i32);
                }
            }
            _ = stop_check.tick() => {
                if ctx.should_stop() {
                    kill_tree(pid);
                    let _ = child.wait().await;
                    break Ended::Stopped;
                }
            }
        }
    };
    // Whatever is left of the tree (a daemon the model started) goes with it, so the pipes close.
    drop(tree);
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(5), r).await;
    }
    Ok(ended)
}

/// Writes the log to storage when it changed (always when `last`). A failure to write is logged, not fatal: the
/// run goes on and the next flush tries again.
async fn write_log(functions: &Functions, log: &Arc<parking_lot::Mutex<Log>>, key: &str, last: bool) {
    let text = {
        let mut l = log.lock();
        if !l.changed && !last {
            return;
        }
        l.changed = false;
        l.text()
    };
    if let Err(e) = functions.blobs().put(&format!("{FILES}{key}"), text.into()).await {
        tracing::warn!(key, error = %e, "cannot write a notebook run's log");
    }
}

async fn run(functions: &Functions, a: &NotebookRunArgs, job: &JobRecord, ctx: &JobContext) -> Result<Value, JobError> {
    let event = parse_event(&a.event).map_err(|e| failure("InvalidEvent", e.to_string(), Vec::new()))?;
    let (config, _, code_dir) =
        functions.notebook_code(&a.function, a.qualifier.as_deref()).await.map_err(|e| match e {
            FunctionError::NotFound(m) | FunctionError::Invalid(m) => failure("ResourceNotFound", m, Vec::new()),
            e => JobError::Retryable(e.to_string()),
        })?;
    let stem = event.notebook.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let log_key = format!("{}logs/{stem}.txt", event.scenario);
    let log = Arc::new(parking_lot::Mutex::new(Log::default()));
    log.lock().note(&format!(
        "[strato] run {} of {} (job {}, attempt {}): {} on scenario {}",
        a.request_id,
        a.function,
        job.id,
        job.attempts,
        event.notebook.display(),
        event.scenario
    ));

    // 1. A fresh work directory: the model's code, then the scenario's files over it.
    let work = functions.options().work_dir.join("notebook-runs").join(&job.id);
    let _ = std::fs::remove_dir_all(&work);
    let prepare = {
        let (code_dir, work) = (code_dir.clone(), work.clone());
        tokio::task::spawn_blocking(move || {
            copy_tree(&code_dir, &work).and_then(|()| std::fs::create_dir_all(work.join(".strato/tmp")))
        })
    };
    prepare
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?
        .map_err(|e| JobError::Retryable(format!("preparing the work directory: {e}")))?;
    let result = run_in(functions, a, &event, &config, &work, &stem, &log, &log_key, ctx).await;
    match &result {
        Ok(_) => log.lock().note("[strato] run succeeded"),
        Err(e) => log.lock().note(&format!("[strato] run failed: {e}")),
    }
    write_log(functions, &log, &log_key, true).await;
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&work)).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn run_in(
    functions: &Functions,
    a: &NotebookRunArgs,
    event: &Event,
    config: &crate::config::FunctionConfig,
    work: &Path,
    stem: &str,
    log: &Arc<parking_lot::Mutex<Log>>,
    log_key: &str,
    ctx: &JobContext,
) -> Result<Value, JobError> {
    let blobs = functions.blobs();
    let prefix = format!("{FILES}{}", event.scenario);
    let objects = blobs.list(&prefix, MAX_SCENARIO_FILES + 1).await.map_err(storage("listing the scenario's files"))?;
    if objects.len() > MAX_SCENARIO_FILES {
        return Err(failure(
            "ScenarioTooLarge",
            format!("scenario {} has more than {MAX_SCENARIO_FILES} files", event.scenario),
            Vec::new(),
        ));
    }
    let mut downloaded = 0u64;
    for o in &objects {
        let rel = &o.key[prefix.len()..];
        // The scenario's own log and the outputs of earlier runs are not inputs.
        if rel.starts_with("logs/") {
            continue;
        }
        let Some(rel_path) = inside(rel) else {
            log.lock().note(&format!("[strato] skipped scenario file {rel:?}: not a relative path"));
            continue;
        };
        let dest = work.join(&rel_path);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| JobError::Retryable(format!("{}: {e}", parent.display())))?;
        }
        let download = blobs.get_stream(&o.key, None).await.map_err(storage("reading a scenario file"))?;
        let mut reader = tokio_util::io::StreamReader::new(download.stream.map_err(std::io::Error::other));
        let mut file = tokio::fs::File::create(&dest)
            .await
            .map_err(|e| JobError::Retryable(format!("{}: {e}", dest.display())))?;
        downloaded += tokio::io::copy(&mut reader, &mut file)
            .await
            .map_err(|e| JobError::Retryable(format!("downloading {rel}: {e}")))?;
    }
    log.lock().note(&format!("[strato] {} scenario files ({downloaded} bytes) in place", objects.len()));
    ctx.set_progress(10);

    let nb_path = work.join(&event.notebook);
    let nb_text = tokio::fs::read(&nb_path).await.map_err(|_| {
        failure(
            "NotebookNotFound",
            format!("notebook {} is neither in the model's code nor in the scenario", event.notebook.display()),
            Vec::new(),
        )
    })?;
    let notebook: Value = serde_json::from_slice(&nb_text).map_err(|e| {
        failure("InvalidNotebook", format!("notebook {} is not JSON: {e}", event.notebook.display()), Vec::new())
    })?;
    let nb_dir = nb_path.parent().unwrap_or(work).to_path_buf();
    let before = snapshot(work);

    let python = functions.options().python.display().to_string();
    let mut env = crate::instance::clean_env(&config.environment);
    let tmp = work.join(".strato/tmp").display().to_string();
    for (k, v) in [
        ("HOME", tmp.clone()),
        ("TMPDIR", tmp),
        // Output reaches the log as it is printed, not when a buffer fills.
        ("PYTHONUNBUFFERED", "1".to_string()),
        ("MPLBACKEND", "Agg".to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", config.name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", config.memory_size.to_string()),
        ("AWS_REQUEST_ID", a.request_id.clone()),
        ("TZ", ":UTC".to_string()),
    ] {
        env.insert(k.into(), v);
    }
    let mut limit = Vec::new();
    if let Some(prlimit) = crate::instance::prlimit() {
        limit =
            vec![prlimit.display().to_string(), format!("--data={}", u64::from(config.memory_size) << 20), "--".into()];
    }
    let arg = event.launcher_arg.to_string();
    let papermill = has_parameters_cell(&notebook);
    let executed = nb_dir.join(format!("{stem}.executed.ipynb"));
    let (argv, cells) = if papermill {
        let mut argv = limit.clone();
        argv.extend([
            python.clone(),
            "-m".into(),
            "papermill".into(),
            nb_path.display().to_string(),
            executed.display().to_string(),
            "-y".into(),
            arg.clone(),
            "--cwd".into(),
            nb_dir.display().to_string(),
            "-k".into(),
            "python3".into(),
            "--log-output".into(),
            "--no-progress-bar".into(),
        ]);
        let total = notebook["cells"].as_array().map_or(0, Vec::len) + 1; // papermill adds the injected cell
        log.lock().note(&format!("[strato] papermill: {} with parameters {arg}", event.notebook.display()));
        (argv, Some(total))
    } else {
        let script_dir = work.join(".strato/script");
        let convert = vec![
            python.clone(),
            "-m".into(),
            "nbconvert".into(),
            "--to".into(),
            "script".into(),
            "--output-dir".into(),
            script_dir.display().to_string(),
            "--output".into(),
            stem.to_string(),
            nb_path.display().to_string(),
        ];
        log.lock().note(&format!("[strato] nbconvert: {} to a script", event.notebook.display()));
        match step(functions, &convert, &nb_dir, &env, log, log_key, ctx, None).await? {
            Ended::Exited(s) if s.success() => {}
            Ended::Exited(s) => {
                return Err(failure(
                    "NotebookConversionError",
                    format!("nbconvert could not convert {} ({s}); see the log", event.notebook.display()),
                    log.lock().traceback().unwrap_or_default(),
                ))
            }
            Ended::Stopped => return Err(stopped(ctx, config.timeout)),
        }
        let script = std::fs::read_dir(&script_dir)
            .ok()
            .and_then(|d| d.flatten().map(|e| e.path()).find(|p| p.file_stem().is_some_and(|s| s == stem)))
            .ok_or_else(|| JobError::Permanent("nbconvert wrote no script".into()))?;
        let mut argv = limit.clone();
        argv.extend([python.clone(), script.display().to_string(), arg.clone()]);
        log.lock().note(&format!("[strato] python {} '{arg}'", event.notebook.display()));
        (argv, None)
    };
    match step(functions, &argv, &nb_dir, &env, log, log_key, ctx, cells).await? {
        Ended::Exited(s) if s.success() => {}
        Ended::Exited(s) => {
            // papermill keeps the failing cell's error in the executed notebook; a script's is its traceback.
            let cell_error = if papermill { cell_error(&executed) } else { None };
            let trace = match &cell_error {
                Some((_, trace)) => trace.clone(),
                None => log.lock().traceback().unwrap_or_default(),
            };
            let last = match cell_error {
                Some((message, _)) => message,
                None => trace.last().cloned().unwrap_or_else(|| format!("the run ended with {s}")),
            };
            return Err(failure("NotebookError", format!("{}: {last}", event.notebook.display()), trace));
        }
        Ended::Stopped => return Err(stopped(ctx, config.timeout)),
    }
    ctx.set_progress(90);

    // 3. What the run created or changed goes back under the scenario prefix.
    let after = snapshot(work);
    let mut uploaded = Vec::new();
    for (rel, meta) in &after {
        if before.get(rel) == Some(meta) {
            continue;
        }
        let Some(rel_s) = rel.to_str() else { continue };
        let key = format!("{prefix}{rel_s}");
        let file =
            tokio::fs::File::open(work.join(rel)).await.map_err(|e| JobError::Retryable(format!("{rel_s}: {e}")))?;
        blobs
            .put_stream(&key, tokio_util::io::ReaderStream::new(file), None)
            .await
            .map_err(storage("uploading an output"))?;
        uploaded.push(rel_s.to_string());
    }
    log.lock().note(&format!(
        "[strato] uploaded {} outputs under {}: {}",
        uploaded.len(),
        event.scenario,
        uploaded.join(", ")
    ));
    ctx.set_progress(100);
    Ok(a.event.clone())
}

/// The error a cell of an executed notebook raised: `ename: evalue` and the traceback without terminal colours.
fn cell_error(executed: &Path) -> Option<(String, Vec<String>)> {
    let nb: Value = serde_json::from_slice(&std::fs::read(executed).ok()?).ok()?;
    let error = nb["cells"]
        .as_array()?
        .iter()
        .flat_map(|c| c["outputs"].as_array().into_iter().flatten())
        .find(|o| o["output_type"] == "error")?;
    let message =
        format!("{}: {}", error["ename"].as_str().unwrap_or("Error"), error["evalue"].as_str().unwrap_or_default());
    let trace = error["traceback"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .flat_map(|t| strip_ansi(t).lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    Some((message, trace))
}

/// Text without ANSI escape sequences (IPython colours its tracebacks).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a run that was told to stop stopped.
fn stopped(ctx: &JobContext, timeout_s: u32) -> JobError {
    if ctx.timed_out() {
        failure("Sandbox.Timedout", format!("Task timed out after {timeout_s}.00 seconds"), Vec::new())
    } else if ctx.cancel_requested() {
        JobError::Permanent("cancelled: the run's processes were stopped".into())
    } else {
        // Shutdown or a lost lease: the job goes back to the queue and runs again from the start.
        JobError::Retryable("the worker stopped; the run will start again".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_event_parses_and_bad_ones_say_what_to_fix() {
        let seed = json!({"notebook_path": "notebooks/model/model.ipynb", "scenario_path_S3": "test/",
            "launcher_arg": {"training_folder": "/tmp", "params": {"some_param": "value"}},
            "metadata": {"user_email": "lambda_test@test.com"}});
        let e = parse_event(&seed).unwrap();
        assert_eq!(e.notebook, PathBuf::from("notebooks/model/model.ipynb"));
        assert_eq!(e.scenario, "test/");
        assert_eq!(e.launcher_arg["params"]["some_param"], "value");
        assert_eq!(parse_event(&json!({"notebook_path": "a.ipynb", "scenario_path_S3": "s"})).unwrap().scenario, "s/");
        for (bad, says) in [
            (json!([]), "JSON object"),
            (json!({"scenario_path_S3": "s/"}), "notebook_path"),
            (json!({"notebook_path": "../x.ipynb", "scenario_path_S3": "s/"}), "inside the model"),
            (json!({"notebook_path": "/etc/x.ipynb", "scenario_path_S3": "s/"}), "inside the model"),
            (json!({"notebook_path": "x.py", "scenario_path_S3": "s/"}), ".ipynb"),
            (json!({"notebook_path": "x.ipynb"}), "scenario_path_S3"),
            (json!({"notebook_path": "x.ipynb", "scenario_path_S3": "../s/"}), "scenario_path_S3"),
            (json!({"notebook_path": "x.ipynb", "scenario_path_S3": "s/", "launcher_arg": 3}), "launcher_arg"),
        ] {
            let m = parse_event(&bad).unwrap_err().to_string();
            assert!(m.contains(says), "{bad}: {m}");
        }
    }

    #[test]
    fn progress_bars_collapse_and_long_logs_keep_both_ends() {
        let mut log = Log::default();
        log.push(b"start\n");
        for i in 0..100_000 {
            log.push(format!("\r{i}%|#####|").as_bytes());
        }
        log.push(b"\ndone\n");
        assert_eq!(String::from_utf8(log.text()).unwrap(), "start\n99999%|#####|\ndone\n");
        let mut big = Log::default();
        for i in 0..400_000 {
            big.push(format!("line {i:>20}\n").as_bytes());
        }
        let text = String::from_utf8(big.text()).unwrap();
        assert!(text.starts_with("line                    0\n") && text.ends_with("line               399999\n"));
        assert!(text.contains("bytes of output cut") && text.len() < 2 * LOG_HALF + 100);
    }

    #[test]
    fn the_last_traceback_is_found() {
        let mut log = Log::default();
        log.push(b"ok\nTraceback (most recent call last):\n  File \"m.py\", line 3, in <module>\n    f()\nValueError: bad scenario\n[strato] x\n");
        let t = log.traceback().unwrap();
        assert_eq!(t.first().unwrap(), "Traceback (most recent call last):");
        assert_eq!(t.last().unwrap(), "ValueError: bad scenario");
        assert!(Log::default().traceback().is_none());
    }

    #[test]
    fn terminal_colours_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[0;31mValueError\u{1b}[0m: boom"), "ValueError: boom");
    }

    #[test]
    fn parameters_cells_are_recognised() {
        assert!(has_parameters_cell(&json!({"cells": [{"metadata": {"tags": ["parameters"]}}]})));
        assert!(!has_parameters_cell(&json!({"cells": [{"metadata": {"tags": ["other"]}}, {"metadata": {}}]})));
        assert!(!has_parameters_cell(&json!({})));
    }
}
