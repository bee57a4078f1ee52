//! Password hashing for sign-in: argon2id with the OWASP parameters
//! (m = 19 MiB, t = 2, p = 1), stored as PHC strings.
//!
//! ```text
//!  login POST ─► PasswordHasher::verify ─► wait for a permit (Semaphore: at most N hashes at once,
//!                                          at most `max_waiting` callers queued, else Busy)
//!                                       ─► spawn_blocking(argon2id) ─► bool
//! ```
//!
//! Each hash holds 19 MiB while it runs, so a flood of sign-ins could exhaust
//! memory and starve the async workers; the permits bound both. An unknown
//! account costs one full hash too ([`PasswordHasher::verify_unknown_account`]),
//! so the response time does not tell which accounts exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher as _, PasswordVerifier, Version};
use ring::rand::{SecureRandom as _, SystemRandom};
use tokio::sync::Semaphore;

/// Longest password accepted, in bytes: long enough for any passphrase, short
/// enough that nobody makes us hash megabytes.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// OWASP Password Storage Cheat Sheet, argon2id: m = 19456 KiB, t = 2, p = 1.
pub const OWASP_MEMORY_KIB: u32 = 19 * 1024;
pub const OWASP_ITERATIONS: u32 = 2;
pub const OWASP_PARALLELISM: u32 = 1;

/// Salt of the hash computed for accounts that do not exist; its result is thrown away.
const UNKNOWN_ACCOUNT_SALT: &[u8] = b"portcullis-no-such-user";

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("too many sign-ins are being checked at once; try again shortly")]
    Busy,
    #[error("stored password hash is not a valid PHC string: {0}")]
    MalformedHash(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords off the async workers, a bounded number at a time.
#[derive(Clone)]
pub struct PasswordHasher {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    waiting: AtomicUsize,
    max_waiting: usize,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", &self.inner.params)
            .field("max_waiting", &self.inner.max_waiting)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    /// OWASP parameters; at most `max_concurrent` hashes run at once (each
    /// holds 19 MiB), and at most 64 per permit wait their turn.
    pub fn new(max_concurrent: usize) -> Self {
        let params = Params::new(OWASP_MEMORY_KIB, OWASP_ITERATIONS, OWASP_PARALLELISM, None)
            .expect("the OWASP argon2 parameters are valid");
        Self::with_params(params, max_concurrent, max_concurrent.max(1) * 64)
    }

    /// Other parameters (cheaper ones in unit tests of callers) and queue bound.
    pub fn with_params(params: Params, max_concurrent: usize, max_waiting: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                params,
                permits: Semaphore::new(max_concurrent.max(1)),
                waiting: AtomicUsize::new(0),
                max_waiting,
            }),
        }
    }

    /// A new PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a random salt.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        check_length(password)?;
        let mut salt = [0u8; 16];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| PasswordError::Hashing("no randomness for a salt".into()))?;
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let argon2 = self.argon2();
        self.run(move || {
            argon2
                .hash_password_with_salt(&password, &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| PasswordError::Hashing(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `phc_hash`. The parameters are those stored
    /// in the hash, so hashes made with older parameters still verify.
    pub async fn verify(&self, password: &str, phc_hash: &str) -> Result<bool, PasswordError> {
        check_length(password)?;
        let parsed = PasswordHash::new(phc_hash).map_err(|e| PasswordError::MalformedHash(e.to_string()))?;
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let argon2 = self.argon2();
        self.run(move || match argon2.verify_password(&password, &parsed) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(e) => Err(PasswordError::Hashing(e.to_string())),
        })
        .await
    }

    /// Spends what a real [`verify`](Self::verify) spends (one argon2id hash
    /// with our parameters, through the same permits), then forgets it.
    pub async fn verify_unknown_account(&self, password: &str) {
        let bounded = &password.as_bytes()[..password.len().min(MAX_PASSWORD_BYTES)];
        let password = zeroize::Zeroizing::new(bounded.to_vec());
        let argon2 = self.argon2();
        let output_len = self.inner.params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
        let outcome = self
            .run(move || {
                let mut out = vec![0u8; output_len];
                argon2
                    .hash_password_into(&password, UNKNOWN_ACCOUNT_SALT, &mut out)
                    .map_err(|e| PasswordError::Hashing(e.to_string()))
            })
            .await;
        if let Err(error) = outcome {
            tracing::debug!(%error, "hash for an unknown account failed");
        }
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.inner.params.clone())
    }

    /// Runs one hash on the blocking pool once a permit is free.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let queued = self.inner.waiting.fetch_add(1, Ordering::AcqRel);
        let queue_slot = DecrementOnDrop(&self.inner.waiting);
        if queued >= self.inner.max_waiting {
            return Err(PasswordError::Busy);
        }
        let _permit = self.inner.permits.acquire().await.map_err(|_| PasswordError::Busy)?;
        drop(queue_slot);
        tokio::task::spawn_blocking(job).await?
    }
}

