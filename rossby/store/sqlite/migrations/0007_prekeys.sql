-- Version 7: prekeys (issue 18; docs/store.md "Prekeys").
--
-- prekeys holds each device's two replaceable keys, under their signed kind
-- (1 the signed X25519 prekey, 3 the last-resort ML-KEM-768 prekey): an
-- upload replaces them. prekey_pools holds the two one-time pools (pool 0
-- X25519, pool 2 ML-KEM-768). claim_prekeys marks the row it hands out
-- spent (claimed_at) in the writer's transaction, so a key leaves the pool
-- exactly when it is handed out, whichever process on the file asked; a
-- spent row stays for SPENT_HOLD (rossby/store/prekeypools.py) so a retried
-- upload cannot put the key back, then purge_expired deletes it.
CREATE TABLE prekeys (
    box_id         BLOB NOT NULL,
    device_id      BLOB NOT NULL,
    kind           INTEGER NOT NULL,
    key_id         INTEGER NOT NULL,
    public_key     BLOB NOT NULL,
    signature      BLOB NOT NULL,
    uploaded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (box_id, device_id, kind)
) WITHOUT ROWID;
CREATE TABLE prekey_pools (
    box_id     BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    pool       INTEGER NOT NULL,
    key_id     INTEGER NOT NULL,
    public_key BLOB NOT NULL,
    signature  BLOB NOT NULL,
    claimed_at REAL,
    PRIMARY KEY (box_id, device_id, pool, key_id)
) WITHOUT ROWID;
CREATE INDEX prekey_pools_spent ON prekey_pools (claimed_at) WHERE claimed_at IS NOT NULL;
