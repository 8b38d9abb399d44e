-- Documents: small JSON records of capabilities that need no columns of their own (functions, their versions and
-- aliases, ...), keyed by kind and id, with a revision for compare-and-swap updates.
CREATE TABLE documents (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
