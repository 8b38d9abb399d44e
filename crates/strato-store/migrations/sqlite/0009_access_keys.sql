-- SigV4 access keys are API keys with an AWS-style key id and a secret sealed (encrypted) under the server's
-- secrets key: verifying a SigV4 signature needs the secret itself, so a hash cannot do. Keys made before have
-- neither.
ALTER TABLE api_keys ADD COLUMN access_key_id TEXT;
ALTER TABLE api_keys ADD COLUMN sealed_secret TEXT;
CREATE UNIQUE INDEX api_keys_access_key_id ON api_keys (access_key_id) WHERE access_key_id IS NOT NULL;
