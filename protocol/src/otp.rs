//! One-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), with the `otpauth://` enrolment URI.
//!
//! Pure functions over a secret and a counter or a time: the node checks codes with them and
//! an authenticator app (or a test) computes them. HMAC comes from `ring` (SHA-1 only as RFC
//! 6238's default, where its collision weakness does not matter: HMAC-SHA-1 stays a PRF).
//! Codes are compared in constant time.

use std::fmt;

use ring::hmac;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// The TOTP time step (RFC 6238's default; every authenticator app assumes it).
pub const TOTP_PERIOD_SECS: u64 = 30;

/// Steps accepted either side of the current one (clock drift, typing time).
pub const TOTP_SKEW_STEPS: u64 = 1;

/// Bytes of a new TOTP secret: 160 bits, RFC 4226's recommended length for SHA-1.
pub const TOTP_SECRET_BYTES: usize = 20;

/// The HMAC of a TOTP factor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Algorithm {
    /// HMAC-SHA-1 (the default every app supports).
    #[default]
    Sha1,
    /// HMAC-SHA-256.
    Sha256,
    /// HMAC-SHA-512.
    Sha512,
}

impl Algorithm {
    fn ring(self) -> hmac::Algorithm {
        match self {
            Algorithm::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Algorithm::Sha256 => hmac::HMAC_SHA256,
            Algorithm::Sha512 => hmac::HMAC_SHA512,
        }
    }
    /// The name used in `otpauth://` URIs.
    pub fn uri_name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }
}

/// Why a code could not be computed or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpError {
    /// Digits other than 6, 7 or 8.
    #[error("digits must be 6, 7 or 8")]
    Digits,
    /// The base32 secret did not decode.
    #[error("invalid base32 secret")]
    Base32,
}

/// A shared HOTP/TOTP secret: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpSecret(Vec<u8>);

impl OtpSecret {
    /// Wraps raw secret bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    /// Decodes an (upper- or lower-case, padded or not) base32 secret, as shown to users.
    pub fn from_base32(s: &str) -> Result<Self, OtpError> {
        let clean: String =
            s.chars().filter(|c| !c.is_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
        data_encoding::BASE32_NOPAD.decode(clean.as_bytes()).map(Self).map_err(|_| OtpError::Base32)
    }
    /// Base32 without padding (RFC 4648), the form of the `secret` URI parameter.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }
    /// The raw bytes (for encryption at rest).
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for OtpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpSecret(***)")
    }
}

impl Drop for OtpSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// HOTP (RFC 4226 section 5.3): dynamic truncation of HMAC(secret, counter), `digits` long.
pub fn hotp(secret: &OtpSecret, counter: u64, algorithm: Algorithm, digits: u32) -> Result<String, OtpError> {
    if !(6..=8).contains(&digits) {
        return Err(OtpError::Digits);
    }
    let key = hmac::Key::new(algorithm.ring(), &secret.0);
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let mac = tag.as_ref();
    // The last nibble picks the offset; a SHA-1 tag is 20 bytes, so offset + 3 <= 18.
    let offset = usize::from(mac[mac.len() - 1] & 0x0f);
    let bin = u32::from_be_bytes([mac[offset] & 0x7f, mac[offset + 1], mac[offset + 2], mac[offset + 3]]);
    let code = bin % 10u32.pow(digits);
    Ok(format!("{code:0width$}", width = digits as usize))
}

/// The TOTP time step of `unix_secs` (RFC 6238: T = floor((now - T0) / X), T0 = 0).
pub fn step_of(unix_secs: u64) -> u64 {
    unix_secs / TOTP_PERIOD_SECS
}

/// TOTP (RFC 6238) at `unix_secs`.
pub fn totp(
    secret: &OtpSecret,
    unix_secs: u64,
    algorithm: Algorithm,
    digits: u32,
) -> Result<String, OtpError> {
    hotp(secret, step_of(unix_secs), algorithm, digits)
}

/// Finds the step whose code is `code` within [`TOTP_SKEW_STEPS`] of the step of `unix_secs`,
/// checking every candidate in constant time. The caller must still refuse a step it has
/// already accepted (each code once).
pub fn totp_match(
    secret: &OtpSecret,
    code: &str,
    unix_secs: u64,
    algorithm: Algorithm,
    digits: u32,
) -> Result<Option<u64>, OtpError> {
    let now = step_of(unix_secs);
    let mut found = None;
    for step in now.saturating_sub(TOTP_SKEW_STEPS)..=now + TOTP_SKEW_STEPS {
        let expected = hotp(secret, step, algorithm, digits)?;
        let same: bool = expected.as_bytes().ct_eq(code.as_bytes()).into();
        if same && found.is_none() {
            found = Some(step);
        }
    }
    Ok(found)
}

