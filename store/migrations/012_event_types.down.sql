DROP TABLE IF EXISTS event_type_heads;
DROP TABLE IF EXISTS event_type_versions;
