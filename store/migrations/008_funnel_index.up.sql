-- Funnels select the reaches matched in a time range for a rule or a journey.
CREATE INDEX audit_records_matched_rule ON audit_records (rule_id, at) WHERE kind = 'matched';
CREATE INDEX audit_records_matched_journey ON audit_records (journey_id, at) WHERE kind = 'matched';
