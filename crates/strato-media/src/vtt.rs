//! WebVTT subtitles: what MentorPal accepts as a valid file, and subtitles rebuilt from an edited transcript.

/// The longest line of a cue, in characters (a common broadcast guideline).
pub const LINE_CHARS: usize = strato_whisper::vtt::MAX_LINE_CHARS;

/// Whether `text` is a WebVTT file MentorPal accepts: it starts with `WEBVTT` and has at least one cue timing line
/// `HH:MM:SS.mmm --> HH:MM:SS.mmm` (hours optional, as WebVTT allows) whose end is not before its start. The error
/// says what is wrong.
pub fn validate(text: &str) -> Result<(), String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first = text.lines().next().unwrap_or_default();
    if !(first == "WEBVTT" || first.starts_with("WEBVTT ") || first.starts_with("WEBVTT\t")) {
        return Err("a WebVTT file must start with the line WEBVTT".into());
    }
    let mut cues = 0;
    for (n, line) in text.lines().enumerate().skip(1) {
        if !line.contains("-->") {
            continue;
        }
        let (a, b) = line.split_once("-->").unwrap_or_default();
        let end = b.split_whitespace().next().unwrap_or_default();
        match (timestamp(a.trim()), timestamp(end)) {
            (Some(s), Some(e)) if e >= s => cues += 1,
            (Some(_), Some(_)) => return Err(format!("line {}: the cue ends before it starts", n + 1)),
            _ => return Err(format!("line {}: a cue timing must be HH:MM:SS.mmm --> HH:MM:SS.mmm", n + 1)),
        }
    }
    if cues == 0 {
        return Err("the file has no cue (a line HH:MM:SS.mmm --> HH:MM:SS.mmm)".into());
    }
    Ok(())
}

/// Seconds of a WebVTT timestamp (`[HH:]MM:SS.mmm`).
pub fn timestamp(s: &str) -> Option<f64> {
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m, s] if h.len() >= 2 => (h.parse::<u64>().ok()?, *m, *s),
        [m, s] => (0, *m, *s),
        _ => return None,
    };
    let (whole, frac) = sec.split_once('.')?;
    let digits = |x: &str, n: usize| x.len() == n && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(m, 2) || !digits(whole, 2) || !digits(frac, 3) {
        return None;
    }
    let (m, whole, frac): (u64, u64, u64) = (m.parse().ok()?, whole.parse().ok()?, frac.parse().ok()?);
    if m > 59 || whole > 59 {
        return None;
    }
    Some((h * 3600 + m * 60 + whole) as f64 + frac as f64 / 1000.0)
}

/// Subtitles for an edited transcript of a video lasting `duration` seconds (MentorPal's `regen_vtt`): its
/// sentences spread over the video in proportion to their length, in readable cues (no model timings exist for
/// edited text).
pub fn from_text(text: &str, duration: f64) -> String {
    strato_whisper::webvtt_from_text(text, duration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mentorpal_valid_and_invalid_files() {
        assert!(validate("WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello.\n").is_ok());
        assert!(validate("WEBVTT - title\n\n00:01.000 --> 00:02.000 align:start\nHi\n").is_ok());
        assert!(validate("\u{feff}WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nx\n").is_ok());
        let no_header = validate("00:00:00.000 --> 00:00:02.500\nHello.\n").unwrap_err();
        assert!(no_header.contains("start with the line WEBVTT"), "{no_header}");
        assert!(validate("WEBVTT\n\nHello, no cue.\n").unwrap_err().contains("no cue"));
        assert!(validate("WEBVTT\n\n0:0:0 --> 1\nx\n").unwrap_err().contains("line 3"));
        assert!(validate("WEBVTT\n\n00:00:05.000 --> 00:00:01.000\nx\n").unwrap_err().contains("ends before"));
        assert!(validate("WEBVTTX\n\n00:00:00.000 --> 00:00:01.000\nx\n").is_err());
        assert!(validate("").is_err());
    }

    proptest! {
        #[test]
        fn rebuilt_subtitles_are_valid_ordered_cover_the_video_and_keep_every_word(
            words in proptest::collection::vec("[a-zA-Z']{1,15}", 1..200),
            duration in 1.0f64..600.0,
        ) {
            let text = words.join(" ");
            let vtt = from_text(&text, duration);
            prop_assert!(validate(&vtt).is_ok(), "{vtt}");
            let mut last_end: f64 = 0.0;
            let mut said = Vec::new();
            for block in vtt.split("\n\n").skip(1).filter(|b| !b.trim().is_empty()) {
                let mut lines = block.lines();
                let (a, b) = lines.next().unwrap().split_once(" --> ").unwrap();
                let (a, b) = (timestamp(a).unwrap(), timestamp(b).unwrap());
                prop_assert!(a >= last_end - 0.002 && b >= a, "cues in order, not overlapping: {vtt}");
                last_end = b;
                let text_lines: Vec<&str> = lines.collect();
                prop_assert!(text_lines.len() <= 2);
                for l in text_lines {
                    prop_assert!(l.chars().count() <= LINE_CHARS || !l.contains(' '), "{l}");
                    said.extend(l.split_whitespace().map(String::from));
                }
            }
            prop_assert!((last_end - duration).abs() < 0.01, "ends with the video: {last_end} {duration}");
            prop_assert_eq!(said, words);
        }
    }
}
