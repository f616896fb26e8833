DROP INDEX IF EXISTS audit_records_holdout_user;
