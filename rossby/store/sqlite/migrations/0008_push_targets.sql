-- Version 8: push targets (issue 19; docs/store.md "Push targets").
--
-- One row per (box, device): where the device is woken when a message is
-- queued for it and it has no stream open. kind is PushKind's value
-- ('web_push' or 'gateway'); the Web Push columns (endpoint, p256dh, auth)
-- or the gateway ones (app_id, pushkey) are set, the others empty.
-- registered_at (the server clock at SetPushTarget) tells two registrations
-- of one device apart: a push service's "gone" for the old one deletes only
-- WHERE registered_at matches. A Send lists a box's rows through the
-- primary key, so the table needs no index of its own.
CREATE TABLE push_targets (
    box_id        BLOB NOT NULL,
    device_id     BLOB NOT NULL,
    kind          TEXT NOT NULL,
    registered_at REAL NOT NULL,
    endpoint      TEXT NOT NULL,
    p256dh        BLOB NOT NULL,
    auth          BLOB NOT NULL,
    app_id        TEXT NOT NULL,
    pushkey       TEXT NOT NULL,
    hint          TEXT NOT NULL,
    PRIMARY KEY (box_id, device_id)
) WITHOUT ROWID;
