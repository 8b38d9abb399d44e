-- Mentors (the whole mentor document as JSON) and the questions users asked them.
-- revision increases on every change that affects answering (mentor edits, grades), so a process can tell in one
-- indexed read whether its cached copy is stale.

CREATE TABLE mentors (
    id          TEXT PRIMARY KEY,
    body        JSONB NOT NULL,
    revision    BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE user_questions (
    id               TEXT PRIMARY KEY,  -- the feedback_id
    mentor_id        TEXT NOT NULL,
    text             TEXT NOT NULL,
    chat_session_id  TEXT,
    answer_id        TEXT,              -- the answer given ('' for off-topic)
    answer_type      TEXT NOT NULL,     -- EXACT, PARAPHRASE, CLASSIFIER, OFF_TOPIC
    confidence       DOUBLE PRECISION NOT NULL,
    graded_answer_id TEXT,              -- a grader's correct answer
    graded_off_topic BOOLEAN NOT NULL DEFAULT FALSE,
    graded_at        BIGINT,
    created_at       BIGINT NOT NULL
);

CREATE INDEX user_questions_mentor ON user_questions (mentor_id, created_at);
