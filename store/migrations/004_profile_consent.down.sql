ALTER TABLE profiles DROP COLUMN consent;
