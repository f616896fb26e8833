-- One row per reach, kept by the database as its records arrive: what the funnels and the per-step
-- counts read, so a console page or a Funnel call reads a row per reach rather than every record
-- of every reach in its period. A trigger on audit_records keeps it, whichever statement writes
-- the records (Append, attribution, receipts); it only ever merges (a flag set, a set grown, the
-- latest status by (at, id)), so applying the same records twice changes nothing.
CREATE TABLE audit_reaches (
    reach_id   text PRIMARY KEY,
    -- From the reach's matched record; matched_at is NULL for a reach that never matched (a
    -- shadow rule's).
    rule_id    text        NOT NULL DEFAULT '',
    journey_id text        NOT NULL DEFAULT '',
    matched_at timestamptz,
    -- The highest journey version its records carry.
    version    int         NOT NULL DEFAULT 0,
    sent       boolean     NOT NULL DEFAULT false,
    opened     boolean     NOT NULL DEFAULT false,
    converted  boolean     NOT NULL DEFAULT false,
    -- The outcome of its latest completed or cancelled record; NULL while running.
    status     text,
    status_at  timestamptz,
    status_id  bigint,
    -- The filter named by its latest dropping filter record.
    dropped_by text,
    dropped_at timestamptz,
    dropped_id bigint,
    -- Every split path it was sent down; the global control group's verdict if it held it out.
    paths      text[]      NOT NULL DEFAULT '{}',
    held_out   text,
    -- Per journey step (its ID without a visit's #n or an attempt's /suffix), what happened there,
    -- as "what<US>step[<US>label]" (US: the unit separator, U+001F): e entered, w waited, s sent,
    -- d dropped, f failed, D dropped by the filter in label, o decided the outcome in label.
    steps      text[]      NOT NULL DEFAULT '{}',
    last_at    timestamptz NOT NULL
);
CREATE INDEX audit_reaches_journey ON audit_reaches (journey_id, matched_at) WHERE matched_at IS NOT NULL;
CREATE INDEX audit_reaches_rule ON audit_reaches (rule_id, matched_at) WHERE matched_at IS NOT NULL;
CREATE INDEX audit_reaches_last ON audit_reaches (last_at);

