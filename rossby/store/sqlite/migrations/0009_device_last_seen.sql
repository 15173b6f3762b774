-- Version 9: when each device last made
-- a signed call (docs/store.md "Device activity"), for idle-device unlinking
-- (docs/security.md "Idle devices"). NULL for devices from before it: the
-- server starts their idle clock the first time it looks at their box.
ALTER TABLE devices ADD COLUMN last_seen REAL;

-- The key log's kind gains 'idle_unlink' (rossby/crypto/keylog.py). SQLite
-- cannot change a CHECK in place: the table is rebuilt, in the migration's
-- one transaction, rows copied as they are.
CREATE TABLE key_log_v8 (
    box_id          BLOB NOT NULL,
    seq             INTEGER NOT NULL,
    prev_hash       BLOB NOT NULL,
    hash            BLOB NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    kind            TEXT NOT NULL
                    CHECK (kind IN ('register', 'link', 'rotate', 'revoke', 'idle_unlink')),
    device_id       BLOB NOT NULL,
    actor_device_id BLOB NOT NULL,
    encryption_key  BLOB NOT NULL,
    signing_key     BLOB NOT NULL,
    signature       BLOB NOT NULL,
    PRIMARY KEY (box_id, seq)
) WITHOUT ROWID;
INSERT INTO key_log_v8 SELECT box_id, seq, prev_hash, hash, timestamp_ms, kind, device_id,
    actor_device_id, encryption_key, signing_key, signature FROM key_log;
DROP TABLE key_log;
ALTER TABLE key_log_v8 RENAME TO key_log;
