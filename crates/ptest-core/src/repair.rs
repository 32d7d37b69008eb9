//! `ptest doctor --repair`: a new state database built from what is on the host, for a home
//! whose `state.db` is missing, empty, truncated or not a database
//! (`store::check_intact` refuses to work on one). The damaged file is kept aside,
//! never overwritten; every root under `envs/` whose marker names its directory becomes a
//! record again, so that `ptest env rm` can remove it with everything found by its id (its
//! cgroup and the holder in it, its tmpfs, its network link, its container at the next `gc`).
//!
//! What the lost records held and the host does not (names, specs, labels, port leases) stays
//! lost: a recovered environment is named `recovered-<id>`, has the `basic` level's spec and
//! is in `error`, saying so.

use std::fs;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::home::Home;
use crate::model::{Environment, EnvironmentSpec, EnvironmentStatus, IsolationLevel};
use crate::name::EnvId;
use crate::root;
use crate::store::Store;

/// What a repair did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    /// Where the damaged database (and its `-wal`, `-shm`) were moved; `None` when nothing
    /// needed repairing.
    pub kept_aside: Option<PathBuf>,
    /// Why the database was refused, when it was.
    pub damage: Option<String>,
    /// The environments recorded again.
    pub recovered: Vec<Recovered>,
}

/// One environment recorded again from its root.
#[derive(Debug, Clone, Serialize)]
pub struct Recovered {
    /// Its id (from the marker).
    pub id: String,
    /// Its new name.
    pub name: String,
    /// Its root.
    pub root: PathBuf,
}

/// Repairs `home`'s state database if it is damaged (see the module docs).
pub fn repair(home: &Home) -> Result<RepairReport> {
    let db = home.state_db();
    let damage = match crate::store::check_intact(&db, &home.envs_dir()) {
        Ok(()) => {
            return Ok(RepairReport {
                kept_aside: None,
                damage: None,
                recovered: Vec::new(),
            });
        }
        Err(Error::StoreDamaged { reason, .. }) => reason,
        Err(e) => return Err(e),
    };
    let stamp = Timestamp::now().as_second();
    let aside = PathBuf::from(format!("{}.damaged-{stamp}", db.display()));
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        let to = PathBuf::from(format!("{}{suffix}", aside.display()));
        match fs::rename(&from, &to) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("moving aside", &from, e));
            }
            _ => {}
        }
    }
    let store = Store::open(&db)?;
    let mut recovered = Vec::new();
    for root in marked_roots(&home.envs_dir()) {
        let id = EnvId::from_stored(
            root.file_name()
                .and_then(|n| n.to_str())
                .expect("marked roots are named by their id")
                .to_owned(),
        );
        let name = format!("recovered-{id}")
            .parse()
            .expect("ids make valid names");
        let now = Timestamp::now();
        let mut env = Environment {
            id: id.clone(),
            name,
            level: IsolationLevel::Basic,
            status: EnvironmentStatus::Initializing,
            root: root.clone(),
            spec: EnvironmentSpec::new(IsolationLevel::Basic),
            details: Default::default(),
            created_at: now,
            updated_at: now,
            expires_at: None,
            error: None,
            ports: Default::default(),
            activated_at: None,
            deactivated_at: None,
            last_activity: None,
        };
        let admission = crate::store::Admission {
            max: u32::MAX,
            ..Default::default()
        };
        store.insert_environment(&env, &admission, "repair")?;
        let message = "recovered by `ptest doctor --repair` from its root; its record was lost \
                       with the damaged state database: remove it with `ptest env rm`";
        store.set_status(&env, EnvironmentStatus::Error, Some(message), false, None)?;
        env.status = EnvironmentStatus::Error;
        recovered.push(Recovered {
            id: id.to_string(),
            name: env.name.to_string(),
            root,
        });
    }
    Ok(RepairReport {
        kept_aside: Some(aside),
        damage: Some(damage),
        recovered,
    })
}

/// Directories of `envs` whose marker names the directory itself.
fn marked_roots(envs: &Path) -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(envs) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            root::marker_id(p).as_deref() == Some(name)
        })
        .collect();
    out.sort();
    out
}
