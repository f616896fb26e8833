-- A partition's rows are moved out of the default partition while no new row can land there, and
-- its bounds are UTC whatever the session's time zone.
CREATE OR REPLACE FUNCTION omega_audit_partition(day date) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    name text := 'audit_records_' || to_char(day, 'YYYYMMDD');
    lo text := day::text || ' 00:00:00+00';
    hi text := (day + 1)::text || ' 00:00:00+00';
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    LOCK TABLE audit_records_default IN EXCLUSIVE MODE;
    EXECUTE format('CREATE TABLE %I (LIKE audit_records INCLUDING DEFAULTS)', name);
    EXECUTE format('WITH moved AS (DELETE FROM audit_records_default WHERE at >= %L::timestamptz AND at < %L::timestamptz RETURNING *)
        INSERT INTO %I SELECT * FROM moved', lo, hi, name);
    EXECUTE format('ALTER TABLE audit_records ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN true;
END $$;

-- No idempotency key is dispatched twice, whatever the step or the time: the partitioned table's
-- unique indexes must hold the time, so the keys live in a table of their own.
CREATE TABLE audit_dispatch_keys (
    idempotency_key text        PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now()
);
INSERT INTO audit_dispatch_keys (idempotency_key, created_at)
SELECT idempotency_key, min(at) FROM audit_records
WHERE kind = 'dispatched' AND idempotency_key <> '' GROUP BY idempotency_key;

-- Rows written before the tracking protocol carry the journey version on their routed row only;
-- the other rows of the reach get it too, so sends made before the upgrade can be attributed.
UPDATE audit_records a SET journey_version = r.v
FROM (SELECT reach_id, max(journey_version) AS v FROM audit_records WHERE kind = 'routed' AND journey_version > 0 GROUP BY reach_id) r
WHERE a.reach_id = r.reach_id AND a.journey_version = 0;
