//! The renditions made by the real ffmpeg (Debian's, installed by `.ci/run`) from clips generated here — test
//! patterns with a tone, landscape, ultra-wide, portrait and square, with and without audio, a VP9 WebM with
//! alpha — checked with ffprobe: geometry, codecs, frame rate, duration, `+faststart`; and bad uploads (not a
//! video, no video track, under a second, cut off halfway) refused with their reason. Tests skip, saying so, where
//! ffmpeg is not installed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use strato_media::renditions::{render, Rendition, RenditionOptions};
use strato_media::{MediaError, Probe, Tools};

fn tools() -> Option<Tools> {
    let ok = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: ffmpeg is not installed (apt-get install ffmpeg; .ci/run does)");
        return None;
    }
    Some(Tools { timeout: Duration::from_secs(120), threads: 2, ..Tools::default() })
}

/// Makes a clip with ffmpeg's own sources: `size` test pattern at 25 fps for `seconds`, a 440 Hz tone unless
/// `silent`.
fn clip(dir: &Path, name: &str, size: &str, seconds: f64, silent: bool) -> PathBuf {
    let out = dir.join(name);
    let mut c = std::process::Command::new("ffmpeg");
    c.args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"));
    if !silent {
        c.args(["-f", "lavfi", "-i"]).arg(format!("sine=frequency=440:sample_rate=48000:duration={seconds}"));
    }
    c.args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    if !silent {
        c.args(["-c:a", "aac", "-shortest"]);
    }
    let status = c.arg(&out).status().unwrap();
    assert!(status.success(), "making {name}");
    out
}

/// Whether an MP4's `moov` box comes before its `mdat` (`+faststart`: playable while it downloads).
fn faststart(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    let (mut at, mut seen) = (0usize, Vec::new());
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        seen.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).to_string());
        if size < 8 {
            break;
        }
        at += size;
    }
    let pos = |b: &str| seen.iter().position(|s| s == b);
    matches!((pos("moov"), pos("mdat")), (Some(m), Some(d)) if m < d)
}

