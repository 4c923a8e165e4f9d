//! Random values from the operating system's generator: tokens for names
//! and forms, secrets for passwords. Down here so that every layer can use
//! them without reaching into a face.

use crate::settings::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// 24 random bytes, URL-safe base64 (file names, CSRF tokens, job ids).
pub fn token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// 24 random letters and digits (passwords and keys).
pub fn secret() -> Secret {
    use rand::distributions::{Alphanumeric, DistString};
    Secret::new(Alphanumeric.sample_string(&mut rand::thread_rng(), 24))
}
