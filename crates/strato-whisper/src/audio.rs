//! Log-mel spectrogram as OpenAI's `whisper/audio.py` computes it.
//!
//! A centred STFT (reflect padding, n_fft 400, hop 160, periodic Hann window) whose last frame is dropped, power
//! spectrum, Slaney mel filters, `log10(max(x, 1e-10))`, clamped to 8 below the maximum of the whole input, then
//! `(x + 4) / 4`. candle's own `pcm_to_mel` skips the reflect padding and clamps differently, so the features
//! would drift from those the model was trained on. The DFT is a matrix product, done in blocks so an hour of
//! audio does not need gigabytes of frames.

use candle_core::{Device, Tensor};

use crate::error::WhisperError;

/// Samples per second Whisper expects.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT window length.
pub const N_FFT: usize = 400;
/// Samples between frames (10 ms).
pub const HOP_LENGTH: usize = 160;
/// Frequency bins of the one-sided spectrum.
const N_FREQS: usize = N_FFT / 2 + 1;
/// Frames transformed per matrix product.
const BLOCK_FRAMES: usize = 3000;

/// Slaney's mel scale (librosa `hz_to_mel(htk=False)`): linear below 1 kHz, logarithmic above.
pub fn hz_to_mel(hz: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if hz >= min_log_hz {
        min_log_mel + (hz / min_log_hz).ln() / logstep
    } else {
        hz / f_sp
    }
}

/// Inverse of [`hz_to_mel`].
pub fn mel_to_hz(mel: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = 6.4f64.ln() / 27.0;
    if mel >= min_log_mel {
        min_log_hz * (logstep * (mel - min_log_mel)).exp()
    } else {
        mel * f_sp
    }
}

/// The mel filter bank `[n_mels][n_fft/2 + 1]`, row-major: librosa's `filters.mel(sr=16000, n_fft=400,
/// n_mels)` with its defaults (Slaney scale and area normalisation), which is what OpenAI ships in
/// `mel_filters.npz`. Computed in f64 and rounded once, as librosa does.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let fft_freqs: Vec<f64> = (0..N_FREQS).map(|k| k as f64 * SAMPLE_RATE as f64 / N_FFT as f64).collect();
    let (lo, hi) = (hz_to_mel(0.0), hz_to_mel(SAMPLE_RATE as f64 / 2.0));
    let mel_f: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut out = vec![0f32; n_mels * N_FREQS];
    for i in 0..n_mels {
        let (f0, f1, f2) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
        let enorm = 2.0 / (f2 - f0);
        for (k, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - f0) / (f1 - f0);
            let upper = (f2 - f) / (f2 - f1);
            out[i * N_FREQS + k] = (lower.min(upper).max(0.0) * enorm) as f32;
        }
    }
    out
}

/// Index into a signal of length `n` reflected at both ends (numpy `pad(mode="reflect")`).
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let mut i = i.rem_euclid(period);
    if i >= n as isize {
        i = period - i;
    }
    i as usize
}

/// Log-mel features of 16 kHz mono `pcm` followed by `pad` zero samples, frame-major: `[frames][n_mels]` with
/// `frames = (pcm.len() + pad) / HOP_LENGTH`. OpenAI's `transcribe` pads with 30 s of zeros, and the clamp uses
/// the maximum over everything, padding included.
pub fn log_mel(pcm: &[f32], pad: usize, n_mels: usize, device: &Device) -> Result<Vec<f32>, WhisperError> {
    let n = pcm.len() + pad;
    let sample = |i: usize| if i < pcm.len() { pcm[i] } else { 0.0 };
    // torch.stft(center=True) yields 1 + n / hop frames; Whisper drops the last.
    let frames = n / HOP_LENGTH;
    let window: Vec<f32> =
        (0..N_FFT).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32).collect();
    // Real and imaginary DFT bases side by side: [N_FFT, 2 * N_FREQS].
    let mut basis = vec![0f32; N_FFT * 2 * N_FREQS];
    for t in 0..N_FFT {
        for k in 0..N_FREQS {
            // Reduce the angle modulo n_fft in integers to keep f64 precision for high bins.
            let phase = 2.0 * std::f64::consts::PI * ((t * k) % N_FFT) as f64 / N_FFT as f64;
            basis[t * 2 * N_FREQS + k] = phase.cos() as f32;
            basis[t * 2 * N_FREQS + N_FREQS + k] = -phase.sin() as f32;
        }
    }
    let basis = Tensor::from_vec(basis, (N_FFT, 2 * N_FREQS), device)?;
    let filters = Tensor::from_vec(mel_filters(n_mels), (n_mels, N_FREQS), device)?.t()?;

    let mut out = Vec::with_capacity(frames * n_mels);
    let half = (N_FFT / 2) as isize;
    for start in (0..frames).step_by(BLOCK_FRAMES) {
        let count = BLOCK_FRAMES.min(frames - start);
        let mut block = vec![0f32; count * N_FFT];
        for f in 0..count {
            let centre = ((start + f) * HOP_LENGTH) as isize;
            let row = &mut block[f * N_FFT..(f + 1) * N_FFT];
            for (t, v) in row.iter_mut().enumerate() {
                let i = centre - half + t as isize;
                let s = if i >= 0 && (i as usize) < n { sample(i as usize) } else { sample(reflect(i, n)) };
                *v = s * window[t];
            }
        }
        let spec = Tensor::from_vec(block, (count, N_FFT), device)?.matmul(&basis)?;
        let re = spec.narrow(1, 0, N_FREQS)?;
        let im = spec.narrow(1, N_FREQS, N_FREQS)?;
        let power = (re.sqr()? + im.sqr()?)?;
        let mel = power.matmul(&filters)?;
        out.extend(mel.flatten_all()?.to_vec1::<f32>()?);
    }

    let mut max = f32::NEG_INFINITY;
    for v in out.iter_mut() {
        *v = v.max(1e-10).log10();
        max = max.max(*v);
    }
    for v in out.iter_mut() {
        *v = (v.max(max - 8.0) + 4.0) / 4.0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_numpy() {
        // numpy.pad([0,1,2,3], 3, mode="reflect") == [3,2,1,0,1,2,3,2,1,0]
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
    }
}
