DROP TRIGGER audit_records_rollup ON audit_records;
DROP FUNCTION omega_audit_rollup();
DROP FUNCTION omega_audit_fold(audit_records[]);
DROP TABLE audit_reaches;
