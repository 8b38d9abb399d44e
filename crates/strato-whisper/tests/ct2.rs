//! The CTranslate2 `model.bin` reader, on small synthetic models written here, and the whole pipeline on one.

use std::path::Path;

use candle_core::Device;
use strato_whisper::ct2::{Ct2Dtype, Ct2Model};
use strato_whisper::{Ct2Error, TranscribeOptions, Whisper, WhisperError};

/// A `model.bin` under construction: variables in file order, then aliases.
#[derive(Default)]
struct Bin {
    vars: Vec<(String, Vec<usize>, Ct2Dtype, Vec<u8>)>,
    aliases: Vec<(String, String)>,
    spec: String,
}

fn string(out: &mut Vec<u8>, s: &str) {
    out.extend(((s.len() + 1) as u16).to_le_bytes());
    out.extend(s.as_bytes());
    out.push(0);
}

/// Deterministic values in [-scale, scale).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((x >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

impl Bin {
    fn new() -> Self {
        Self { spec: "WhisperSpec".into(), ..Self::default() }
    }

    fn f32(&mut self, name: &str, shape: &[usize], data: &[f32]) {
        let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.vars.push((name.into(), shape.to_vec(), Ct2Dtype::F32, bytes));
    }

    fn f16(&mut self, name: &str, shape: &[usize], data: &[f32]) {
        let bytes = data.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
        self.vars.push((name.into(), shape.to_vec(), Ct2Dtype::F16, bytes));
    }

    fn random(&mut self, name: &str, shape: &[usize]) {
        let n = shape.iter().product();
        let fan_in = *shape.last().unwrap_or(&1) as f32;
        self.f16(name, shape, &values(n, self.vars.len() as u64, 1.0 / fan_in.sqrt()));
    }

    fn int(&mut self, name: &str, dtype: Ct2Dtype, v: i64) {
        let bytes = match dtype {
            Ct2Dtype::I8 => vec![v as i8 as u8],
            Ct2Dtype::I16 => (v as i16).to_le_bytes().to_vec(),
            _ => (v as i32).to_le_bytes().to_vec(),
        };
        self.vars.push((name.into(), vec![], dtype, bytes));
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(6u32.to_le_bytes());
        string(&mut out, &self.spec);
        out.extend(3u32.to_le_bytes());
        out.extend((self.vars.len() as u32).to_le_bytes());
        let mut vars: Vec<_> = self.vars.iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, shape, dtype, data) in vars {
            string(&mut out, name);
            out.push(shape.len() as u8);
            for d in shape {
                out.extend((*d as u32).to_le_bytes());
            }
            out.push(dtype.id());
            out.extend((data.len() as u32).to_le_bytes());
            out.extend(data);
        }
        out.extend((self.aliases.len() as u32).to_le_bytes());
        for (a, t) in &self.aliases {
            string(&mut out, a);
            string(&mut out, t);
        }
        out
    }
}

const D: usize = 8;
const VOCAB: usize = 51864;

