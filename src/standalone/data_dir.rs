//! The data directory: everything standalone mode keeps between runs.
//!
//! ```text
//!  DATA/portcullis.db                      the store (SQLite, WAL), signing keys sealed in it
//!  DATA/login.key                          32 random bytes: CSRF, ticket and TOTP-sealing keys
//!  DATA/key-encryption.key                 32 random bytes, base64: seals the private signing keys
//!                                          in the store (the operator's key-encryption key)
//!  DATA/secrets/{namespace}/{secret}/{key} generated secrets, named as the operator
//!                                          would name their Secrets (`ci-deployer-client-secret`)
//!  DATA/keys/{organization}/…              signing keys of an earlier version (read once, into the store)
//! ```
//!
//! Files holding secrets are created owner-only (0600, directories 0700) and
//! never rewritten once made: a restart serves the same keys and tokens. The
//! store is created 0600 before SQLite opens it (its `-wal` and `-shm` files
//! take the database's mode); a store file left readable by others is made
//! owner-only again at open. A data directory that group or others may enter
//! is refused: whoever can read it can read every secret in it.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use k8s_openapi::ByteString;
use ring::rand::{SecureRandom as _, SystemRandom};

use crate::sealing::{KeyEncryptionKey, KeyRing};
use crate::secret::SecretString;

/// Length of generated secrets (client secrets, SCIM tokens), in random bytes.
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the system random generator failed")]
    Random,
    #[error("{0:?} cannot name a file in the data directory")]
    BadName(String),
    #[error(
        "{path} is open to other users (mode {mode:04o}), and it holds the store, signing keys and \
         secrets: run `chmod 700 {path}` or choose another --data directory"
    )]
    OpenToOthers { path: PathBuf, mode: u32 },
}

/// Name of the store's file in the data directory.
const DATABASE_FILE: &str = "portcullis.db";
/// Mode bits that give group or others any access.
const GROUP_OR_OTHERS: u32 = 0o077;

/// The data directory of one standalone server.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

/// A secret value, and whether this run made it.
pub struct Generated {
    pub value: String,
    pub created: bool,
    pub path: PathBuf,
}

impl DataDir {
    /// Creates the directory (owner-only) if it does not exist, refuses one
    /// that group or others may access, and makes the store's files
    /// owner-only (creating the database file, empty, if it is missing).
    pub fn open(root: &Path) -> Result<Self, DataDirError> {
        create_private_dir(root)?;
        let io = |source| DataDirError::Io { path: root.to_owned(), source };
        let mode = std::fs::metadata(root).map_err(io)?.permissions().mode();
        if mode & GROUP_OR_OTHERS != 0 {
            return Err(DataDirError::OpenToOthers { path: root.to_owned(), mode: mode & 0o7777 });
        }
        let dir = Self { root: root.to_owned() };
        dir.make_store_private()?;
        Ok(dir)
    }

