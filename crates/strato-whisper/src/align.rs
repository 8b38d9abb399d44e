//! Segment times corrected from the audio's loudness.
//!
//! Whisper's segment timestamps are coarse: a segment usually starts where the previous one ended, so after a
//! pause its caption would appear seconds before anyone speaks, and two sentences with a pause between them are
//! often one segment. stable-ts' `suppress_silence` corrects the first from loudness; this does the same, and
//! splits a segment at an inner pause when a punctuation mark sits at the matching share of its text. Without
//! word timestamps (cross-attention alignment, not implemented) that share is the only link between text and time,
//! so a split needs both a clear pause and a punctuation mark within [`MAX_SHARE_ERROR`] of it.

use crate::audio::{HOP_LENGTH, SAMPLE_RATE};
use crate::Segment;

/// Frames of sound that must follow each other to count as speech (50 ms).
const MIN_SOUND_FRAMES: usize = 5;
/// Shortest quiet stretch between two sounds that counts as a pause (400 ms).
const MIN_PAUSE_FRAMES: usize = 40;
/// How far before a detected onset a moved start is put, so the first sound is not clipped (s).
const ONSET_MARGIN: f64 = 0.1;
/// How far after the last sound of a split-off part its end is put (s).
const OFFSET_MARGIN: f64 = 0.2;
/// Largest difference between a pause's share of the segment's sound and a punctuation mark's share of its text.
const MAX_SHARE_ERROR: f64 = 0.12;

const FRAME_SECS: f64 = HOP_LENGTH as f64 / SAMPLE_RATE as f64;

/// Which frames are loud: above the quietest tenth of the recording by 30 % of the distance to the loudest
/// twentieth, loudness being a frame's mean normalised log-mel. `None` when the recording has no clear floor
/// (less than 10 dB between the two), where nothing should be moved.
fn loud_frames(mel: &[f32], n_mels: usize) -> Option<Vec<bool>> {
    let loudness: Vec<f32> = mel.chunks_exact(n_mels).map(|f| f.iter().sum::<f32>() / n_mels as f32).collect();
    if loudness.len() < MIN_SOUND_FRAMES {
        return None;
    }
    let mut sorted = loudness.clone();
    sorted.sort_by(f32::total_cmp);
    let floor = sorted[sorted.len() / 10];
    let peak = sorted[sorted.len() * 19 / 20];
    // Normalised log-mel units are 40 dB each.
    if peak - floor < 0.25 {
        return None;
    }
    let threshold = floor + 0.3 * (peak - floor);
    Some(loudness.iter().map(|&l| l > threshold).collect())
}

/// Stretches of sound `[start, end)` in frames `from..to`, pauses shorter than a pause merged into them.
fn sounds(loud: &[bool], from: usize, to: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut f = from;
    while f < to {
        if !loud[f] {
            f += 1;
            continue;
        }
        let start = f;
        while f < to && loud[f] {
            f += 1;
        }
        if f - start < MIN_SOUND_FRAMES {
            continue;
        }
        match runs.last_mut() {
            Some(last) if start - last.1 < MIN_PAUSE_FRAMES => last.1 = f,
            _ => runs.push((start, f)),
        }
    }
    runs
}

/// Byte offsets in `text` after which it may be split (a punctuation mark followed by a space), with the share
/// of the text's characters before each.
fn split_points(text: &str) -> Vec<(usize, f64)> {
    let total = text.chars().count().max(1) as f64;
    let mut out = Vec::new();
    let mut chars = text.char_indices().peekable();
    let mut n = 0;
    while let Some((i, c)) = chars.next() {
        n += 1;
        if matches!(c, '.' | ',' | '!' | '?' | ';' | ':' | '…') && chars.peek().is_some_and(|(_, next)| *next == ' ')
        {
            out.push((i + c.len_utf8(), n as f64 / total));
        }
    }
    out
}