/// A complete WhisperSpec with tiny width (8) and one layer per stack, Whisper's real context sizes and an
/// English-only vocabulary's size; fused biases have zero key parts.
fn whisper_bin() -> Bin {
    let mut b = Bin::new();
    b.int("encoder/num_heads", Ct2Dtype::I16, 2);
    b.int("decoder/num_heads", Ct2Dtype::I16, 2);
    b.int("decoder/activation", Ct2Dtype::I8, 3);
    b.random("encoder/conv1/weight", &[D, 80, 3]);
    b.random("encoder/conv1/bias", &[D]);
    b.random("encoder/conv2/weight", &[D, D, 3]);
    b.random("encoder/conv2/bias", &[D]);
    b.random("encoder/position_encodings/encodings", &[1500, D]);
    b.random("decoder/position_encodings/encodings", &[448, D]);
    b.random("decoder/embeddings/weight", &[VOCAB, D]);
    for side in ["encoder", "decoder"] {
        b.f32(&format!("{side}/layer_norm/gamma"), &[D], &[1.0; D]);
        b.f32(&format!("{side}/layer_norm/beta"), &[D], &[0.0; D]);
        let l = format!("{side}/layer_0");
        let fused = |b: &mut Bin, name: &str, parts: usize, key_at: usize| {
            b.random(&format!("{name}/weight"), &[parts * D, D]);
            let mut bias = values(parts * D, 99, 0.1);
            bias[key_at * D..(key_at + 1) * D].fill(0.0);
            b.f32(&format!("{name}/bias"), &[parts * D], &bias);
        };
        fused(&mut b, &format!("{l}/self_attention/linear_0"), 3, 1);
        let plain = |b: &mut Bin, name: &str, out: usize, inp: usize| {
            b.random(&format!("{name}/weight"), &[out, inp]);
            b.random(&format!("{name}/bias"), &[out]);
        };
        plain(&mut b, &format!("{l}/self_attention/linear_1"), D, D);
        plain(&mut b, &format!("{l}/ffn/linear_0"), 4 * D, D);
        plain(&mut b, &format!("{l}/ffn/linear_1"), D, 4 * D);
        let mut norms = vec!["self_attention", "ffn"];
        if side == "decoder" {
            plain(&mut b, &format!("{l}/attention/linear_0"), D, D);
            fused(&mut b, &format!("{l}/attention/linear_1"), 2, 0);
            plain(&mut b, &format!("{l}/attention/linear_2"), D, D);
            norms.push("attention");
        }
        for n in norms {
            b.f32(&format!("{l}/{n}/layer_norm/gamma"), &[D], &[1.0; D]);
            b.f32(&format!("{l}/{n}/layer_norm/beta"), &[D], &[0.0; D]);
        }
    }
    b.aliases.push(("decoder/projection/weight".into(), "decoder/embeddings/weight".into()));
    b
}

fn parse(b: &Bin) -> Result<Ct2Model, Ct2Error> {
    Ct2Model::parse(b.bytes())
}

#[test]
fn reads_the_config_from_shapes() {
    let m = parse(&whisper_bin()).unwrap();
    assert_eq!(m.spec, "WhisperSpec");
    assert_eq!(m.revision, 3);
    assert_eq!(m.aliases, [("decoder/projection/weight".to_owned(), "decoder/embeddings/weight".to_owned())]);
    let c = m.config().unwrap();
    assert_eq!((c.n_mels, c.n_audio_ctx, c.d_model, c.encoder_heads, c.encoder_layers), (80, 1500, D, 2, 1));
    assert_eq!((c.vocab_size, c.n_text_ctx, c.decoder_heads, c.decoder_layers), (VOCAB, 448, 2, 1));
    assert_eq!(m.scalar("decoder/activation").unwrap(), 3);
}

#[test]
fn renames_and_splits_fused_projections() {
    let b = whisper_bin();
    let m = parse(&b).unwrap();
    let t = m.hf_tensors(&Device::Cpu).unwrap();
    let get = |n: &str| t.get(n).unwrap_or_else(|| panic!("no {n}")).flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let fused = m.tensor("encoder/layer_0/self_attention/linear_0/weight", &Device::Cpu).unwrap();
    let fused = fused.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let p = "model.encoder.layers.0.self_attn";
    assert_eq!(get(&format!("{p}.q_proj.weight")), fused[..D * D]);
    assert_eq!(get(&format!("{p}.k_proj.weight")), fused[D * D..2 * D * D]);
    assert_eq!(get(&format!("{p}.v_proj.weight")), fused[2 * D * D..]);
    assert!(t.contains_key(&format!("{p}.q_proj.bias")) && t.contains_key(&format!("{p}.v_proj.bias")));
    assert!(!t.contains_key(&format!("{p}.k_proj.bias")), "Whisper keys have no bias");
    let kv = m.tensor("decoder/layer_0/attention/linear_1/bias", &Device::Cpu).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(get("model.decoder.layers.0.encoder_attn.v_proj.bias"), kv[D..]);
    assert!(!t.contains_key("model.decoder.layers.0.encoder_attn.k_proj.bias"));
    assert_eq!(get("model.encoder.layer_norm.weight"), [1.0; D]);
    assert_eq!(t["model.decoder.embed_tokens.weight"].dims(), [VOCAB, D]);
    assert_eq!(t["model.encoder.embed_positions.weight"].dims(), [1500, D]);
    // Per stack a position table and a norm (3), two convs (4), the embedding, an encoder layer (15) and a
    // decoder layer (24: cross-attention adds 9).
    assert_eq!(t.len(), 6 + 4 + 1 + 15 + 24, "{:?}", t.keys().collect::<Vec<_>>());
}