async fn made(tools: &Tools, r: Rendition, input: &Path, opts: RenditionOptions, out: &Path) -> Probe {
    let probe = Probe::of(tools, input).await.unwrap();
    let mut last = None;
    let p = render(tools, r, input, &probe, opts, out, &mut |p| last = Some(p)).await.unwrap();
    if !matches!(r, Rendition::Thumbnail { .. }) {
        let last = last.expect("progress was reported");
        assert!(last.fraction.unwrap() > 0.8, "{last:?}");
    }
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_and_mobile_renditions_have_the_geometry_codecs_and_layout_players_need() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // (input size, web size, web size keeping the ratio, mobile size)
    let cases = [
        ("1920x1080", (1280, 720), (1280, 720), (480, 480)),
        ("2560x1080", (1280, 720), (1706, 720), (480, 480)),
        ("720x1280", (404, 720), (404, 720), (270, 480)),
        ("640x640", (640, 640), (640, 640), (480, 480)),
    ];
    for (i, (size, web, kept, mobile)) in cases.into_iter().enumerate() {
        let input = clip(d, &format!("in{i}.mp4"), size, 2.0, i == 3);
        let w = made(&t, Rendition::Web, &input, RenditionOptions::default(), &d.join(format!("web{i}.mp4"))).await;
        let v = w.video.as_ref().unwrap();
        assert_eq!((v.width, v.height), web, "{size} web");
        assert_eq!((v.codec.as_str(), v.pix_fmt.as_str()), ("h264", "yuv420p"), "{size}");
        assert!((v.fps - 30.0).abs() < 0.01, "{size}: {} fps", v.fps);
        assert!((w.duration - 2.0).abs() < 0.15, "{size}: {} s", w.duration);
        assert!(faststart(&d.join(format!("web{i}.mp4"))), "{size}: moov before mdat");
        match (i == 3, &w.audio) {
            (false, Some(a)) => assert_eq!(a.codec, "aac"),
            (true, None) => {}
            (silent, a) => panic!("{size}: silent {silent}, audio {a:?}"),
        }
        let opts = RenditionOptions { maintain_original_aspect_ratio: true };
        let k = made(&t, Rendition::Web, &input, opts, &d.join(format!("kept{i}.mp4"))).await;
        assert_eq!(k.video.as_ref().map(|v| (v.width, v.height)), Some(kept), "{size} keeping its ratio");
        let m = made(&t, Rendition::Mobile, &input, opts, &d.join(format!("mobile{i}.mp4"))).await;
        assert_eq!(m.video.as_ref().map(|v| (v.width, v.height)), Some(mobile), "{size} mobile");
        assert!(faststart(&d.join(format!("mobile{i}.mp4"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trim_re_encodes_the_cut_and_a_thumbnail_is_a_jpeg_frame() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = clip(dir.path(), "long.mp4", "1280x720", 6.0, false);
    let out = dir.path().join("original.mp4");
    let p = made(&t, Rendition::Trim { start: 1.5, end: 4.0 }, &input, Default::default(), &out).await;
    assert!((p.duration - 2.5).abs() < 0.15, "{} s", p.duration);
    assert_eq!(p.video.as_ref().map(|v| (v.width, v.height)), Some((1280, 720)), "the original's own size");
    let thumb = dir.path().join("thumbnail.jpg");
    let p = made(&t, Rendition::Thumbnail { at: 1.0 }, &input, Default::default(), &thumb).await;
    assert_eq!(p.video.as_ref().map(|v| v.codec.as_str()), Some("mjpeg"));
    let bytes = std::fs::read(&thumb).unwrap();
    assert_eq!(&bytes[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_virtual_background_recording_keeps_its_alpha() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("vbg.webm");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=640x360:rate=25:duration=1.5,format=yuva420p,geq=lum='lum(X,Y)':a='if(lt(X,320),255,0)'")
        .args(["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-deadline", "realtime", "-cpu-used", "8"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    let probe = Probe::of(&t, &input).await.unwrap();
    assert!(probe.video.as_ref().unwrap().alpha, "the generated clip has alpha: {probe:?}");
    let out = dir.path().join("web.webm");
    let p = made(&t, Rendition::WebAlpha, &input, Default::default(), &out).await;
    let v = p.video.unwrap();
    assert_eq!((v.codec.as_str(), v.width, v.height, v.alpha), ("vp9", 640, 360, true), "{v:?}");
    assert!(p.format.contains("webm"), "{}", p.format);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_uploads_are_refused_with_their_reason_and_leave_nothing_behind() {
    let Some(t) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let text = d.join("notes.mp4");
    std::fs::write(&text, "this is not a video, whatever its name says").unwrap();
    assert!(matches!(Probe::of(&t, &text).await, Err(MediaError::NotMedia(_))));

    let audio = d.join("voice.m4a");
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=duration=2"])
        .arg(&audio)
        .status()
        .unwrap();
    assert!(status.success());
    let p = Probe::of(&t, &audio).await.unwrap();
    assert!(matches!(p.check_answer(), Err(MediaError::NoVideo)));

    let short = clip(d, "short.mp4", "320x240", 0.5, false);
    let p = Probe::of(&t, &short).await.unwrap();
    assert!(matches!(p.check_answer(), Err(MediaError::TooShort(s)) if s < 1.0), "{p:?}");

    // Cut off halfway: its index is missing (an MP4 without faststart keeps it at the end).
    let whole = clip(d, "whole.mp4", "640x360", 3.0, false);
    let bytes = std::fs::read(&whole).unwrap();
    let cut = d.join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(Probe::of(&t, &cut).await, Err(MediaError::NotMedia(_))), "a cut-off upload is not a video");

    // A failing run leaves no partial output where the rendition goes, nor beside it.
    let good = Probe::of(&t, &whole).await.unwrap();
    let out = d.join("web.mp4");
    let mut broken = t.clone();
    broken.ffmpeg = PathBuf::from("/bin/false");
    let r = render(&broken, Rendition::Web, &whole, &good, Default::default(), &out, &mut |_| {}).await;
    assert!(matches!(r, Err(MediaError::Failed { .. })), "{r:?}");
    let left: Vec<_> = std::fs::read_dir(d).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!out.exists() && !left.iter().any(|n| n.to_string_lossy().starts_with(".web.mp4")), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_time_limit_is_killed_with_its_process_group() {
    let Some(mut t) = tools() else { return };
    t.timeout = Duration::from_millis(500);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("endless.mp4");
    // An endless source: only the time limit ends it.
    let args: Vec<String> = ["-f", "lavfi", "-re", "-i", "testsrc2=size=320x240:rate=25", "-c:v", "libx264"]
        .iter()
        .map(|s| s.to_string())
        .chain([out.to_string_lossy().to_string()])
        .collect();
    let started = std::time::Instant::now();
    let r = t.ffmpeg(&args, None, &mut |_| {}).await;
    assert!(matches!(r, Err(MediaError::TimedOut { tool: "ffmpeg", .. })), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Nothing of it runs on: no ffmpeg writes that file any more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0), size, "the killed encoder still writes");
}
