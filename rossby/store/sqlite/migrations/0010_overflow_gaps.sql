-- Version 10: per-device overflow (docs/store.md, "Overflow"). When a device
-- falls more than pending_cap behind, its oldest pending messages are dropped
-- for it: its cursor moves past them and, in the same transaction, the
-- dropped range is recorded here, so Fetch reports it (missed, after,
-- through) until the device acks at or above gap_through. NULL (every row
-- from before this version, and every device that never overflowed): no gap.
ALTER TABLE cursors ADD COLUMN gap_missed INTEGER;
ALTER TABLE cursors ADD COLUMN gap_after INTEGER;
ALTER TABLE cursors ADD COLUMN gap_through INTEGER;
