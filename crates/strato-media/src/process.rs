//! ffmpeg and ffprobe as supervised child processes. Each runs in a process group of its own with an empty
//! environment (it needs none, and gets no secret of Strato's); ffmpeg reports progress on stdout (`-progress
//! pipe:1`), turned into a fraction of the known duration; stderr's tail is kept for the error. A time limit, a
//! cancelled future or a dropped handle kills the whole group, so no encoder outlives its step.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use crate::MediaError;

/// How much of stderr is kept for an error message.
const STDERR_TAIL: usize = 4096;

/// Where ffmpeg and ffprobe are, and how long one run may take.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The ffmpeg executable (default `ffmpeg`, found on `PATH`).
    pub ffmpeg: PathBuf,
    /// The ffprobe executable (default `ffprobe`).
    pub ffprobe: PathBuf,
    /// The time limit of one run.
    pub timeout: Duration,
    /// Encoder threads per run (0: ffmpeg's choice).
    pub threads: usize,
}

impl Default for Tools {
    fn default() -> Self {
        Self { ffmpeg: "ffmpeg".into(), ffprobe: "ffprobe".into(), timeout: Duration::from_secs(900), threads: 0 }
    }
}

/// A run's progress: how far into the output ffmpeg is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Seconds of output written.
    pub seconds: f64,
    /// Of the expected total, 0 to 1 (when the total is known).
    pub fraction: Option<f64>,
}

/// Kills the process group when dropped, unless the process was reaped.
struct Group {
    pid: Option<i32>,
}

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

fn command(program: &Path, args: &[String]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(program);
    c.args(args)
        .env_clear()
        // Only what locates the program's own libraries and keeps its messages in English.
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    c
}

impl Tools {
    /// Runs ffprobe with `args`; its stdout.
    pub async fn ffprobe(&self, args: &[String]) -> Result<Vec<u8>, MediaError> {
        let (stdout, _) = self.run("ffprobe", &self.ffprobe, args, None, &mut |_| {}).await?;
        Ok(stdout)
    }

    /// Runs ffmpeg with `args` (`-progress pipe:1 -nostats` and the thread count are added), reporting progress
    /// against `expected` seconds of output.
    pub async fn ffmpeg(
        &self,
        args: &[String],
        expected: Option<f64>,
        on_progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(), MediaError> {
        let mut full: Vec<String> = ["-hide_banner", "-nostdin", "-y", "-progress", "pipe:1", "-nostats"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if self.threads > 0 {
            full.extend(["-threads".to_string(), self.threads.to_string()]);
        }
        full.extend(args.iter().cloned());
        self.run("ffmpeg", &self.ffmpeg, &full, expected, on_progress).await.map(|_| ())
    }

    async fn run(
        &self,
        tool: &'static str,
        program: &Path,
        args: &[String],
        expected: Option<f64>,
        on_progress: &mut (dyn FnMut(Progress) + Send),
    ) -> Result<(Vec<u8>, String), MediaError> {
        let mut child = command(program, args).spawn().map_err(|e| MediaError::Missing(tool, e))?;
        let mut group = Group { pid: child.id().map(|p| p as i32) };
        let mut stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let err_task = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            let start = buf.len().saturating_sub(STDERR_TAIL);
            String::from_utf8_lossy(&buf[start..]).trim().to_string()
        });
        let work = async {
            let mut out = Vec::new();
            if tool == "ffmpeg" {
                let mut lines = BufReader::new(&mut stdout).lines();
                while let Some(line) = lines.next_line().await? {
                    if let Some(us) = line.strip_prefix("out_time_us=").and_then(|v| v.trim().parse::<i64>().ok()) {
                        let seconds = us.max(0) as f64 / 1e6;
                        let fraction = expected.filter(|e| *e > 0.0).map(|e| (seconds / e).clamp(0.0, 1.0));
                        on_progress(Progress { seconds, fraction });
                    }
                }
            } else {
                stdout.read_to_end(&mut out).await?;
            }
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((out, status))
        };
        let (out, status) = match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r?,
            Err(_) => {
                drop(group);
                return Err(MediaError::TimedOut { tool, seconds: self.timeout.as_secs() });
            }
        };
        // Reaped: the group's id may be reused from here on.
        group.pid = None;
        let stderr = err_task.await.unwrap_or_default();
        if !status.success() {
            let status = status.code().map_or_else(|| "killed by a signal".to_string(), |c| format!("exit status {c}"));
            return Err(MediaError::Failed { tool, status, stderr: last_lines(&stderr, 6) });
        }
        Ok((out, stderr))
    }
}

/// The last `n` lines of `text`.
fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
