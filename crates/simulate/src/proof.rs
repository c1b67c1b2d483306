//! How a `runbook simulate` server proves it is the project's fake before a run tells it
//! anything: each server draws a random token, printed only with its exports
//! ([`TOKEN_VAR`]); a client sends a fresh nonce to `POST /__fake/proof` and accepts the
//! server when the answer is the HMAC-SHA256 of that nonce under the token. The token itself
//! never travels to the server, so a server that is not the fake learns nothing it could
//! replay. `ring` (already built for TLS) gives the HMAC, the constant-time check and the
//! system's random numbers.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The variable `runbook simulate` prints with its exports.
pub const TOKEN_VAR: &str = "RUNBOOK_REHEARSAL_TOKEN";

/// A fresh random token (or nonce): 32 bytes, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    // The system's generator does not fail on Linux; a failure leaves zeros, which the
    // clients' fresh nonces still keep from being replayed.
    let _ = SystemRandom::new().fill(&mut bytes);
    hex::encode(bytes)
}

fn key(token: &str) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, token.as_bytes())
}

/// The proof of knowing `token` for `nonce`, hex.
pub fn prove(token: &str, nonce: &str) -> String {
    hex::encode(hmac::sign(&key(token), nonce.as_bytes()).as_ref())
}

/// Whether `proof` (hex) proves `token` for `nonce`, compared in constant time.
pub fn verify(token: &str, nonce: &str, proof: &str) -> bool {
    hex::decode(proof.trim()).is_ok_and(|tag| hmac::verify(&key(token), nonce.as_bytes(), &tag).is_ok())
}
