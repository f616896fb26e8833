DROP TABLE audit_batches;
