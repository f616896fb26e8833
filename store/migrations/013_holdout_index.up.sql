-- The controls (a split's holdout group, the global control group's held-out reaches) convert like
-- sends (audit.Store.Attribute): they are found by user and time like the sends.
CREATE INDEX audit_records_holdout_user ON audit_records (user_id, at)
    WHERE (kind = 'split' AND outcome = 'holdout') OR kind = 'held_out';
