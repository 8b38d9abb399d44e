//! The renditions of an answer video, as MentorPal's upload processor made them:
//! - **web**: H.264 + AAC MP4, `+faststart`, 30 fps, at most 720 px high, even dimensions; input wider than 16:9
//!   has its sides cropped to 16:9 (nothing is padded); `maintain_original_aspect_ratio` keeps the input's ratio;
//! - **mobile**: 480×480 — landscape (and square) input cropped to its centre square, portrait input scaled to
//!   480 px high;
//! - **web with alpha**: a virtual-background recording (VP9 WebM with alpha) stays VP9 WebM with its alpha;
//! - **trim**: the original cut to `[start, end]` seconds and re-encoded at its own size;
//! - **thumbnail**: the frame at 1 s, as JPEG.
//!
//! Sizes are computed here, not left to ffmpeg's expressions, so they are tested without ffmpeg. Each output is
//! written beside its destination under a temporary name and renamed into place once ffmpeg succeeded: a failed or
//! killed run leaves nothing half-written, and a retry overwrites only its own output.

use std::path::Path;

use crate::{MediaError, Probe, Progress, Tools};

/// What to make of an upload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rendition {
    /// The web MP4.
    Web,
    /// The mobile MP4.
    Mobile,
    /// The web rendition of a VP9-with-alpha recording: VP9 WebM keeping its alpha.
    WebAlpha,
    /// The original cut to `[start, end]` seconds.
    Trim { start: f64, end: f64 },
    /// A JPEG of the frame at `at` seconds (at most half the video's length).
    Thumbnail { at: f64 },
}

/// Choices the upload makes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RenditionOptions {
    /// Keep the input's aspect ratio in the web rendition (no crop to 16:9).
    pub maintain_original_aspect_ratio: bool,
}

/// A crop (centred) and the size after scaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// The region kept, `(width, height)`, centred in the frame.
    pub crop: Option<(u32, u32)>,
    /// The output's width and height (even).
    pub width: u32,
    pub height: u32,
}

fn even(x: u32) -> u32 {
    (x - x % 2).max(2)
}

/// The web rendition's geometry for a displayed `w`×`h` input.
pub fn web_geometry(w: u32, h: u32, keep_ratio: bool) -> Geometry {
    let (w, h) = (w.max(2), h.max(2));
    let crop_w = if !keep_ratio && (w as u64) * 9 > (h as u64) * 16 { even(((h as u64) * 16 / 9) as u32) } else { w };
    let height = even(h.min(720));
    let width = even(((crop_w as f64) * (height as f64) / (h as f64)).round() as u32);
    Geometry { crop: (crop_w != w).then_some((crop_w, h)), width, height }
}

/// The mobile rendition's geometry for a displayed `w`×`h` input.
pub fn mobile_geometry(w: u32, h: u32) -> Geometry {
    let (w, h) = (w.max(2), h.max(2));
    if w >= h {
        Geometry { crop: (w != h).then_some((even(h), even(h))), width: 480, height: 480 }
    } else {
        Geometry { crop: None, width: even(((w as f64) * 480.0 / (h as f64)).round() as u32), height: 480 }
    }
}

fn filter(g: Geometry) -> String {
    let crop = g.crop.map(|(w, h)| format!("crop={w}:{h}:(iw-{w})/2:(ih-{h})/2,")).unwrap_or_default();
    format!("{crop}scale={}:{}:flags=bicubic,setsar=1,fps=30", g.width, g.height)
}

fn s(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| p.to_string()).collect()
}

