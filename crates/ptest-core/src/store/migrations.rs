//! Schema versions. Each entry moves the database from version `i` to `i + 1`; the current
//! version is SQLite's `user_version`. Never edit a shipped entry: append a new one.

/// The migrations, in order.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: environments, their processes, the event log.
    r#"
    CREATE TABLE environments (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        level       TEXT NOT NULL,
        status      TEXT NOT NULL,
        root        TEXT NOT NULL,
        spec        TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        updated_at  TEXT NOT NULL,
        expires_at  TEXT,
        error       TEXT,
        -- The process doing a multi-step change (create, remove), so that a crash is noticed.
        owner_pid   INTEGER,
        owner_ticks INTEGER,
        -- The Manager session that created it (for the on_shutdown policy).
        session     TEXT NOT NULL
    );
    CREATE TABLE processes (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        env_id      TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
        pid         INTEGER NOT NULL,
        start_ticks INTEGER NOT NULL,
        command     TEXT NOT NULL,
        status      TEXT NOT NULL,
        started_at  TEXT NOT NULL,
        ended_at    TEXT,
        exit_code   INTEGER,
        signal      INTEGER
    );
    CREATE INDEX processes_env ON processes(env_id, status);
    CREATE TABLE events (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        time      TEXT NOT NULL,
        event     TEXT NOT NULL,
        env_id    TEXT,
        env_name  TEXT,
        details   TEXT NOT NULL
    );
    CREATE INDEX events_env ON events(env_name, id);
    "#,
    // 2: facts an engine keeps about what it built (interpreter, spec hash, container id).
    "ALTER TABLE environments ADD COLUMN details TEXT NOT NULL DEFAULT '{}';",
    // 3: port leases; the primary key keeps a port from being held twice.
    r#"
    CREATE TABLE port_leases (
        port      INTEGER PRIMARY KEY,
        env_id    TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
        name      TEXT NOT NULL,
        leased_at TEXT NOT NULL,
        UNIQUE (env_id, name)
    );
    "#,
    // 4: background processes (`proc start`): a name per environment, their spec (command,
    // restart policy, readiness), restarts, supervisor and log files.
    r#"
    ALTER TABLE processes ADD COLUMN kind TEXT NOT NULL DEFAULT 'exec';
    ALTER TABLE processes ADD COLUMN name TEXT;
    ALTER TABLE processes ADD COLUMN spec TEXT;
    ALTER TABLE processes ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE processes ADD COLUMN supervisor_pid INTEGER;
    ALTER TABLE processes ADD COLUMN supervisor_ticks INTEGER;
    ALTER TABLE processes ADD COLUMN stdout_log TEXT;
    ALTER TABLE processes ADD COLUMN stderr_log TEXT;
    ALTER TABLE processes ADD COLUMN note TEXT;
    CREATE UNIQUE INDEX processes_name ON processes(env_id, name) WHERE name IS NOT NULL;
    "#,
    // 5: background processes supervised by a task inside the program that started them (the
    // Rust API), whose supervisor pid is that program's: never to be killed by another ptest.
    "ALTER TABLE processes ADD COLUMN supervisor_embedded INTEGER NOT NULL DEFAULT 0;",
    // 6: addresses leased to environments on a network (a `bridge` environment's address on
    // its home's bridge); the primary key keeps an address from being held twice.
    r#"
    CREATE TABLE address_leases (
        network   TEXT NOT NULL,
        address   TEXT NOT NULL,
        env_id    TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
        leased_at TEXT NOT NULL,
        PRIMARY KEY (network, address),
        UNIQUE (env_id, network)
    );
    "#,
    // 7: lifecycle times on the record (`env show`), set with the status or event that
    // changes them.
    r#"
    ALTER TABLE environments ADD COLUMN activated_at TEXT;
    ALTER TABLE environments ADD COLUMN deactivated_at TEXT;
    ALTER TABLE environments ADD COLUMN last_activity TEXT;
    "#,
    // 8: every `ptest` call looks for changes whose owner died; this index holds only the
    // environments in the middle of one, so the look costs nothing per idle environment.
    "CREATE INDEX environments_owner ON environments(owner_pid) WHERE owner_pid IS NOT NULL;",
];