    /// Creates `portcullis.db` owner-only if missing, so that SQLite (which
    /// would create it 0644 under the usual umask) and its `-wal` and `-shm`
    /// files never start readable by others; tightens the modes of any of
    /// them found open to others.
    fn make_store_private(&self) -> Result<(), DataDirError> {
        let database = self.root.join(DATABASE_FILE);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&database)
            .map_err(|source| DataDirError::Io { path: database.clone(), source })?;
        for suffix in ["", "-wal", "-shm"] {
            let path = self.root.join(format!("{DATABASE_FILE}{suffix}"));
            let mode = match std::fs::metadata(&path) {
                Ok(metadata) => metadata.permissions().mode(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(DataDirError::Io { path, source }),
            };
            if mode & GROUP_OR_OTHERS != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:04o}", mode & 0o7777), "the store's file was open to other users; made it owner-only (0600)");
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|source| DataDirError::Io { path, source })?;
            }
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store's URL: a SQLite file in the directory, created if missing.
    pub fn database_url(&self) -> String {
        format!("sqlite://{}?mode=rwc", self.root.join(DATABASE_FILE).display())
    }

    /// Where an earlier version kept the signing keys of every organization
    /// (a token service `--keys-dir`); only read, to take them into the store.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The key-encryption key that seals signing keys in the store, made on
    /// first use. Losing it loses the keys (new ones are then generated only
    /// if the store is emptied too: the operator never overwrites what it
    /// cannot open).
    pub fn key_ring(&self) -> Result<KeyRing, DataDirError> {
        let path = self.root.join("key-encryption.key");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = KeyEncryptionKey::generate_text().map_err(|_| DataDirError::Random)?;
                write_private(&path, text.as_bytes())?;
                text.to_string()
            }
            Err(source) => return Err(DataDirError::Io { path, source }),
        };
        let key = KeyEncryptionKey::from_text(&text)
            .map_err(|e| DataDirError::Io { path, source: std::io::Error::other(e.to_string()) })?;
        Ok(KeyRing::from(key))
    }

    /// The login secret, made on first use.
    pub fn login_secret(&self) -> Result<Vec<u8>, DataDirError> {
        let path = self.root.join("login.key");
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DataDirError::Io { path, source }),
        }
        let mut bytes = vec![0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| DataDirError::Random)?;
        write_private(&path, &bytes)?;
        Ok(bytes)
    }

    /// The secret `key` of the Secret `namespace/name` the operator would
    /// generate; made (random, 256 bits) on first use.
    pub fn generated_secret(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Generated, DataDirError> {
        for part in [namespace, name, key] {
            if !safe_name(part) {
                return Err(DataDirError::BadName(part.to_owned()));
            }
        }
        let dir = self.root.join("secrets").join(namespace).join(name);
        let path = dir.join(key);
        match std::fs::read_to_string(&path) {
            Ok(value) if !value.trim().is_empty() => {
                return Ok(Generated { value: value.trim().to_owned(), created: false, path });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DataDirError::Io { path, source }),
        }
        let value = SecretString::generate_bytes(SECRET_BYTES).expose().to_owned();
        create_private_dir(&dir)?;
        write_private(&path, value.as_bytes())?;
        Ok(Generated { value, created: true, path })
    }

    /// The files of an organization's keys directory, as a Secret's data
    /// (file name → bytes); empty when there is none yet.
    pub fn read_keys(&self, organization: &str) -> Result<BTreeMap<String, ByteString>, DataDirError> {
        let dir = self.org_keys_dir(organization)?;
        let mut data = BTreeMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(data),
            Err(source) => return Err(DataDirError::Io { path: dir, source }),
        };
        for entry in entries {
            let entry = entry.map_err(|source| DataDirError::Io { path: dir.clone(), source })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_file() {
                continue;
            }
            let bytes = std::fs::read(entry.path())
                .map_err(|source| DataDirError::Io { path: entry.path(), source })?;
            data.insert(name, ByteString(bytes));
        }
        Ok(data)
    }

    fn org_keys_dir(&self, organization: &str) -> Result<PathBuf, DataDirError> {
        if !safe_name(organization) {
            return Err(DataDirError::BadName(organization.to_owned()));
        }
        Ok(self.keys_dir().join(organization))
    }
}

/// Kubernetes names and Secret keys, and nothing that could leave a directory.
fn safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}

fn create_private_dir(path: &Path) -> Result<(), DataDirError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| DataDirError::Io { path: path.to_owned(), source })
}

/// Writes a file readable by its owner only (a new file, or one replaced whole).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let io = |source| DataDirError::Io { path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_secret_is_made_once_and_kept_private() {
        let temp = tempfile::tempdir().unwrap();
        let data = DataDir::open(&temp.path().join("data")).unwrap();
        let first = data.generated_secret("acme", "ci-client-secret", "client-secret").unwrap();
        assert!(first.created);
        assert_eq!(first.value.len(), 43, "256 bits, base64url");
        let again = data.generated_secret("acme", "ci-client-secret", "client-secret").unwrap();
        assert!(!again.created);
        assert_eq!(again.value, first.value);
        let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
        assert!(matches!(data.generated_secret("..", "x", "y"), Err(DataDirError::BadName(_))));
    }

    #[test]
    fn a_directory_open_to_others_is_refused_and_the_store_made_private() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("data");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = DataDir::open(&root).unwrap_err();
        assert!(matches!(error, DataDirError::OpenToOthers { mode: 0o755, .. }), "{error}");
        assert!(error.to_string().contains("chmod 700"), "{error}");

        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let wal = root.join("portcullis.db-wal");
        std::fs::write(&wal, b"").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();
        DataDir::open(&root).unwrap();
        for file in ["portcullis.db", "portcullis.db-wal"] {
            let mode = std::fs::metadata(root.join(file)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{file}: {mode:o}");
        }
    }

    #[test]
    fn the_login_secret_survives_a_reopen() {
        let temp = tempfile::tempdir().unwrap();
        let first = DataDir::open(&temp.path().join("data")).unwrap().login_secret().unwrap();
        let second = DataDir::open(&temp.path().join("data")).unwrap().login_secret().unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 32);
    }

    #[test]
    fn the_key_encryption_key_is_made_once_and_kept_private() {
        let temp = tempfile::tempdir().unwrap();
        let data = DataDir::open(&temp.path().join("data")).unwrap();
        let first = data.key_ring().unwrap();
        let again = DataDir::open(&temp.path().join("data")).unwrap().key_ring().unwrap();
        assert_eq!(first.current().id(), again.current().id());
        let mode = std::fs::metadata(temp.path().join("data").join("key-encryption.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
        assert!(data.read_keys("acme").unwrap().is_empty(), "no keys of an earlier version");
    }
}
