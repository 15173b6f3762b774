-- Version 6: Hawk nonces shared by every process on the file.
--
-- A signed request is accepted at most once by the whole deployment within
-- the Hawk skew window (docs/security.md, "Replays across processes"): each
-- accepted request's nonce is inserted here, and a second insert of the
-- same key is a replay. Rows live for twice the skew window, after which
-- the request's timestamp is refused anyway; housekeeping deletes them.
CREATE TABLE hawk_nonces (
    box_id     BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    nonce      BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (box_id, device_id, nonce)
) WITHOUT ROWID;
CREATE INDEX hawk_nonces_by_expiry ON hawk_nonces (expires_at);
