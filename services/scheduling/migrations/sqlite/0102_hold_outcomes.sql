-- How a hold ended before its expiry: NULL while it runs (and once it lapses by itself), else
-- 'released' (ReleaseHold) or 'consumed' (by the booking or reschedule that named it), with when.
-- Holds are no longer deleted when they end, so that ReleaseHold can answer `released: false` for
-- a hold that already ended and NOT_FOUND only for one that never existed.
ALTER TABLE holds ADD COLUMN outcome TEXT;
ALTER TABLE holds ADD COLUMN ended_at_us INTEGER;
