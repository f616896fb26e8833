DROP TABLE profiles;
DROP TABLE journey_heads;
DROP TABLE journey_versions;
