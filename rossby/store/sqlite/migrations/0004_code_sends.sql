-- Version 4: one-time codes sent per contact, for the per-contact limit on
-- codes (Store.reserve_code_sends; docs/security.md, "Abuse limits").
--
-- One row per code sent, keyed by the keyed contact hash (never the
-- contact). A rowid table, because two codes for one contact may carry the
-- same timestamp. A count reads one contact's rows after a time through the
-- first index; housekeeping drops rows past keep_until through the second.
CREATE TABLE code_sends (
    contact_hash BLOB NOT NULL,
    sent_at      REAL NOT NULL,
    keep_until   REAL NOT NULL
);
CREATE INDEX code_sends_by_contact ON code_sends (contact_hash, sent_at);
CREATE INDEX code_sends_by_keep_until ON code_sends (keep_until);
