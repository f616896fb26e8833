ALTER TABLE profiles DROP COLUMN addresses;
