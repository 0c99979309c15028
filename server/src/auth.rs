//! API keys: which principal a `Authorization: Bearer <key>` header stands for.

use std::collections::HashMap;
use std::path::Path;

use prismdb::{Principal, Role};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// One entry of a keys file: the principal a key stands for.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    team: Uuid,
    user: Uuid,
    #[serde(default)]
    groups: Vec<Uuid>,
    role: String,
}

/// The API keys the server accepts.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    principals: HashMap<String, Principal>,
}

impl Keys {
    /// Reads a keys file `{"<api key>": {team, user, groups?, role}}`; a missing file,
    /// malformed JSON, an empty key or an unknown role is an error naming the problem.
    pub fn load(path: &Path) -> Result<Keys, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read keys file {}: {e}", path.display()))?;
        let entries: HashMap<String, KeyEntry> = serde_json::from_str(&text)
            .map_err(|e| format!("keys file {}: {e}", path.display()))?;
        let mut principals = HashMap::with_capacity(entries.len());
        for (key, entry) in entries {
            if key.is_empty() {
                return Err(format!("keys file {}: an empty key", path.display()));
            }
            let role: Role = entry
                .role
                .parse()
                .map_err(|e| format!("keys file {}, key entry: {e}", path.display()))?;
            let principal = Principal {
                team: entry.team,
                user: entry.user,
                groups: entry.groups,
                role,
            };
            principals.insert(key, principal);
        }
        Ok(Keys { principals })
    }

    /// The local admin key of a data directory (`DIR/local-keys.json`), made on first use
    /// for a new random team. Returns the keys, the key and its principal.
    pub fn local(data_dir: &Path) -> Result<(Keys, String, Principal), String> {
        let path = data_dir.join(LOCAL_KEYS_FILE);
        if !path.exists() {
            write_local_key(&path)?;
        }
        let keys = Keys::load(&path)?;
        let (key, principal) = keys
            .principals
            .iter()
            .find(|(_, p)| p.role == Role::Admin)
            .ok_or_else(|| format!("{} holds no admin key", path.display()))?;
        Ok((keys.clone(), key.clone(), principal.clone()))
    }

    /// The principal of an `Authorization` header's value; 401 without a valid bearer key.
    pub fn principal(&self, header: Option<&str>) -> Result<Principal, ApiError> {
        let header =
            header.ok_or_else(|| ApiError::unauthenticated("missing Authorization header"))?;
        let key = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be \"Bearer <key>\""))?;
        self.principals
            .get(key.trim())
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("unknown API key"))
    }
}

/// The file in a data directory that holds the local admin key of a server run without
/// `--keys`.
pub const LOCAL_KEYS_FILE: &str = "local-keys.json";

fn write_local_key(path: &Path) -> Result<(), String> {
    let key = format!("pk_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let entry = KeyEntry {
        team: Uuid::new_v4(),
        user: Uuid::new_v4(),
        groups: Vec::new(),
        role: "admin".into(),
    };
    let file = HashMap::from([(key, entry)]);
    let text = serde_json::to_string_pretty(&file).map_err(|e| e.to_string())?;
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
