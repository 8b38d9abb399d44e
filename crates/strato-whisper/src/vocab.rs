//! The vocabulary CTranslate2 ships beside `model.bin`, and the special token ids read from it by name.
//!
//! `vocabulary.txt` holds one token per line, `vocabulary.json` a JSON array; tokens are in GPT-2's byte-level
//! spelling (`Ġ` is a space). Decoding maps each character back to its byte, which gives exactly what the
//! `tokenizers` crate gives for these models, without its C dependencies.

use std::collections::HashMap;
use std::path::Path;

use crate::error::WhisperError;

/// Token strings by id and the ids Whisper's decoding needs.
#[derive(Debug)]
pub(crate) struct Vocabulary {
    tokens: Vec<String>,
    ids: HashMap<String, u32>,
    /// `<|endoftext|>`.
    pub eot: u32,
    /// `<|startoftranscript|>`.
    pub sot: u32,
    /// `<|transcribe|>`.
    pub transcribe: u32,
    /// `<|translate|>`.
    pub translate: u32,
    /// `<|startoflm|>`.
    pub sot_lm: u32,
    /// `<|startofprev|>`.
    pub sot_prev: u32,
    /// `<|nospeech|>` (newer vocabularies) or `<|nocaptions|>`.
    pub no_speech: u32,
    /// `<|notimestamps|>`.
    pub no_timestamps: u32,
    /// `<|0.00|>`: every id from here up is a timestamp, 20 ms apart.
    pub timestamp_begin: u32,
}

/// Inverse of GPT-2's `bytes_to_unicode`: the byte each printable stand-in character encodes.
fn unicode_to_byte() -> HashMap<char, u8> {
    let mut map = HashMap::new();
    let printable = |b: u32| (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
    let mut n = 0;
    for b in 0..=255u32 {
        let c = if printable(b) {
            b
        } else {
            n += 1;
            255 + n
        };
        map.insert(char::from_u32(c).unwrap_or('\u{fffd}'), b as u8);
    }
    map
}

impl Vocabulary {
    /// Reads `vocabulary.txt` or `vocabulary.json` from `dir`, keeping the first `vocab_size` entries.
    pub fn read(dir: &Path, vocab_size: usize) -> Result<Self, WhisperError> {
        let txt = dir.join("vocabulary.txt");
        let json = dir.join("vocabulary.json");
        let tokens: Vec<String> = if txt.is_file() {
            let text = std::fs::read_to_string(&txt).map_err(|source| WhisperError::Io { path: txt, source })?;
            // Not `lines()` filtered for empties: the multilingual list has an empty entry (id 50256).
            text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned()).collect()
        } else if json.is_file() {
            let text =
                std::fs::read_to_string(&json).map_err(|source| WhisperError::Io { path: json.clone(), source })?;
            serde_json::from_str(&text).map_err(|e| WhisperError::Vocabulary(format!("{}: {e}", json.display())))?
        } else {
            return Err(WhisperError::Vocabulary(format!(
                "{} has neither vocabulary.txt nor vocabulary.json",
                dir.display()
            )));
        };
        Self::from_tokens(tokens, vocab_size)
    }

    /// Builds the vocabulary from token strings (extra trailing entries are ignored).
    pub fn from_tokens(mut tokens: Vec<String>, vocab_size: usize) -> Result<Self, WhisperError> {
        if tokens.len() < vocab_size {
            return Err(WhisperError::Vocabulary(format!("{} tokens, but the model has {vocab_size}", tokens.len())));
        }
        tokens.truncate(vocab_size);
        let mut ids = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            ids.entry(t.clone()).or_insert(i as u32);
        }
        let id =
            |name: &str| ids.get(name).copied().ok_or_else(|| WhisperError::Vocabulary(format!("no {name} token")));
        let no_speech = id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?;
        Ok(Self {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            transcribe: id("<|transcribe|>")?,
            translate: id("<|translate|>")?,
            sot_lm: id("<|startoflm|>")?,
            sot_prev: id("<|startofprev|>")?,
            no_speech,
            no_timestamps: id("<|notimestamps|>")?,
            timestamp_begin: id("<|0.00|>")?,
            ids,
            tokens,
        })
    }

    /// The id of a token spelled exactly `name`, e.g. `<|fr|>`.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// The token spelled at `id`.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Text of the ordinary tokens among `ids` (special and timestamp tokens are skipped).
    pub fn decode(&self, ids: &[u32]) -> String {
        thread_local! {
            static MAP: HashMap<char, u8> = unicode_to_byte();
        }
        MAP.with(|map| {
            let mut bytes = Vec::new();
            for &id in ids.iter().filter(|&&id| id < self.eot) {
                if let Some(t) = self.token(id) {
                    bytes.extend(t.chars().filter_map(|c| map.get(&c)));
                }
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_round_trip() {
        let map = unicode_to_byte();
        assert_eq!(map.len(), 256);
        assert_eq!(map[&'Ġ'], b' ');
        assert_eq!(map[&'a'], b'a');
        assert_eq!(map[&'Ċ'], b'\n');
    }
}