-- omega_audit_fold folds records into audit_reaches. Reaches go in reach_id order, so concurrent
-- writers lock their rows in one order. (PL/pgSQL, so its statement is planned once per session.)
CREATE FUNCTION omega_audit_fold(recs audit_records[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    WITH x AS (
        SELECT r.*, split_part(split_part(r.step, '#', 1), '/', 1) AS s FROM unnest(recs) r),
    t AS (
        SELECT reach_id, array_agg(DISTINCT tok ORDER BY tok) AS steps
        FROM x, unnest(ARRAY[
            'e' || chr(31) || s,
            CASE WHEN kind IN ('waited', 'deferred', 'responded', 'timed_out') THEN 'w' || chr(31) || s END,
            CASE WHEN kind = 'dispatched' THEN 's' || chr(31) || s END,
            CASE WHEN kind = 'suppressed' THEN 'd' || chr(31) || s END,
            CASE WHEN kind = 'failed' THEN 'f' || chr(31) || s END,
            CASE WHEN kind = 'suppressed'
                THEN 'D' || chr(31) || s || chr(31) || coalesce(substring(reason from '^drop by ([A-Za-z0-9_]+)'), 'other') END,
            CASE WHEN kind IN ('split', 'branched', 'responded', 'timed_out', 'converted')
                THEN 'o' || chr(31) || s || chr(31) || outcome END]) AS tok
        WHERE tok IS NOT NULL
        GROUP BY reach_id),
    r AS (
        SELECT reach_id,
            (array_agg(rule_id ORDER BY at, id) FILTER (WHERE kind = 'matched'))[1] AS rule_id,
            (array_agg(journey_id ORDER BY at, id) FILTER (WHERE kind = 'matched'))[1] AS journey_id,
            min(at) FILTER (WHERE kind = 'matched') AS matched_at,
            max(journey_version) AS version,
            bool_or(kind = 'dispatched') AS sent,
            bool_or(kind = 'responded' AND outcome = 'push_open') AS opened,
            bool_or(kind = 'converted') AS converted,
            (array_agg(outcome ORDER BY at DESC, id DESC) FILTER (WHERE kind IN ('completed', 'cancelled')))[1] AS status,
            (array_agg(at ORDER BY at DESC, id DESC) FILTER (WHERE kind IN ('completed', 'cancelled')))[1] AS status_at,
            (array_agg(id ORDER BY at DESC, id DESC) FILTER (WHERE kind IN ('completed', 'cancelled')))[1] AS status_id,
            (array_agg(coalesce(substring(reason from '^drop by ([A-Za-z0-9_]+)'), 'other') ORDER BY at DESC, id DESC)
                FILTER (WHERE kind = 'filtered' AND outcome = 'drop'))[1] AS dropped_by,
            (array_agg(at ORDER BY at DESC, id DESC) FILTER (WHERE kind = 'filtered' AND outcome = 'drop'))[1] AS dropped_at,
            (array_agg(id ORDER BY at DESC, id DESC) FILTER (WHERE kind = 'filtered' AND outcome = 'drop'))[1] AS dropped_id,
            coalesce(array_agg(DISTINCT outcome ORDER BY outcome) FILTER (WHERE kind = 'split'), '{}') AS paths,
            min(outcome) FILTER (WHERE kind = 'held_out') AS held_out,
            max(at) AS last_at
        FROM x GROUP BY reach_id)
    INSERT INTO audit_reaches AS a (reach_id, rule_id, journey_id, matched_at, version, sent, opened, converted,
        status, status_at, status_id, dropped_by, dropped_at, dropped_id, paths, held_out, steps, last_at)
    SELECT r.reach_id, coalesce(r.rule_id, ''), coalesce(r.journey_id, ''), r.matched_at, r.version, r.sent, r.opened,
        r.converted, r.status, r.status_at, r.status_id, r.dropped_by, r.dropped_at, r.dropped_id, r.paths, r.held_out,
        t.steps, r.last_at
    FROM r JOIN t USING (reach_id)
    ORDER BY r.reach_id
    ON CONFLICT (reach_id) DO UPDATE SET
        rule_id = CASE WHEN excluded.matched_at < a.matched_at OR a.matched_at IS NULL AND excluded.matched_at IS NOT NULL
            THEN excluded.rule_id ELSE a.rule_id END,
        journey_id = CASE WHEN excluded.matched_at < a.matched_at OR a.matched_at IS NULL AND excluded.matched_at IS NOT NULL
            THEN excluded.journey_id ELSE a.journey_id END,
        matched_at = least(a.matched_at, excluded.matched_at),
        version = greatest(a.version, excluded.version),
        sent = a.sent OR excluded.sent,
        opened = a.opened OR excluded.opened,
        converted = a.converted OR excluded.converted,
        status = CASE WHEN (excluded.status_at, excluded.status_id) > (a.status_at, a.status_id) OR a.status IS NULL
            THEN coalesce(excluded.status, a.status) ELSE a.status END,
        status_at = CASE WHEN (excluded.status_at, excluded.status_id) > (a.status_at, a.status_id) OR a.status IS NULL
            THEN coalesce(excluded.status_at, a.status_at) ELSE a.status_at END,
        status_id = CASE WHEN (excluded.status_at, excluded.status_id) > (a.status_at, a.status_id) OR a.status IS NULL
            THEN coalesce(excluded.status_id, a.status_id) ELSE a.status_id END,
        dropped_by = CASE WHEN (excluded.dropped_at, excluded.dropped_id) > (a.dropped_at, a.dropped_id) OR a.dropped_by IS NULL
            THEN coalesce(excluded.dropped_by, a.dropped_by) ELSE a.dropped_by END,
        dropped_at = CASE WHEN (excluded.dropped_at, excluded.dropped_id) > (a.dropped_at, a.dropped_id) OR a.dropped_by IS NULL
            THEN coalesce(excluded.dropped_at, a.dropped_at) ELSE a.dropped_at END,
        dropped_id = CASE WHEN (excluded.dropped_at, excluded.dropped_id) > (a.dropped_at, a.dropped_id) OR a.dropped_by IS NULL
            THEN coalesce(excluded.dropped_id, a.dropped_id) ELSE a.dropped_id END,
        paths = CASE WHEN excluded.paths <@ a.paths THEN a.paths
            ELSE ARRAY(SELECT DISTINCT p FROM unnest(a.paths || excluded.paths) p ORDER BY p) END,
        held_out = least(a.held_out, excluded.held_out),
        steps = CASE WHEN excluded.steps <@ a.steps THEN a.steps
            ELSE ARRAY(SELECT DISTINCT p FROM unnest(a.steps || excluded.steps) p ORDER BY p) END,
        last_at = greatest(a.last_at, excluded.last_at);
END $$;

CREATE FUNCTION omega_audit_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM omega_audit_fold(ARRAY(SELECT ROW(n.*)::audit_records FROM new_records n));
    RETURN NULL;
END $$;

CREATE TRIGGER audit_records_rollup AFTER INSERT ON audit_records
    REFERENCING NEW TABLE AS new_records FOR EACH STATEMENT EXECUTE FUNCTION omega_audit_rollup();

-- The reaches recorded before this migration, a day partition at a time, in slices of about
-- 200,000 records by a hash of the reach (folding is order-free, so any slicing gives the same
-- roll-ups; slices keep a big partition's array in bounds).
DO $$
DECLARE
    part regclass;
    slices int;
BEGIN
    FOR part, slices IN
        SELECT i.inhrelid::regclass, greatest(1, ceil(greatest(c.reltuples, 0) / 200000))::int
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_records'::regclass
    LOOP
        FOR k IN 0 .. slices - 1 LOOP
            EXECUTE format('SELECT omega_audit_fold(ARRAY(SELECT ROW(p.*)::audit_records FROM %s p
                WHERE abs(hashtext(p.reach_id)::bigint) %% %s = %s))', part, slices, k);
        END LOOP;
    END LOOP;
END $$;