struct DecrementOnDrop<'a>(&'a AtomicUsize);

impl Drop for DecrementOnDrop<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn check_length(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES { Err(PasswordError::TooLong) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn a_hash_uses_argon2id_with_the_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::new(2);
        let hash = hasher.hash("correct horse battery staple").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse battery staple", &hash).await.unwrap());
        assert!(!hasher.verify("correct horse battery stapl", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn the_same_password_hashes_differently_each_time() {
        let hasher = PasswordHasher::new(2);
        let a = hasher.hash("pw-one-two-three").await.unwrap();
        let b = hasher.hash("pw-one-two-three").await.unwrap();
        assert_ne!(a, b, "salts must differ");
    }

    #[tokio::test]
    async fn a_malformed_stored_hash_is_an_error_not_a_mismatch() {
        let hasher = PasswordHasher::new(1);
        let err = hasher.verify("x", "sha256:abcd").await.unwrap_err();
        assert!(matches!(err, PasswordError::MalformedHash(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_overlong_password_is_refused_before_hashing() {
        let hasher = PasswordHasher::new(1);
        let long = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hasher.hash(&long).await, Err(PasswordError::TooLong)));
    }

    #[tokio::test]
    async fn an_unknown_account_costs_about_as_much_as_a_real_verify() {
        let hasher = PasswordHasher::new(1);
        let hash = hasher.hash("warm-up-password").await.unwrap();
        let mut real = Vec::new();
        let mut unknown = Vec::new();
        for _ in 0..3 {
            let start = Instant::now();
            hasher.verify("wrong-password", &hash).await.unwrap();
            real.push(start.elapsed());
            let start = Instant::now();
            hasher.verify_unknown_account("wrong-password").await;
            unknown.push(start.elapsed());
        }
        real.sort();
        unknown.sort();
        let (real, unknown) = (real[1].as_secs_f64(), unknown[1].as_secs_f64());
        // Both do one full argon2id hash; a shortcut would be orders of magnitude faster.
        assert!(unknown > real * 0.5 && unknown < real * 2.0, "real {real:.4}s, unknown {unknown:.4}s");
    }

    #[tokio::test]
    async fn callers_beyond_the_queue_bound_are_told_busy() {
        let cheap = Params::new(8 * 1024, 1, 1, None).unwrap();
        let hasher = PasswordHasher::with_params(cheap, 1, 2);
        let hash = hasher.hash("pw").await.unwrap();
        let attempts: Vec<_> = (0..12)
            .map(|_| {
                let hasher = hasher.clone();
                let hash = hash.clone();
                tokio::spawn(async move { hasher.verify("pw", &hash).await })
            })
            .collect();
        let mut busy = 0;
        let mut verified = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(true) => verified += 1,
                Err(PasswordError::Busy) => busy += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(verified >= 1, "some callers get through");
        assert!(busy >= 1, "a flood beyond the queue bound is shed, not queued without limit");
        // Once the flood is over, a sign-in works again.
        assert!(hasher.verify("pw", &hash).await.unwrap());
    }
}
