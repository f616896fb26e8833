-- Consent per channel and category: "push", "sms:marketing", "*:marketing" -> granted or refused.
ALTER TABLE profiles ADD COLUMN consent jsonb NOT NULL DEFAULT '{}';
