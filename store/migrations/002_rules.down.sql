DROP TABLE rule_heads;
DROP TABLE rule_versions;
