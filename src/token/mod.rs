//! The pure core of the OpenID provider: signing keys and their rotation, JWS
//! signing and verification, token claims, PKCE and refresh tokens.
//!
//! Nothing here does I/O. Time (`now`) and randomness (a `rand_core::CryptoRng`)
//! are passed in; the operator stores what [`keys`] produces in Secrets and the
//! token service's routes call into [`jwt`], [`claims`], [`pkce`] and
//! [`refresh`].
//!
//! ```text
//!  operator                        Secret per key                token service
//!  ────────                        ──────────────                ─────────────
//!  keys::plan_rotation(…, now) ──► PKCS#8 PEM + KeyMeta ───────► KeySet::new(SigningKey::from_pkcs8_pem(…))
//!  SigningKey::generate(…, rng)                                    signing_key() ─► jwt::sign(claims::…)
//!                                                                  jwks()        ─► jwks_uri
//!                                                                  jwt::verify(token, &keys, Validation)
//!                                                                pkce::verify, refresh::decide ─► store
//! ```

pub mod claims;
pub mod jwt;
pub mod keys;
pub mod password;
pub mod pkce;
pub mod refresh;
pub mod service;
pub mod throttle;
pub mod totp;

mod encoding;
