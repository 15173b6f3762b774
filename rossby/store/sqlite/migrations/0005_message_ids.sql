-- Version 5: message ids outlive their messages.
--
-- Compaction deletes a message as soon as every device has passed it, but
-- the sender may not have heard that its Send succeeded (the server crashed
-- or the answer timed out) and retries with the same message id later. Were
-- the id forgotten with the row, the retry would queue a second copy at a
-- new position, above the devices' cursors: a duplicate. So the id is kept
-- until the message would have expired, as Cassandra's message_claims are.
CREATE TABLE message_ids (
    box_id     BLOB NOT NULL,
    message_id BLOB NOT NULL,
    position   INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (box_id, message_id)
) WITHOUT ROWID;
CREATE INDEX message_ids_by_expiry ON message_ids (box_id, expires_at);
INSERT INTO message_ids (box_id, message_id, position, expires_at)
    SELECT box_id, message_id, position, expires_at FROM messages;
