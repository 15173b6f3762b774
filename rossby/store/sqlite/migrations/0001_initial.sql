-- Rossby SQLite schema, version 1.
--
-- Every table is keyed by box id except the two lookups that exist before a
-- box does (contacts, registrations). UUIDs are 16-byte blobs; times are
-- Unix seconds as REAL. The schema_version table is created by the migrator
-- itself, not here, because it must exist before any file can be applied.

-- contact hash -> box; the primary key is what makes a claim exclusive.
CREATE TABLE contacts (
    contact_hash BLOB PRIMARY KEY,
    box_id       BLOB NOT NULL,
    claimed_at   REAL NOT NULL
) WITHOUT ROWID;

-- Pending registrations. expires_at is what the caller asked for; purge_at
-- is when the row really disappears (never later than registration_ttl
-- after it was written), and is what reads compare with.
CREATE TABLE registrations (
    device_id      BLOB PRIMARY KEY,
    box_id         BLOB NOT NULL,
    contact_hashes TEXT NOT NULL,     -- JSON list of hex strings, request order
    code_hashes    TEXT NOT NULL,     -- JSON list of hex strings, request order
    encryption_key BLOB NOT NULL,
    signing_key    BLOB NOT NULL,
    key_signature  BLOB NOT NULL,
    device_name    TEXT NOT NULL,
    created_at     REAL NOT NULL,
    expires_at     REAL NOT NULL,
    purge_at       REAL NOT NULL,
    sent_at        REAL NOT NULL,
    attempts       INTEGER NOT NULL DEFAULT 0,
    completed      INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX registrations_by_purge_at ON registrations (purge_at);

CREATE TABLE boxes (
    box_id      BLOB PRIMARY KEY,
    home_region TEXT NOT NULL,
    created_at  REAL NOT NULL
) WITHOUT ROWID;

-- Queue state of a box: head is the last position issued (0 = none yet);
-- everything at or below purged_through has been compacted away.
CREATE TABLE queues (
    box_id         BLOB PRIMARY KEY,
    head           INTEGER NOT NULL,
    purged_through INTEGER NOT NULL
) WITHOUT ROWID;

-- The keystore. A rowid table on purpose: the rowid breaks created_at ties
-- so list order is stable. start_position is the head when the device was
-- added; it never reads below it.
CREATE TABLE devices (
    box_id         BLOB NOT NULL,
    device_id      BLOB NOT NULL,
    name           TEXT NOT NULL,
    encryption_key BLOB NOT NULL,
    signing_key    BLOB NOT NULL,
    key_signature  BLOB NOT NULL,
    hawk_key       BLOB NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('active', 'revoked')),
    created_at     REAL NOT NULL,
    start_position INTEGER NOT NULL,
    PRIMARY KEY (box_id, device_id)
);

CREATE TABLE cursors (
    box_id    BLOB NOT NULL,
    device_id BLOB NOT NULL,
    cursor    INTEGER NOT NULL,
    PRIMARY KEY (box_id, device_id)
) WITHOUT ROWID;

CREATE TABLE profiles (
    box_id       BLOB PRIMARY KEY,
    display_name TEXT NOT NULL,
    description  TEXT NOT NULL,
    avatar_ref   TEXT NOT NULL,
    discoverable INTEGER NOT NULL,
    accept_from  TEXT NOT NULL
) WITHOUT ROWID;

-- The queue. A rowid table because rows carry ciphertext up to 64 KiB
-- (WITHOUT ROWID suits small rows only). (box_id, position) serves fetch
-- and the compaction range delete; (box_id, message_id) makes enqueue
-- idempotent; (box_id, expires_at) answers the pending count and lets
-- purge_expired find expired rows per box without a table scan.
CREATE TABLE messages (
    box_id        BLOB NOT NULL,
    position      INTEGER NOT NULL,
    message_id    BLOB NOT NULL,
    sender_box    BLOB NOT NULL,
    sender_device BLOB NOT NULL,
    received_at   REAL NOT NULL,
    expires_at    REAL NOT NULL,
    ciphertext    BLOB NOT NULL,
    UNIQUE (box_id, position),
    UNIQUE (box_id, message_id)
);
CREATE INDEX messages_by_expiry ON messages (box_id, expires_at);
