//! WebVTT output: format, readable cues, and properties of the splitter.

use proptest::prelude::*;
use strato_whisper::vtt::{sentences, MAX_CUE_LINES, MAX_LINE_CHARS};
use strato_whisper::{webvtt, webvtt_from_text, Segment};

fn seg(start: f64, end: f64, text: &str) -> Segment {
    Segment { start, end, text: text.to_owned() }
}

/// `(start_ms, end_ms, lines)` of each cue.
fn parse(vtt: &str) -> Vec<(u64, u64, Vec<String>)> {
    let body = vtt.strip_prefix("WEBVTT\n\n").expect("header");
    let ms = |t: &str| {
        let (hms, frac) = t.split_once('.').unwrap();
        let p: Vec<u64> = hms.split(':').map(|x| x.parse().unwrap()).collect();
        assert_eq!(frac.len(), 3);
        ((p[0] * 60 + p[1]) * 60 + p[2]) * 1000 + frac.parse::<u64>().unwrap()
    };
    body.split_terminator("\n\n")
        .map(|cue| {
            let mut lines = cue.lines();
            let (a, b) = lines.next().unwrap().split_once(" --> ").unwrap();
            (ms(a), ms(b), lines.map(str::to_owned).collect())
        })
        .collect()
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

#[test]
fn formats_cues() {
    let vtt = webvtt(&[seg(0.0, 2.5, "Hello there."), seg(3661.0, 3662.25, "An hour <later> & more")]);
    assert_eq!(
        vtt,
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n\
         01:01:01.000 --> 01:01:02.250\nAn hour &lt;later&gt; &amp; more\n\n"
    );
    assert_eq!(webvtt(&[]), "WEBVTT\n\n");
    assert_eq!(webvtt(&[seg(1.0, 2.0, "   ")]), "WEBVTT\n\n");
}

#[test]
fn splits_long_segments_in_proportion() {
    // Wraps to 4 lines (39, 40, 34, 41 characters): two full cues.
    let text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen \
                seventeen eighteen nineteen twenty twenty-one two three four";
    let cues = parse(&webvtt(&[seg(10.0, 20.0, text)]));
    assert_eq!(cues.len(), 2, "{cues:?}");
    assert_eq!(cues[0].0, 10_000);
    assert_eq!(cues[1].1, 20_000);
    assert_eq!(cues[0].1, cues[1].0);
    assert_eq!(cues[0].2, ["one two three four five six seven eight", "nine ten eleven twelve thirteen fourteen"]);
    assert_eq!(cues[1].2.len(), 2);
    let chars = |c: &(u64, u64, Vec<String>)| c.2.iter().map(|l| l.chars().count()).sum::<usize>() as f64;
    let share = (cues[0].1 - cues[0].0) as f64 / 10_000.0;
    assert!((share - chars(&cues[0]) / (chars(&cues[0]) + chars(&cues[1]))).abs() < 0.001);
}

#[test]
fn sentences_split_on_terminators_and_lines() {
    assert_eq!(
        sentences("Hi there! How are you?  I'm fine (really.) Thanks.\nNew line without stop\n\n3.5 is a number."),
        ["Hi there!", "How are you?", "I'm fine (really.)", "Thanks.", "New line without stop", "3.5 is a number."]
    );
}

#[test]
fn text_is_spread_over_the_duration() {
    let cues = parse(&webvtt_from_text("Short one. This second sentence is much longer than the first.", 10.0));
    assert_eq!(cues.len(), 2);
    assert_eq!(cues[0].0, 0);
    assert_eq!(cues[1].1, 10_000);
    assert_eq!(cues[0].1, cues[1].0);
    // 10 of 61 characters.
    assert!((cues[0].1 as i64 - 1639).abs() <= 1, "{cues:?}");
    assert_eq!(webvtt_from_text("  \n ", 5.0), "WEBVTT\n\n");
}

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-zA-Z']{1,12}[,.?!]?",
        1 => "[a-z]{30,60}",
        1 => "[<>&é😀]{1,3}",
    ]
}

fn segments() -> impl Strategy<Value = Vec<(f64, f64, Vec<String>)>> {
    prop::collection::vec((0.0..20.0f64, 0.0..15.0f64, prop::collection::vec(word(), 0..40)), 0..8)
}

proptest! {
    #[test]
    fn cues_are_ordered_short_and_keep_the_text(raw in segments()) {
        // Starts that go back in time included: the splitter must still emit ordered cues.
        let mut t = 0.0;
        let segs: Vec<Segment> = raw
            .iter()
            .map(|(gap, len, words)| {
                t += gap - 3.0;
                let start = t;
                Segment { start, end: start + len, text: words.join(" ") }
            })
            .collect();
        let cues = parse(&webvtt(&segs));
        let mut prev_end = 0;
        for (start, end, lines) in &cues {
            prop_assert!(*start >= prev_end, "cue starts at {} before {}", start, prev_end);
            prop_assert!(end >= start);
            prop_assert!(!lines.is_empty() && lines.len() <= MAX_CUE_LINES);
            for l in lines {
                prop_assert!(unescape(l).chars().count() <= MAX_LINE_CHARS, "line too long: {:?}", l);
                prop_assert!(!l.contains("-->"));
            }
            prev_end = *end;
        }
        let got: String = cues.iter().flat_map(|c| c.2.iter()).map(|l| unescape(l)).collect::<Vec<_>>().join(" ");
        let want = segs.iter().map(|s| s.text.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|s| !s.is_empty()).collect::<Vec<_>>().join(" ");
        // Words longer than a line are cut across lines; compare without the spaces the splitter introduces.
        prop_assert_eq!(got.replace(' ', ""), want.replace(' ', ""));
        prop_assert_eq!(got.split_whitespace().count() >= want.split_whitespace().count(), true);
    }

    #[test]
    fn text_cues_cover_the_duration(words in prop::collection::vec(word(), 1..80), duration in 1.0..600.0f64) {
        let text = words.join(" ");
        let cues = parse(&webvtt_from_text(&text, duration));
        prop_assert!(!cues.is_empty());
        prop_assert_eq!(cues[0].0, 0);
        prop_assert!((cues.last().unwrap().1 as f64 - duration * 1000.0).abs() <= 1.0);
        for pair in cues.windows(2) {
            prop_assert!(pair[0].1 <= pair[1].0);
        }
    }
}
