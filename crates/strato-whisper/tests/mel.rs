//! The mel filter bank and the log-mel front end.

use candle_core::Device;
use strato_whisper::audio::{hz_to_mel, log_mel, mel_filters, mel_to_hz, HOP_LENGTH, SAMPLE_RATE};

/// Nonzero entries of some rows of the 80-bin bank, from librosa's Slaney formula as faster-whisper 1.2.1 computes
/// it in numpy (`FeatureExtractor.get_mel_filters(16000, 400, 80)`, cast to f32), equal to OpenAI's
/// `mel_filters.npz["mel_80"]`.
const REFERENCE: &[(usize, &[(usize, f64)])] = &[
    (0, &[(1, 0.02486259490251541)]),
    (1, &[(1, 0.001990821911022067), (2, 0.022871771827340126)]),
    (20, &[(19, 0.010972199961543083), (20, 0.013890394009649754)]),
    (
        39,
        &[
            (40, 0.001418047584593296),
            (41, 0.011486922390758991),
            (42, 0.010089744813740253),
            (43, 0.00040022286702878773),
        ],
    ),
    (40, &[(42, 0.00541110523045063), (43, 0.014735565520823002), (44, 0.006518189795315266)]),
    (
        60,
        &[
            (90, 0.0014345343224704266),
            (91, 0.0034412192180752754),
            (92, 0.005447903648018837),
            (93, 0.006591092795133591),
            (94, 0.004660011734813452),
            (95, 0.002728930441662669),
            (96, 0.0007978491485118866),
        ],
    ),
    (
        79,
        &[
            (186, 0.000366741674952209),
            (187, 0.0008330700220540166),
            (188, 0.0012993983691558242),
            (189, 0.0017657267162576318),
            (190, 0.0022320549469441175),
            (191, 0.002698383294045925),
            (192, 0.0031647116411477327),
            (193, 0.0031413130927830935),
            (194, 0.002692554146051407),
            (195, 0.0022437951993197203),
            (196, 0.0017950361361727118),
            (197, 0.0013462770730257034),
            (198, 0.0008975180680863559),
            (199, 0.00044875903404317796),
        ],
    ),
];

#[test]
fn slaney_scale() {
    // Linear below 1 kHz (200/3 Hz per mel), logarithmic above, continuous at 1 kHz = 15 mel.
    assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
    assert!((hz_to_mel(200.0) - 3.0).abs() < 1e-12);
    assert!((hz_to_mel(8000.0) - 45.245640471924965).abs() < 1e-9);
    for hz in [0.0, 123.0, 999.0, 1000.0, 2500.0, 7999.0] {
        assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9, "{hz}");
    }
}

#[test]
fn filter_bank_matches_the_slaney_reference() {
    let f = mel_filters(80);
    assert_eq!(f.len(), 80 * 201);
    let total: f64 = f.iter().map(|&v| f64::from(v)).sum();
    assert!((total - 1.9990241527557373).abs() < 1e-6, "sum {total}");
    for (row, entries) in REFERENCE {
        let got = &f[row * 201..(row + 1) * 201];
        for (k, &v) in got.iter().enumerate() {
            let want = entries.iter().find(|(i, _)| *i == k).map_or(0.0, |(_, w)| *w);
            assert!((f64::from(v) - want).abs() <= 1e-8, "row {row} bin {k}: {v} != {want}");
        }
    }
}

#[test]
fn a_tone_lights_its_mel_bin() {
    // 1 kHz is 15 mel; the 80 bins split 0..45.25 mel in 81 steps, so bin 25 (centre 14.0 mel, 0.94 kHz) or
    // 26 (14.52 mel) must hold the peak.
    let pcm: Vec<f32> = (0..SAMPLE_RATE)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / SAMPLE_RATE as f32).sin())
        .collect();
    let mel = log_mel(&pcm, 0, 80, &Device::Cpu).unwrap();
    assert_eq!(mel.len(), (SAMPLE_RATE / HOP_LENGTH) * 80);
    let frame = &mel[50 * 80..51 * 80];
    let peak = (0..80).max_by(|&a, &b| frame[a].total_cmp(&frame[b])).unwrap();
    assert!((25..=26).contains(&peak), "peak at bin {peak}");
    // Normalised as Whisper expects: the maximum maps to (max + 4) / 4, everything within 2 of it.
    let max = mel.iter().copied().fold(f32::MIN, f32::max);
    let min = mel.iter().copied().fold(f32::MAX, f32::min);
    assert!(max - min <= 2.0 + 1e-5);
}

#[test]
fn silence_is_flat_and_padding_counts_frames() {
    let mel = log_mel(&[0.0; 1600], 480_000, 80, &Device::Cpu).unwrap();
    assert_eq!(mel.len(), (1600 + 480_000) / HOP_LENGTH * 80);
    // log10(1e-10) = -10 everywhere: (-10 + 4) / 4.
    assert!(mel.iter().all(|&v| (v + 1.5).abs() < 1e-6));
}
