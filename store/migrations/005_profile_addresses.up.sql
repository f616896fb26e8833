-- Where channels reach a user: push tokens per device, phone (E.164), email.
ALTER TABLE profiles ADD COLUMN addresses jsonb NOT NULL DEFAULT '{}';