/// ffmpeg's arguments for a rendition of `input` (probed as `probe`) into `output`.
pub fn arguments(
    r: Rendition,
    input: &Path,
    probe: &Probe,
    opts: RenditionOptions,
    output: &Path,
) -> Result<Vec<String>, MediaError> {
    let video = probe.check_answer()?;
    let (inp, out) = (input.to_string_lossy().to_string(), output.to_string_lossy().to_string());
    let h264 = s(&["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"]);
    let aac = s(&["-c:a", "aac", "-b:a", "128k", "-ac", "2"]);
    let maps = s(&["-map", "0:v:0", "-map", "0:a:0?"]);
    // VP9 with alpha is only decoded with its alpha by libvpx.
    let decoder = if video.codec == "vp9" && video.alpha { s(&["-c:v", "libvpx-vp9"]) } else { Vec::new() };
    let mut a = Vec::new();
    match r {
        Rendition::Web | Rendition::Mobile => {
            let g = match r {
                Rendition::Web => web_geometry(video.width, video.height, opts.maintain_original_aspect_ratio),
                _ => mobile_geometry(video.width, video.height),
            };
            a.extend(decoder);
            a.extend(["-i".into(), inp]);
            a.extend(maps);
            a.extend(["-vf".into(), format!("{},format=yuv420p", filter(g))]);
            a.extend(h264);
            a.extend(aac);
            a.extend(s(&["-movflags", "+faststart", "-f", "mp4"]));
        }
        Rendition::WebAlpha => {
            let g = web_geometry(video.width, video.height, opts.maintain_original_aspect_ratio);
            a.extend(s(&["-c:v", "libvpx-vp9"]));
            a.extend(["-i".into(), inp]);
            a.extend(maps);
            a.extend(["-vf".into(), format!("{},format=yuva420p", filter(g))]);
            a.extend(s(&[
                "-c:v",
                "libvpx-vp9",
                "-pix_fmt",
                "yuva420p",
                "-b:v",
                "0",
                "-crf",
                "32",
                "-deadline",
                "realtime",
            ]));
            a.extend(s(&["-cpu-used", "8", "-row-mt", "1", "-auto-alt-ref", "0", "-c:a", "libopus", "-b:a", "96k"]));
            a.extend(s(&["-f", "webm"]));
        }
        Rendition::Trim { start, end } => {
            if !(start.is_finite() && end.is_finite()) || start < 0.0 || end <= start || start >= probe.duration {
                return Err(MediaError::InvalidTrim(format!(
                    "start {start} s and end {end} s must satisfy 0 <= start < end, start within the video's {:.2} s",
                    probe.duration
                )));
            }
            let end = end.min(probe.duration);
            let alpha = video.codec == "vp9" && video.alpha;
            a.extend(decoder);
            a.extend(["-ss".into(), format!("{start:.3}"), "-to".into(), format!("{end:.3}"), "-i".into(), inp]);
            a.extend(maps);
            if alpha {
                a.extend(s(&["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "0", "-crf", "24"]));
                a.extend(s(&["-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus", "-f", "webm"]));
            } else {
                a.extend(["-vf".into(), "scale=trunc(iw/2)*2:trunc(ih/2)*2,setsar=1".into()]);
                a.extend(h264);
                a.extend(aac);
                a.extend(s(&["-movflags", "+faststart", "-f", "mp4"]));
            }
        }
        Rendition::Thumbnail { at } => {
            let at = at.clamp(0.0, probe.duration / 2.0);
            a.extend(decoder);
            a.extend(["-ss".into(), format!("{at:.3}"), "-i".into(), inp]);
            a.extend(s(&[
                "-map",
                "0:v:0",
                "-frames:v",
                "1",
                "-update",
                "1",
                "-q:v",
                "3",
                "-f",
                "image2",
                "-c:v",
                "mjpeg",
            ]));
        }
    }
    a.push(out);
    Ok(a)
}

/// Makes rendition `r` of `input` at `output` (replacing it only once complete); the output's probe.
pub async fn render(
    tools: &Tools,
    r: Rendition,
    input: &Path,
    probe: &Probe,
    opts: RenditionOptions,
    output: &Path,
    on_progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<Probe, MediaError> {
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = output.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let partial = tempfile::Builder::new().prefix(&format!(".{name}.")).tempfile_in(dir)?.into_temp_path();
    let args = arguments(r, input, probe, opts, &partial)?;
    let expected = match r {
        Rendition::Trim { start, end } => Some(end.min(probe.duration) - start),
        Rendition::Thumbnail { .. } => None,
        _ => Some(probe.duration),
    };
    tools.ffmpeg(&args, expected, on_progress).await?;
    let made = if matches!(r, Rendition::Thumbnail { .. }) { None } else { Some(Probe::of(tools, &partial).await?) };
    partial.persist(output).map_err(|e| MediaError::Io(e.error))?;
    match made {
        Some(p) => Ok(p),
        None => Probe::of(tools, output).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_is_cropped_to_16_9_only_when_wider_and_never_over_720_high() {
        assert_eq!(web_geometry(1920, 1080, false), Geometry { crop: None, width: 1280, height: 720 });
        assert_eq!(web_geometry(2560, 1080, false), Geometry { crop: Some((1920, 1080)), width: 1280, height: 720 });
        assert_eq!(web_geometry(2560, 1080, true), Geometry { crop: None, width: 1706, height: 720 });
        assert_eq!(web_geometry(1080, 1920, false), Geometry { crop: None, width: 404, height: 720 });
        assert_eq!(web_geometry(640, 480, false), Geometry { crop: None, width: 640, height: 480 });
        assert_eq!(web_geometry(641, 361, false), Geometry { crop: None, width: 638, height: 360 });
    }

    #[test]
    fn mobile_is_a_centre_square_of_landscape_and_a_scaled_portrait() {
        assert_eq!(mobile_geometry(1920, 1080), Geometry { crop: Some((1080, 1080)), width: 480, height: 480 });
        assert_eq!(mobile_geometry(480, 480), Geometry { crop: None, width: 480, height: 480 });
        assert_eq!(mobile_geometry(720, 1280), Geometry { crop: None, width: 270, height: 480 });
    }

    #[test]
    fn any_size_gives_even_dimensions_within_the_bounds() {
        use rand::Rng;
        let mut rng = rand::rng();
        for _ in 0..20_000 {
            let (w, h) = (rng.random_range(1..8000u32), rng.random_range(1..8000u32));
            for (g, keep) in [(web_geometry(w, h, false), false), (web_geometry(w, h, true), true)] {
                assert!(
                    g.width.is_multiple_of(2) && g.height.is_multiple_of(2) && g.width >= 2 && g.height >= 2,
                    "{w}x{h} {g:?}"
                );
                assert!(g.height <= 720, "{w}x{h} {g:?}");
                let (cw, ch) = g.crop.unwrap_or((w, h));
                assert!(cw <= w.max(2) && ch <= h.max(2), "{w}x{h} {g:?}");
                if !keep && w >= 2 && h >= 2 {
                    // Never wider than 16:9 (up to rounding to even pixels).
                    assert!((g.width as f64) <= (g.height as f64) * 16.0 / 9.0 + 2.5, "{w}x{h} {g:?}");
                }
            }
            let m = mobile_geometry(w, h);
            assert!(m.width.is_multiple_of(2) && m.height == 480 && m.width <= 480, "{w}x{h} {m:?}");
        }
    }

    #[test]
    fn a_trim_outside_the_video_is_refused() {
        let probe = Probe {
            duration: 10.0,
            format: "mp4".into(),
            video: Some(crate::Stream {
                codec: "h264".into(),
                width: 640,
                height: 360,
                fps: 30.0,
                pix_fmt: "yuv420p".into(),
                alpha: false,
                sample_rate: 0,
                channels: 0,
            }),
            audio: None,
            size: 1,
        };
        for (start, end) in [(5.0, 4.0), (-1.0, 3.0), (10.0, 12.0), (f64::NAN, 1.0)] {
            let r =
                arguments(Rendition::Trim { start, end }, Path::new("i"), &probe, Default::default(), Path::new("o"));
            assert!(matches!(r, Err(MediaError::InvalidTrim(_))), "{start} {end}");
        }
        let ok = arguments(
            Rendition::Trim { start: 1.0, end: 20.0 },
            Path::new("i"),
            &probe,
            Default::default(),
            Path::new("o"),
        )
        .unwrap();
        assert!(ok.windows(2).any(|w| w[0] == "-to" && w[1] == "10.000"), "the end is clamped to the video: {ok:?}");
    }
}
