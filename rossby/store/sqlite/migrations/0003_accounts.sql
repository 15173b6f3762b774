-- Version 3: accounts. Key log, device-link offers, a box's contacts,
-- contact challenges and sender rules. See rossby/store/accounts.py.

-- Per-box hash chain of device key changes. The primary key makes an
-- append at a taken seq fail, so the chain stays linear.
CREATE TABLE key_log (
    box_id          BLOB NOT NULL,
    seq             INTEGER NOT NULL,
    prev_hash       BLOB NOT NULL,
    hash            BLOB NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('register', 'link', 'rotate', 'revoke')),
    device_id       BLOB NOT NULL,
    actor_device_id BLOB NOT NULL,
    encryption_key  BLOB NOT NULL,
    signing_key     BLOB NOT NULL,
    signature       BLOB NOT NULL,
    PRIMARY KEY (box_id, seq)
) WITHOUT ROWID;

-- Device-link offers by offer id. Rows are read until keep_until and
-- removed by later writes once past it.
CREATE TABLE link_offers (
    offer_id           BLOB PRIMARY KEY,
    box_id             BLOB NOT NULL,
    creator_device_id  BLOB NOT NULL,
    verifier           BLOB NOT NULL,
    created_at         REAL NOT NULL,
    expires_at         REAL NOT NULL,
    keep_until         REAL NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    state              TEXT NOT NULL CHECK (state IN ('open', 'joined', 'approved')),
    device_id          BLOB,
    device_name        TEXT NOT NULL DEFAULT '',
    encryption_key     BLOB NOT NULL DEFAULT x'',
    signing_key        BLOB NOT NULL DEFAULT x'',
    key_signature      BLOB NOT NULL DEFAULT x'',
    join_mac           BLOB NOT NULL DEFAULT x'',
    approver_device_id BLOB,
    approval_signature BLOB NOT NULL DEFAULT x'',
    confirm            BLOB NOT NULL DEFAULT x'',
    sealed_credentials BLOB NOT NULL DEFAULT x''
) WITHOUT ROWID;
CREATE INDEX link_offers_by_keep_until ON link_offers (keep_until);

-- The contacts a box claimed (keyed hashes, like contacts.contact_hash).
CREATE TABLE box_contacts (
    box_id       BLOB NOT NULL,
    contact_hash BLOB NOT NULL,
    added_at     REAL NOT NULL,
    PRIMARY KEY (box_id, contact_hash)
) WITHOUT ROWID;

-- Codes sent to contacts a box wants to add.
CREATE TABLE contact_challenges (
    box_id       BLOB NOT NULL,
    contact_hash BLOB NOT NULL,
    code_hash    BLOB NOT NULL,
    sent_at      REAL NOT NULL,
    expires_at   REAL NOT NULL,
    keep_until   REAL NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (box_id, contact_hash)
) WITHOUT ROWID;
CREATE INDEX contact_challenges_by_keep_until ON contact_challenges (keep_until);

-- What a box holds about another: blocked or accepted (one or the other).
CREATE TABLE sender_rules (
    box_id   BLOB NOT NULL,
    other_id BLOB NOT NULL,
    rule     TEXT NOT NULL CHECK (rule IN ('blocked', 'accepted')),
    PRIMARY KEY (box_id, other_id)
) WITHOUT ROWID;
