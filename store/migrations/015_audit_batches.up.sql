-- A workflow task's audit records are written once, whichever attempt of the task writes them. A
-- task whose process died after its records were written runs again elsewhere and writes them
-- again at its own time; (reach_id, step, kind, at) does not catch those, and a partitioned
-- table's unique indexes must hold the time. A batch (a run and the number of its flush) keeps how
-- many of its records are in: an attempt writes only those past that (the same history gives the
-- same records in the same order; a later attempt may have more).
CREATE TABLE audit_batches (
    batch      text        PRIMARY KEY,
    written    int         NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