#[test]
fn widens_f16_and_dequantizes_int8() {
    let mut b = Bin::new();
    b.f16("a/weight", &[2], &[0.5, -1.25]);
    // CTranslate2 int8: q = round(w * scale) with scale = 127 / max|row|, so w = q / scale.
    b.vars.push(("q/weight".into(), vec![2, 2], Ct2Dtype::I8, vec![127u8, (-64i8) as u8, 10, (-127i8) as u8]));
    b.f32("q/weight_scale", &[2], &[127.0, 12.7]);
    b.vars.push(("lonely/weight".into(), vec![1], Ct2Dtype::I8, vec![1]));
    let m = parse(&b).unwrap();
    assert_eq!(m.tensor("a/weight", &Device::Cpu).unwrap().to_vec1::<f32>().unwrap(), [0.5, -1.25]);
    let q = m.tensor("q/weight", &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
    let want = [[1.0, -64.0 / 127.0], [10.0 / 12.7, -127.0 / 12.7]];
    for (r, w) in q.iter().zip(want) {
        for (a, b) in r.iter().zip(w) {
            assert!((a - b).abs() < 1e-6, "{q:?}");
        }
    }
    let err = m.tensor("lonely/weight", &Device::Cpu).unwrap_err();
    assert!(matches!(err, WhisperError::ModelBin(Ct2Error::MissingScale(ref n)) if n == "lonely/weight"), "{err}");
}

#[test]
fn refuses_broken_files_with_the_reason() {
    let good = whisper_bin().bytes();
    // Cut inside the data of the first variable (sorted: decoder/activation, then decoder/embeddings/weight).
    let err = Ct2Model::parse(good[..200].to_vec()).unwrap_err();
    assert_eq!(err.to_string(), "truncated in variable decoder/embeddings/weight");
    assert_eq!(WhisperError::from(err).to_string(), "model.bin: truncated in variable decoder/embeddings/weight");
    let err = Ct2Model::parse(good[..good.len() - 3].to_vec()).unwrap_err();
    assert!(err.to_string().starts_with("truncated in alias"), "{err}");
    let mut long = good.clone();
    long.push(0);
    assert!(matches!(Ct2Model::parse(long), Err(Ct2Error::Trailing(1))));
    assert!(matches!(Ct2Model::parse(vec![1, 0, 0, 0]), Err(Ct2Error::Version(1))));

    let mut other = Bin::new();
    other.spec = "TransformerSpec".into();
    assert_eq!(
        parse(&other).unwrap_err().to_string(),
        "spec \"TransformerSpec\" is not a Whisper model (expected WhisperSpec)"
    );

    let mut bad = Bin::new();
    bad.vars.push(("x".into(), vec![3], Ct2Dtype::F32, vec![0; 8]));
    assert_eq!(parse(&bad).unwrap_err().to_string(), "variable x: 8 bytes for shape [3] of float32");
    let mut bytes = Bin::new();
    bytes.vars.push(("x".into(), vec![1], Ct2Dtype::F32, vec![0; 4]));
    let mut raw = bytes.bytes();
    // The dtype byte sits before the u32 byte count and the 4 data bytes, then the alias count.
    let at = raw.len() - 4 - 4 - 4 - 1;
    raw[at] = 9;
    assert_eq!(Ct2Model::parse(raw).unwrap_err().to_string(), "variable x: unsupported dtype id 9");

    let mut keyed = whisper_bin();
    let (_, _, _, data) =
        keyed.vars.iter_mut().find(|v| v.0 == "encoder/layer_0/self_attention/linear_0/bias").unwrap();
    data[D * 4..D * 4 + 4].copy_from_slice(&1.0f32.to_le_bytes());
    let err = parse(&keyed).unwrap().hf_tensors(&Device::Cpu).unwrap_err();
    assert!(err.to_string().contains("key part of the fused bias is not zero"), "{err}");

    let mut missing = whisper_bin();
    missing.vars.retain(|v| v.0 != "decoder/layer_0/ffn/linear_1/bias");
    let err = parse(&missing).unwrap().hf_tensors(&Device::Cpu).unwrap_err();
    assert_eq!(err.to_string(), "model.bin: missing variable decoder/layer_0/ffn/linear_1/bias");
}

/// Writes the synthetic model with an English-only vocabulary and CTranslate2's config.json into `dir`.
fn write_model_dir(dir: &Path) {
    std::fs::write(dir.join("model.bin"), whisper_bin().bytes()).unwrap();
    let mut vocab: Vec<String> = (0..50256).map(|i| format!("t{i}")).collect();
    vocab[220] = "Ġ".into();
    vocab.extend(["<|endoftext|>", "<|startoftranscript|>"].map(String::from));
    vocab.extend((0..99).map(|i| format!("<|l{i}|>")));
    vocab.extend(
        ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]
            .map(String::from),
    );
    vocab.extend((0..=1500).map(|i| format!("<|{:.2}|>", i as f64 * 0.02)));
    assert_eq!(vocab.len(), VOCAB);
    std::fs::write(dir.join("vocabulary.txt"), vocab.join("\n") + "\n").unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"suppress_ids": [1, 2], "suppress_ids_begin": [220, 50256], "lang_ids": []}"#,
    )
    .unwrap();
}

