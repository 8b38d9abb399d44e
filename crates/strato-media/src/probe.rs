//! What a media file is, as ffprobe reads it (`-show_format -show_streams`, JSON), and what an answer upload must
//! be: a video track and at least one second. Sizes are as displayed: a phone video stored sideways with a
//! rotation of ±90° reports its displayed width and height.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{MediaError, Tools};

/// A media file's streams and duration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Probe {
    /// Seconds.
    pub duration: f64,
    /// ffprobe's container name (`mov,mp4,m4a,3gp,3g2,mj2`, `matroska,webm`, …).
    pub format: String,
    /// The first video stream (not an attached picture), if any.
    pub video: Option<Stream>,
    /// The first audio stream, if any.
    pub audio: Option<Stream>,
    /// Size in bytes.
    pub size: u64,
}

/// One stream.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stream {
    /// `h264`, `vp9`, `aac`, `opus`, …
    pub codec: String,
    /// Displayed width and height (video).
    pub width: u32,
    pub height: u32,
    /// Frames per second (video).
    pub fps: f64,
    /// `yuv420p`, `yuva420p`, … (video).
    pub pix_fmt: String,
    /// Whether it carries transparency (`alpha_mode` tag of VP8/VP9 in WebM, or an alpha pixel format).
    pub alpha: bool,
    /// Samples per second and channels (audio).
    pub sample_rate: u32,
    pub channels: u32,
}

fn ratio(s: &str) -> f64 {
    match s.split_once('/') {
        Some((a, b)) => {
            let (a, b) = (a.parse::<f64>().unwrap_or(0.0), b.parse::<f64>().unwrap_or(0.0));
            if b == 0.0 {
                0.0
            } else {
                a / b
            }
        }
        None => s.parse().unwrap_or(0.0),
    }
}

fn rotation(s: &Value) -> i64 {
    let from_tag = s["tags"]["rotate"].as_str().and_then(|r| r.parse::<i64>().ok());
    let from_side =
        s["side_data_list"].as_array().into_iter().flatten().find_map(|d| d.get("rotation").and_then(Value::as_i64));
    from_side.or(from_tag).unwrap_or(0)
}

impl Probe {
    /// Parses ffprobe's JSON (`-print_format json -show_format -show_streams`).
    pub fn parse(json: &[u8]) -> Result<Self, MediaError> {
        let v: Value =
            serde_json::from_slice(json).map_err(|e| MediaError::NotMedia(format!("ffprobe's answer: {e}")))?;
        let streams = v["streams"].as_array().cloned().unwrap_or_default();
        let video = streams
            .iter()
            .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"].as_i64() != Some(1))
            .map(|s| {
                let (w, h) = (s["width"].as_u64().unwrap_or(0) as u32, s["height"].as_u64().unwrap_or(0) as u32);
                let (width, height) = if rotation(s).rem_euclid(180) == 90 { (h, w) } else { (w, h) };
                let pix_fmt = s["pix_fmt"].as_str().unwrap_or_default().to_string();
                let alpha = s["tags"]["alpha_mode"].as_str() == Some("1")
                    || s["tags"]["ALPHA_MODE"].as_str() == Some("1")
                    || pix_fmt.starts_with("yuva")
                    || pix_fmt.contains("rgba");
                Stream {
                    codec: s["codec_name"].as_str().unwrap_or_default().to_string(),
                    width,
                    height,
                    fps: ratio(s["avg_frame_rate"].as_str().unwrap_or("0")),
                    pix_fmt,
                    alpha,
                    sample_rate: 0,
                    channels: 0,
                }
            });
        let audio = streams.iter().find(|s| s["codec_type"] == "audio").map(|s| Stream {
            codec: s["codec_name"].as_str().unwrap_or_default().to_string(),
            width: 0,
            height: 0,
            fps: 0.0,
            pix_fmt: String::new(),
            alpha: false,
            sample_rate: s["sample_rate"].as_str().and_then(|r| r.parse().ok()).unwrap_or(0),
            channels: s["channels"].as_u64().unwrap_or(0) as u32,
        });
        let format = &v["format"];
        let duration = format["duration"].as_str().and_then(|d| d.parse::<f64>().ok()).unwrap_or(0.0);
        Ok(Self {
            duration,
            format: format["format_name"].as_str().unwrap_or_default().to_string(),
            video,
            audio,
            size: format["size"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0),
        })
    }

    /// Probes a file. A file ffprobe cannot read is [`MediaError::NotMedia`].
    pub async fn of(tools: &Tools, path: &Path) -> Result<Self, MediaError> {
        let args: Vec<String> = ["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
            .iter()
            .map(|s| s.to_string())
            .chain([path.to_string_lossy().to_string()])
            .collect();
        match tools.ffprobe(&args).await {
            Ok(out) => Self::parse(&out),
            Err(MediaError::Failed { stderr, .. }) => Err(MediaError::NotMedia(stderr)),
            Err(e) => Err(e),
        }
    }

    /// Whether this can be a mentor's answer: a video track of a real size, at least a second long.
    pub fn check_answer(&self) -> Result<&Stream, MediaError> {
        let v = self.video.as_ref().filter(|v| v.width > 0 && v.height > 0).ok_or(MediaError::NoVideo)?;
        if self.duration < 1.0 {
            return Err(MediaError::TooShort(self.duration));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phone_video_stored_sideways_reports_its_displayed_size() {
        let json = br#"{"streams": [{"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
            "avg_frame_rate": "30000/1001", "pix_fmt": "yuv420p", "side_data_list": [{"rotation": -90}]},
            {"codec_type": "audio", "codec_name": "aac", "sample_rate": "48000", "channels": 2}],
            "format": {"duration": "12.5", "format_name": "mov,mp4,m4a,3gp,3g2,mj2", "size": "1000"}}"#;
        let p = Probe::parse(json).unwrap();
        let v = p.check_answer().unwrap();
        assert_eq!((v.width, v.height), (1080, 1920));
        assert!((v.fps - 29.97).abs() < 0.01);
        assert_eq!(p.audio.as_ref().unwrap().sample_rate, 48000);
    }

    #[test]
    fn no_video_track_or_under_a_second_is_refused() {
        let audio_only = br#"{"streams": [{"codec_type": "audio", "codec_name": "aac"}],
            "format": {"duration": "5", "format_name": "mp3"}}"#;
        assert!(matches!(Probe::parse(audio_only).unwrap().check_answer(), Err(MediaError::NoVideo)));
        let cover_art = br#"{"streams": [{"codec_type": "video", "codec_name": "png", "width": 10, "height": 10,
            "disposition": {"attached_pic": 1}}], "format": {"duration": "5"}}"#;
        assert!(matches!(Probe::parse(cover_art).unwrap().check_answer(), Err(MediaError::NoVideo)));
        let short = br#"{"streams": [{"codec_type": "video", "codec_name": "h264", "width": 10, "height": 10}],
            "format": {"duration": "0.4"}}"#;
        assert!(matches!(Probe::parse(short).unwrap().check_answer(), Err(MediaError::TooShort(_))));
        assert!(matches!(Probe::parse(b"not json"), Err(MediaError::NotMedia(_))));
    }
}