/// Corrects `segments` against the loudness of `mel` (frame-major, `n_mels` per frame, the whole recording).
pub(crate) fn align_to_speech(segments: Vec<Segment>, mel: &[f32], n_mels: usize) -> Vec<Segment> {
    let Some(loud) = loud_frames(mel, n_mels) else {
        return segments;
    };
    let mut out = Vec::with_capacity(segments.len());
    for seg in segments {
        let from = ((seg.start / FRAME_SECS).round() as usize).min(loud.len());
        let to = ((seg.end / FRAME_SECS).round() as usize).min(loud.len());
        let runs = sounds(&loud, from, to);
        let Some(first) = runs.first() else {
            out.push(seg);
            continue;
        };
        let start = seg.start.max(first.0 as f64 * FRAME_SECS - ONSET_MARGIN).min(seg.end);

        // Each pause, by its share of the sound before it, claims the nearest unclaimed later split point.
        let total: usize = runs.iter().map(|r| r.1 - r.0).sum();
        let points = split_points(&seg.text);
        let mut cuts: Vec<(usize, usize)> = Vec::new(); // (run index the next part starts at, byte offset)
        let mut before = 0;
        for i in 1..runs.len() {
            before += runs[i - 1].1 - runs[i - 1].0;
            let share = before as f64 / total as f64;
            let after_last = cuts.last().map_or(0, |c| c.1);
            let best = points
                .iter()
                .filter(|(at, _)| *at > after_last)
                .min_by(|a, b| (a.1 - share).abs().total_cmp(&(b.1 - share).abs()));
            if let Some(&(at, s)) = best {
                if (s - share).abs() <= MAX_SHARE_ERROR {
                    cuts.push((i, at));
                }
            }
        }
        if cuts.is_empty() {
            out.push(Segment { start, ..seg });
            continue;
        }
        let mut part_start = start;
        let mut text_from = 0;
        for (k, &(run, at)) in cuts.iter().enumerate() {
            let next_start = runs[run].0 as f64 * FRAME_SECS - ONSET_MARGIN;
            let end = (runs[run - 1].1 as f64 * FRAME_SECS + OFFSET_MARGIN).min(next_start);
            out.push(Segment { start: part_start, end, text: seg.text[text_from..at].trim().to_owned() });
            part_start = next_start;
            text_from = at;
            if k == cuts.len() - 1 {
                out.push(Segment { start: part_start, end: seg.end, text: seg.text[at..].trim().to_owned() });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frame-major mel with one bin per frame: loud where `pattern` has `#`, each character 10 frames.
    fn mel(pattern: &str) -> Vec<f32> {
        pattern.chars().flat_map(|c| std::iter::repeat_n(if c == '#' { 1.0 } else { -0.5 }, 10)).collect()
    }

    fn seg(start: f64, end: f64, text: &str) -> Segment {
        Segment { start, end, text: text.to_owned() }
    }

    #[test]
    fn starts_move_to_the_first_sound() {
        // 1 s of silence, then sound: a segment timed from 0 starts at 0.9 s.
        let m = mel("__________##########__________");
        let got = align_to_speech(vec![seg(0.0, 2.0, "Hello there")], &m, 1);
        assert_eq!(got.len(), 1);
        assert!((got[0].start - 0.9).abs() < 1e-9, "{got:?}");
        assert_eq!(got[0].end, 2.0);
    }

    #[test]
    fn a_pause_at_a_comma_splits_the_segment() {
        // Sound 0.5-1.5 s, pause, sound 2.5-3.5 s; the comma is at half of the text.
        let m = mel("_____##########__________##########_____");
        let got = align_to_speech(vec![seg(0.0, 4.0, "one two three, four five six.")], &m, 1);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].text, "one two three,");
        assert_eq!(got[1].text, "four five six.");
        assert!((got[0].start - 0.4).abs() < 1e-9 && (got[0].end - 1.7).abs() < 1e-9, "{got:?}");
        assert!((got[1].start - 2.4).abs() < 1e-9 && got[1].end == 4.0, "{got:?}");
    }

    #[test]
    fn a_pause_far_from_any_punctuation_is_not_a_split() {
        let m = mel("_____##________________##################_____");
        let got = align_to_speech(vec![seg(0.0, 4.5, "one two three, four five six.")], &m, 1);
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn flat_audio_is_left_alone() {
        let m = vec![0.2; 400];
        let segs = vec![seg(0.0, 4.0, "a, b")];
        assert_eq!(align_to_speech(segs.clone(), &m, 1), segs);
    }
}
