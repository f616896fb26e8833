-- A split's holdout group is the control its paths are compared with: a goal after a holdout is
-- attributed to it as to a send (audit.Store.Attribute), found by user and time like the sends.
CREATE INDEX audit_records_holdout_user ON audit_records (user_id, at) WHERE kind = 'split' AND outcome = 'holdout';