fn uri_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The enrolment URI (Key Uri Format):
/// `otpauth://totp/ISSUER:ACCOUNT?secret=BASE32&issuer=ISSUER&algorithm=SHA1&digits=6&period=30`.
pub fn otpauth_uri(
    issuer: &str,
    account: &str,
    secret: &OtpSecret,
    algorithm: Algorithm,
    digits: u32,
) -> String {
    let issuer = uri_escape(issuer);
    format!(
        "otpauth://totp/{issuer}:{}?secret={}&issuer={issuer}&algorithm={}&digits={digits}&period={TOTP_PERIOD_SECS}",
        uri_escape(account),
        secret.to_base32(),
        algorithm.uri_name(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `shared/vectors/rfc/otp.json`, copied: RFC 6238 Appendix B and RFC 4226 Appendix D.
    const VECTORS: &str = include_str!("../tests/vectors/rfc/otp.json");

    fn vectors() -> serde_json::Value {
        serde_json::from_str(VECTORS).unwrap()
    }

    #[test]
    fn rfc4226_appendix_d() {
        let v = vectors();
        let seed = OtpSecret::new(v["seeds_ascii"]["sha1"].as_str().unwrap().as_bytes().to_vec());
        let expected = v["hotp_sha1_6_digits"].as_array().unwrap();
        assert_eq!(expected.len(), 10);
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(hotp(&seed, counter as u64, Algorithm::Sha1, 6).unwrap(), code.as_str().unwrap());
        }
    }

    #[test]
    fn rfc6238_appendix_b() {
        let v = vectors();
        let algs = [("sha1", Algorithm::Sha1), ("sha256", Algorithm::Sha256), ("sha512", Algorithm::Sha512)];
        let rows = v["totp"].as_array().unwrap();
        assert_eq!(rows.len(), 6);
        for (name, alg) in algs {
            let seed = OtpSecret::new(v["seeds_ascii"][name].as_str().unwrap().as_bytes().to_vec());
            // The base32 form of the seed decodes to the same bytes.
            let b32 = OtpSecret::from_base32(v["seeds_base32"][name].as_str().unwrap()).unwrap();
            assert_eq!(b32, seed);
            for row in rows {
                let t = row["time"].as_u64().unwrap();
                let counter = u64::from_str_radix(row["counter_hex"].as_str().unwrap(), 16).unwrap();
                assert_eq!(step_of(t), counter);
                assert_eq!(totp(&seed, t, alg, 8).unwrap(), row[name].as_str().unwrap(), "{name} at {t}");
                // Six digits are the last six of the eight.
                assert_eq!(totp(&seed, t, alg, 6).unwrap(), row[name].as_str().unwrap()[2..]);
            }
        }
    }

    #[test]
    fn match_accepts_one_step_either_side_only() {
        let s = OtpSecret::new(b"12345678901234567890".to_vec());
        let t = 1_111_111_111;
        let now = step_of(t);
        for d in [-1i64, 0, 1] {
            let step = (now as i64 + d) as u64;
            let code = hotp(&s, step, Algorithm::Sha1, 6).unwrap();
            assert_eq!(totp_match(&s, &code, t, Algorithm::Sha1, 6).unwrap(), Some(step));
        }
        for d in [-2i64, 2] {
            let code = hotp(&s, (now as i64 + d) as u64, Algorithm::Sha1, 6).unwrap();
            assert_eq!(totp_match(&s, &code, t, Algorithm::Sha1, 6).unwrap(), None);
        }
        assert_eq!(totp_match(&s, "12345", t, Algorithm::Sha1, 6).unwrap(), None);
        assert_eq!(hotp(&s, 0, Algorithm::Sha1, 5), Err(OtpError::Digits));
    }

    #[test]
    fn uri_and_debug() {
        let s = OtpSecret::new(b"12345678901234567890".to_vec());
        assert_eq!(
            otpauth_uri("Hush", "alice@acme", &s, Algorithm::Sha1, 6),
            "otpauth://totp/Hush:alice%40acme?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Hush&algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(format!("{s:?}"), "OtpSecret(***)");
        assert_eq!(OtpSecret::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap(), s);
        assert!(OtpSecret::from_base32("not base32!").is_err());
    }
}
