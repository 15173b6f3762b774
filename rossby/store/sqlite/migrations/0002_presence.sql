-- Version 2: presence, for real-time delivery across server processes.
--
-- One row per (device, server process) holding an open stream. A row is
-- refreshed while the stream lives and read by whichever process queues a
-- message for the box, to know which peers to notify. Rows past expires_at
-- are ignored by reads and removed by housekeeping.
CREATE TABLE presence (
    box_id     BLOB NOT NULL,
    device_id  BLOB NOT NULL,
    server_id  TEXT NOT NULL,     -- the holding process, unique per process start
    address    TEXT NOT NULL,     -- where its peer-notify endpoint listens
    region     TEXT NOT NULL,
    since      REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (box_id, device_id, server_id)
) WITHOUT ROWID;
CREATE INDEX presence_by_expiry ON presence (expires_at);
