//! Signed queue tokens.
//!
//! A token is `base64url(payload || HMAC-SHA256(secret, payload))` where the payload is
//! a version byte, the user id, the queue sequence, the issue time and the token id.
//! Clients treat it as opaque; the server trusts nothing in it until the MAC checks
//! out, and the MAC comparison takes constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::domain::{QueueSeq, Timestamp, TokenId, UserId};

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const PAYLOAD_LEN: usize = 1 + 16 + 8 + 8 + 16;
const MAC_LEN: usize = 32;
const RAW_LEN: usize = PAYLOAD_LEN + MAC_LEN;
/// The length of every token this version writes (base64url without padding).
pub const TOKEN_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    /// The user it was issued to.
    pub user: UserId,
    /// The place in the queue.
    pub seq: QueueSeq,
    /// When it was issued.
    pub issued_at: Timestamp,
    /// Which issue it is.
    pub token_id: TokenId,
}

/// Why a token was refused. Deliberately coarse: a client learns nothing about
/// which part of a forgery failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token of this format.
    #[error("the queue token is malformed")]
    Malformed,
    /// Well-formed, but not signed with this server's secret, or altered.
    #[error("the queue token's signature does not match")]
    BadSignature,
}

/// Why a signer could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the token secret must be at least {min} bytes, got {0}", min = TokenSigner::MIN_SECRET_LEN)]
pub struct WeakSecret(pub usize);

/// Signs and verifies tokens with a secret that every server instance shares.
#[derive(Clone)]
pub struct TokenSigner {
    mac: HmacSha256,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSigner(<secret>)")
    }
}

impl TokenSigner {
    /// The shortest secret accepted, in bytes.
    pub const MIN_SECRET_LEN: usize = 32;

    /// A signer for `secret`.
    pub fn new(secret: &[u8]) -> Result<Self, WeakSecret> {
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(WeakSecret(secret.len()));
        }
        let mac = HmacSha256::new_from_slice(secret).map_err(|_| WeakSecret(secret.len()))?;
        Ok(TokenSigner { mac })
    }

    /// The token for `claims`. Signing is deterministic: the same claims always give
    /// the same token, so asking again for a place returns the same string.
    pub fn sign(&self, claims: &TokenClaims) -> String {
        let mut raw = [0u8; RAW_LEN];
        raw[0] = VERSION;
        raw[1..17].copy_from_slice(claims.user.as_uuid().as_bytes());
        raw[17..25].copy_from_slice(&claims.seq.get().to_be_bytes());
        raw[25..33].copy_from_slice(&claims.issued_at.as_millis().to_be_bytes());
        raw[33..49].copy_from_slice(claims.token_id.as_uuid().as_bytes());
        let mut mac = self.mac.clone();
        mac.update(&raw[..PAYLOAD_LEN]);
        raw[PAYLOAD_LEN..].copy_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// The claims of a token signed by this secret.
    ///
    /// # Errors
    /// [`TokenError::Malformed`] for anything that is not a token of this format,
    /// [`TokenError::BadSignature`] when the MAC does not match (a forgery or a
    /// token altered in any bit).
    pub fn verify(&self, token: &str) -> Result<TokenClaims, TokenError> {
        if token.len() != TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| TokenError::Malformed)?;
        if raw.len() != RAW_LEN || raw[0] != VERSION {
            return Err(TokenError::Malformed);
        }
        let mut mac = self.mac.clone();
        mac.update(&raw[..PAYLOAD_LEN]);
        mac.verify_slice(&raw[PAYLOAD_LEN..])
            .map_err(|_| TokenError::BadSignature)?;
        // Past the MAC, the payload is ours; a field that still fails to parse means
        // the secret signed something invalid, which `sign` never does.
        let uuid = |r: &[u8]| Uuid::from_slice(r).map_err(|_| TokenError::Malformed);
        let u64_at = |r: &[u8]| u64::from_be_bytes(r.try_into().unwrap_or([0; 8]));
        Ok(TokenClaims {
            user: UserId::from_uuid(uuid(&raw[1..17])?).map_err(|_| TokenError::Malformed)?,
            seq: QueueSeq::new(u64_at(&raw[17..25])).map_err(|_| TokenError::Malformed)?,
            issued_at: Timestamp::from_millis(u64_at(&raw[25..33]) as i64),
            token_id: TokenId::from_uuid(uuid(&raw[33..49])?).map_err(|_| TokenError::Malformed)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn signer(byte: u8) -> TokenSigner {
        TokenSigner::new(&[byte; 32]).unwrap()
    }

    fn claims() -> TokenClaims {
        TokenClaims {
            user: UserId::random(),
            seq: QueueSeq::new(42).unwrap(),
            issued_at: Timestamp::from_millis(1_767_225_600_000),
            token_id: TokenId::random(),
        }
    }

    #[test]
    fn round_trip() {
        let s = signer(7);
        let c = claims();
        let t = s.sign(&c);
        assert_eq!(t.len(), TOKEN_LEN);
        assert_eq!(s.verify(&t), Ok(c));
        assert_eq!(s.sign(&c), t, "signing is deterministic");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(TokenSigner::new(&[1; 31]).unwrap_err(), WeakSecret(31));
    }

    #[test]
    fn another_secret_is_a_forgery() {
        let t = signer(1).sign(&claims());
        assert_eq!(signer(2).verify(&t), Err(TokenError::BadSignature));
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        let s = signer(1);
        let t = s.sign(&claims());
        assert_eq!(s.verify(""), Err(TokenError::Malformed));
        assert_eq!(s.verify(&t[..t.len() - 1]), Err(TokenError::Malformed));
        assert_eq!(s.verify(&format!("{t}A")), Err(TokenError::Malformed));
        assert_eq!(s.verify(&"!".repeat(TOKEN_LEN)), Err(TokenError::Malformed));
    }

    #[test]
    fn debug_hides_the_secret() {
        assert_eq!(format!("{:?}", signer(9)), "TokenSigner(<secret>)");
    }

    proptest! {
        /// Any change of any bit of a token is detected.
        #[test]
        fn every_bit_flip_is_detected(byte in 0usize..RAW_LEN, bit in 0u8..8) {
            let s = signer(3);
            let mut raw = URL_SAFE_NO_PAD.decode(s.sign(&claims())).unwrap();
            raw[byte] ^= 1 << bit;
            let forged = URL_SAFE_NO_PAD.encode(&raw);
            prop_assert!(s.verify(&forged).is_err());
        }
    }
}
