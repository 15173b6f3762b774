"""Every CQL statement of ``CassandraStore`` outside the account, presence,
nonce and code-send tables (those modules keep their own): in one place, so
the statements can be read together and compared with the schema files.

Rows come back as dicts (``rossby.replication.consistency``), read by the
column names selected here.
"""

from __future__ import annotations

_DEVICE_COLUMNS = (
    "device_id, name, encryption_key, signing_key, key_signature, hawk_key, state,"
    " device_created_at, start_position, cursor, purged_through, last_seen"
)
# A queue operation's view of the box partition: the device columns, then
# the statics that route it (docs/replication.md, "Home region").
# With the device's overflow gap (schema 12, docs/store.md "Overflow").
_VIEW_COLUMNS = (
    f"{_DEVICE_COLUMNS}, home_region, recovery_floor, gap_missed, gap_after, gap_through"
)
_REGISTRATION_COLUMNS = (
    "device_id, box_id, contact_hashes, code_hashes, encryption_key, signing_key,"
    " key_signature, device_name, created_at, expires_at, sent_at, attempts, completed"
)


class Cql:
    """Every statement, qualified with the keyspace (the session has none:
    it must work before ``migrate`` created the keyspace)."""

    def __init__(self, ks: str) -> None:
        # schema bookkeeping
        self.version_get = f"SELECT version FROM {ks}.schema_version WHERE component = ? LIMIT 1"
        self.version_put = (
            f"INSERT INTO {ks}.schema_version (component, version, applied_at) VALUES (?, ?, ?)"
        )
        self.ping = "SELECT release_version FROM system.local"
        self.keyspace_replication = (
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?"
        )
        # boxes partition: box + profile (static), devices (rows)
        self.box_get = f"SELECT home_region, created_at FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        self.box_insert = (
            f"INSERT INTO {ks}.boxes (box_id, home_region, created_at, display_name,"
            " description, avatar_ref, discoverable, accept_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.profile_get = (
            f"SELECT home_region, display_name, description, avatar_ref, discoverable,"
            f" accept_from FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        )
        self.profile_put = (
            f"UPDATE {ks}.boxes SET display_name = ?, description = ?, avatar_ref = ?,"
            " discoverable = ?, accept_from = ? WHERE box_id = ?"
        )
        self.device_insert = (
            f"INSERT INTO {ks}.boxes (box_id, device_id, name, encryption_key, signing_key,"
            " key_signature, hawk_key, state, device_created_at, start_position)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        # last_seen only grows: every write carries its own time as the
        # write timestamp (µs), so the latest time wins in any arrival order.
        self.device_seen = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET last_seen = ?"
            " WHERE box_id = ? AND device_id = ?"
        )
        self.device_get = (
            f"SELECT {_DEVICE_COLUMNS} FROM {ks}.boxes WHERE box_id = ? AND device_id = ?"
        )
        self.devices_all = f"SELECT {_DEVICE_COLUMNS} FROM {ks}.boxes WHERE box_id = ?"
        self.device_keys = (
            f"UPDATE {ks}.boxes SET encryption_key = ?, signing_key = ?, key_signature = ?"
            " WHERE box_id = ? AND device_id = ?"
        )
        self.device_state = f"UPDATE {ks}.boxes SET state = ? WHERE box_id = ? AND device_id = ?"
        self.device_hawk_key = (
            f"UPDATE {ks}.boxes SET hawk_key = ? WHERE box_id = ? AND device_id = ?"
        )
        # full scans for operator commands (token order, then device id)
        self.devices_first = f"SELECT box_id, {_DEVICE_COLUMNS} FROM {ks}.boxes LIMIT ?"
        self.devices_scan = (
            f"SELECT box_id, {_DEVICE_COLUMNS} FROM {ks}.boxes"
            " WHERE token(box_id) > token(?) LIMIT ?"
        )
        self.devices_rest = (
            f"SELECT {_DEVICE_COLUMNS} FROM {ks}.boxes WHERE box_id = ? AND device_id > ?"
        )
        # grow-only cells: the write timestamp is derived from the value
        self.cursor_set = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET cursor = ? WHERE box_id = ? AND device_id = ?"
        )
        # An overflow trim: the cursor and the gap it opens, one row, one
        # timestamp (that of the new cursor). An ack past the gap ends its
        # report and keeps gap_through as the re-read floor.
        self.cursor_trim = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET cursor = ?, gap_missed = ?, gap_after = ?,"
            " gap_through = ? WHERE box_id = ? AND device_id = ?"
        )
        self.cursor_set_gap_seen = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET cursor = ?, gap_missed = null,"
            " gap_after = null WHERE box_id = ? AND device_id = ?"
        )
        self.purged_get = f"SELECT purged_through FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        self.purged_set = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET purged_through = ? WHERE box_id = ?"
        )
        # home regions (read in the box's home DC by every queue operation)
        self.view_all = f"SELECT {_VIEW_COLUMNS} FROM {ks}.boxes WHERE box_id = ?"
        self.view_device = (
            f"SELECT {_VIEW_COLUMNS} FROM {ks}.boxes WHERE box_id = ? AND device_id = ?"
        )
        self.home_get = (
            f"SELECT home_region, home_epoch, home_moved_at, recovery_floor, purged_through"
            f" FROM {ks}.boxes WHERE box_id = ? LIMIT 1"
        )
        self.home_move = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET home_region = ?, home_epoch = ?,"
            " home_moved_at = ?, recovery_floor = ? WHERE box_id = ?"
        )
        self.recovery_clear = (
            f"UPDATE {ks}.boxes USING TIMESTAMP ? SET recovery_floor = 0 WHERE box_id = ?"
        )
        # the queue
        self.message_insert = (
            f"INSERT INTO {ks}.messages (box_id, bucket, position, message_id, sender_box,"
            " sender_device, ciphertext, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " USING TTL ?"
        )
        self.message_range = (
            f"SELECT position, message_id, sender_box, sender_device, ciphertext, expires_at_ms"
            f" FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position > ?"
            " AND position <= ? LIMIT ?"
        )
        self.message_top = (
            f"SELECT position FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position > ?"
            " AND position <= ? ORDER BY position DESC LIMIT 1"
        )
        self.message_exists = (
            f"SELECT position FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
            " AND position = ? AND message_id = ?"
        )
        # Filtering inside one partition's position range reads the rows the
        # count reads anyway; it drops short-lived rows past their expiry
        # that TTL (rounded up) has not removed yet.
        self.message_count = (
            f"SELECT COUNT(*) FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
            " AND position > ? AND position <= ? AND expires_at_ms > ? ALLOW FILTERING"
        )
        # The newest live positions, for the overflow rule: positions only.
        self.message_newest = (
            f"SELECT position FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position > ?"
            " AND position <= ? AND expires_at_ms > ? ORDER BY position DESC LIMIT ?"
            " ALLOW FILTERING"
        )
        self.messages_delete_below = (
            f"DELETE FROM {ks}.messages WHERE box_id = ? AND bucket = ? AND position <= ?"
        )
        self.messages_delete_bucket = f"DELETE FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
        # message ids: plain writes, written before the message row
        self.id_put = (
            f"INSERT INTO {ks}.message_ids (box_id, message_id, position, expires_at_ms)"
            " VALUES (?, ?, ?, ?) USING TTL ?"
        )
        self.id_get = (
            f"SELECT position, expires_at_ms FROM {ks}.message_ids"
            " WHERE box_id = ? AND message_id = ?"
        )
        self.message_ids_range = (
            f"SELECT position, message_id FROM {ks}.messages WHERE box_id = ? AND bucket = ?"
            " AND position > ? AND position <= ?"
        )
        # contacts: LWT only
        self.contact_get = f"SELECT box_id FROM {ks}.contacts WHERE contact_hash = ?"
        self.contact_claim = (
            f"INSERT INTO {ks}.contacts (contact_hash, box_id) VALUES (?, ?) IF NOT EXISTS"
        )
        self.contact_release = f"DELETE FROM {ks}.contacts WHERE contact_hash = ? IF box_id = ?"
        # registrations: LWT only
        self.registration_get = (
            f"SELECT {_REGISTRATION_COLUMNS} FROM {ks}.registrations WHERE device_id = ?"
        )
        self.registration_insert = (
            f"INSERT INTO {ks}.registrations ({_REGISTRATION_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?"
        )
        self.registration_replace = (
            f"UPDATE {ks}.registrations USING TTL ? SET box_id = ?, contact_hashes = ?,"
            " code_hashes = ?, encryption_key = ?, signing_key = ?, key_signature = ?,"
            " device_name = ?, created_at = ?, expires_at = ?, sent_at = ?, attempts = ?,"
            " completed = ? WHERE device_id = ? IF EXISTS"
        )
        self.registration_attempt = (
            f"UPDATE {ks}.registrations USING TTL ? SET attempts = ? WHERE device_id = ?"
            " IF attempts = ? AND expires_at = ?"
        )
        self.registration_complete = (
            f"UPDATE {ks}.registrations USING TTL ? SET completed = true WHERE device_id = ?"
            " IF expires_at = ?"
        )


__all__ = ["Cql"]
