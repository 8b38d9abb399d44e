//! Secrets the service must read back (a SigV4 access key's secret: verifying a signature needs it), sealed with
//! AES-256-GCM under a key derived from the server's secrets key. The record's id is the associated data, so a
//! sealed secret copied onto another record does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use strato_types::{ErrorCode, StratoError};

/// The format's tag, so a later scheme can be told apart.
const VERSION: &str = "v1:";

/// Seals and opens secrets under one server key.
#[derive(Clone)]
pub(crate) struct SecretBox {
    cipher: Aes256Gcm,
}

impl SecretBox {
    /// From the server's secrets key (at least 32 bytes); the cipher key is derived from it, so the same server
    /// key never serves two purposes unchanged.
    pub fn new(server_key: &[u8]) -> Self {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(server_key).expect("HMAC takes keys of any length");
        mac.update(b"strato sealed secrets v1");
        let key = mac.finalize().into_bytes();
        Self { cipher: Aes256Gcm::new(&key) }
    }

    /// `v1:` and base64 of a random nonce and the ciphertext.
    pub fn seal(&self, id: &str, secret: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: secret.as_bytes(), aad: id.as_bytes() })
            .expect("AES-GCM seals any message shorter than 64 GiB");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        format!("{VERSION}{}", base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// The secret sealed for `id`, or an error saying why it cannot be opened.
    pub fn open(&self, id: &str, sealed: &str) -> Result<String, StratoError> {
        let corrupt = || StratoError::internal(format!("the sealed secret of {id:?} is not in a known format"));
        let bytes = sealed
            .strip_prefix(VERSION)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or_else(corrupt)?;
        let (nonce, ciphertext) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ciphertext, aad: id.as_bytes() })
            .map_err(|_| {
                StratoError::new(
                    ErrorCode::Internal,
                    format!(
                        "the secret of {id:?} was sealed under another secrets key: give every process the same \
                         --secrets-key (or the same <data-dir>/secrets.key)"
                    ),
                )
            })?;
        String::from_utf8(plain).map_err(|_| corrupt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_id() {
        let a = SecretBox::new(&[1u8; 32]);
        let sealed = a.seal("AKIA1", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert!(sealed.starts_with("v1:") && !sealed.contains("wJalr"));
        assert_eq!(a.open("AKIA1", &sealed).unwrap(), "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        assert_ne!(a.seal("AKIA1", "x"), a.seal("AKIA1", "x"), "a fresh nonce every time");
        assert!(a.open("AKIA2", &sealed).is_err(), "bound to its id");
        assert!(SecretBox::new(&[2u8; 32]).open("AKIA1", &sealed).unwrap_err().message.contains("--secrets-key"));
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(a.open("AKIA1", std::str::from_utf8(&tampered).unwrap()).is_err());
        assert!(a.open("AKIA1", "v0:abc").is_err() && a.open("AKIA1", "v1:!!").is_err());
    }
}