#[test]
fn a_synthetic_model_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    write_model_dir(dir.path());
    let whisper = Whisper::load(dir.path()).unwrap();
    assert!(!whisper.is_multilingual());
    let pcm: Vec<f32> = values(16_000 * 35, 7, 0.1);
    let opts = TranscribeOptions { no_speech_threshold: None, ..TranscribeOptions::default() };
    let mut seen = Vec::new();
    let t = whisper
        .transcribe(&pcm, &opts, &mut |f| {
            seen.push(f);
            true
        })
        .unwrap();
    assert_eq!(t.language, "en");
    assert!((t.duration - 35.0).abs() < 1e-9);
    assert!(!seen.is_empty() && seen.windows(2).all(|w| w[0] <= w[1]) && *seen.last().unwrap() == 1.0, "{seen:?}");
    let mut prev = 0.0;
    for s in &t.segments {
        assert!(s.start >= prev - 1e-9 && s.end >= s.start && s.end <= 35.0 + 1e-9, "{:?}", t.segments);
        prev = s.start;
    }

    let err = whisper.transcribe(&pcm, &opts, &mut |_| false).unwrap_err();
    assert!(matches!(err, WhisperError::Cancelled));
    let fr = TranscribeOptions { language: Some("fr".into()), ..TranscribeOptions::default() };
    let err = whisper.transcribe(&pcm, &fr, &mut |_| true).unwrap_err();
    assert_eq!(err.to_string(), "language \"fr\" is not supported by this model (this model is English-only)");
    assert!(whisper.transcribe(&[], &opts, &mut |_| true).unwrap().segments.is_empty());
}

#[test]
fn load_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let err = Whisper::load(dir.path()).unwrap_err();
    assert!(err.to_string().starts_with("reading ") && err.to_string().contains("model.bin"), "{err}");
    write_model_dir(dir.path());
    std::fs::remove_file(dir.path().join("vocabulary.txt")).unwrap();
    let err = Whisper::load(dir.path()).unwrap_err();
    assert!(err.to_string().contains("neither vocabulary.txt nor vocabulary.json"), "{err}");
}
