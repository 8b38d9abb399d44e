//! WebVTT captions from transcript segments, in cues short enough to read.

use crate::Segment;

/// Most characters on one caption line (the common broadcast guideline).
pub const MAX_LINE_CHARS: usize = 42;
/// Most lines in one cue.
pub const MAX_CUE_LINES: usize = 2;

/// `HH:MM:SS.mmm`.
fn timestamp(ms: u64) -> String {
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    format!("{h:02}:{m:02}:{:02}.{:03}", rest / 1000, rest % 1000)
}

fn to_ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

/// Cue text may not contain `<`, `&` or `-->`; escaping `<`, `&` and `>` covers all three.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Greedy word wrap at `MAX_LINE_CHARS`; a word longer than a line is cut into line-sized pieces.
pub fn wrap(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut line_len = 0;
    for word in text.split_whitespace() {
        let chars: Vec<char> = word.chars().collect();
        for piece in chars.chunks(MAX_LINE_CHARS) {
            let piece_len = piece.len();
            if line_len > 0 && line_len + 1 + piece_len > MAX_LINE_CHARS {
                lines.push(std::mem::take(&mut line));
                line_len = 0;
            }
            if line_len > 0 {
                line.push(' ');
                line_len += 1;
            }
            line.extend(piece);
            line_len += piece_len;
        }
    }
    if line_len > 0 {
        lines.push(line);
    }
    lines
}

/// WebVTT of `segments`: each segment's text wrapped into lines of at most [`MAX_LINE_CHARS`] characters and
/// cues of at most [`MAX_CUE_LINES`] lines, the segment's time shared between its cues in proportion to their
/// characters. Cues come out in order and never overlap (a segment starting before the previous one ended is
/// moved to its end); segments without text are skipped.
pub fn webvtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    let mut prev_end = 0u64;
    for seg in segments {
        let lines = wrap(&seg.text);
        if lines.is_empty() {
            continue;
        }
        let start = to_ms(seg.start).max(prev_end);
        let end = to_ms(seg.end).max(start);
        let cues: Vec<&[String]> = lines.chunks(MAX_CUE_LINES).collect();
        let weights: Vec<u64> = cues.iter().map(|c| c.iter().map(|l| l.chars().count() as u64).sum()).collect();
        let total: u64 = weights.iter().sum::<u64>().max(1);
        let span = end - start;
        let mut done = 0u64;
        for (cue, weight) in cues.iter().zip(&weights) {
            let cue_start = start + span * done / total;
            done += weight;
            let cue_end = start + span * done / total;
            out.push_str(&format!("{} --> {}\n", timestamp(cue_start), timestamp(cue_end)));
            for line in cue.iter() {
                out.push_str(&escape(line));
                out.push('\n');
            }
            out.push('\n');
        }
        prev_end = end;
    }
    out
}

/// Splits text into sentences: after `.`, `!`, `?` or `…` (and any closing quotes or brackets) followed by
/// whitespace, and at line breaks.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut ended = false;
    for c in text.chars() {
        if c == '\n' {
            out.push(std::mem::take(&mut current));
            ended = false;
            continue;
        }
        if ended && c.is_whitespace() {
            out.push(std::mem::take(&mut current));
            ended = false;
            continue;
        }
        current.push(c);
        if matches!(c, '.' | '!' | '?' | '…') {
            ended = true;
        } else if !(ended && matches!(c, '"' | '\'' | ')' | ']' | '”' | '’' | '»')) {
            ended = false;
        }
    }
    out.push(current);
    out.into_iter().map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()).collect()
}

/// WebVTT for an edited transcript with no timing of its own: its sentences spread over `duration` seconds in
/// proportion to their length, then cut into readable cues as [`webvtt`] does.
pub fn webvtt_from_text(text: &str, duration: f64) -> String {
    let sentences = sentences(text);
    let total: usize = sentences.iter().map(|s| s.chars().count()).sum::<usize>().max(1);
    let duration = if duration.is_finite() { duration.max(0.0) } else { 0.0 };
    let mut done = 0;
    let segments: Vec<Segment> = sentences
        .into_iter()
        .map(|text| {
            let start = duration * done as f64 / total as f64;
            done += text.chars().count();
            Segment { start, end: duration * done as f64 / total as f64, text }
        })
        .collect();
    webvtt(&segments)
}
