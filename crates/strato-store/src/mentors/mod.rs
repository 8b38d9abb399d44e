//! Mentors (the whole mentor document as JSON, with a revision), the questions users asked them, and grades.
//! The revision increases on every change that affects answering (edits, grades), so a process can tell in one
//! indexed read whether its cached copy is stale.

#[cfg(test)]
mod tests;

use strato_types::{AnswerType, Grade, Timestamp, UserQuestionRecord};

use crate::db::{
    exec, fetch_all, fetch_optional, in_tx, json, now_ms, scalar, scalar_all, sql, sql_for_update, Columns, Conn,
};
use crate::{Result, Store, StoreError, Tx};

/// A stored mentor document.
#[derive(Debug, Clone)]
pub struct MentorRow {
    /// The mentor JSON.
    pub body: serde_json::Value,
    /// Increases on every change that affects answering.
    pub revision: i64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// Filter for user-question listings.
#[derive(Debug, Default, Clone)]
pub struct UserQuestionFilter {
    /// Only this answer type.
    pub answer_type: Option<AnswerType>,
    /// Only questions not graded yet.
    pub ungraded: bool,
    /// At most this many, newest first.
    pub limit: Option<i64>,
}

fn mentor_from_row(r: &impl Columns) -> Result<MentorRow> {
    Ok(MentorRow {
        body: r.json("body")?,
        revision: r.i64("revision")?,
        created_at: r.ts("created_at")?,
        updated_at: r.ts("updated_at")?,
    })
}

fn user_question_from_row(r: &impl Columns) -> Result<UserQuestionRecord> {
    let t = r.text("answer_type")?;
    Ok(UserQuestionRecord {
        id: r.text("id")?,
        mentor_id: r.text("mentor_id")?,
        text: r.text("text")?,
        chat_session_id: r.opt_text("chat_session_id")?,
        answer_id: r.opt_text("answer_id")?.unwrap_or_default(),
        answer_type: AnswerType::parse(&t).ok_or_else(|| StoreError::Corrupt(format!("answer type {t:?}")))?,
        confidence: r.f64("confidence")?,
        graded_answer_id: r.opt_text("graded_answer_id")?,
        graded_off_topic: r.bool("graded_off_topic")?,
        graded_at: r.opt_ts("graded_at")?,
        created_at: r.ts("created_at")?,
    })
}

fn state_from_row(r: &impl Columns) -> Result<(i64, Option<i64>)> {
    Ok((r.i64("revision")?, r.opt_i64("active")?))
}

/// Mentors on the store's pools.
pub struct Mentors<'s> {
    pub(crate) store: &'s Store,
}

impl Mentors<'_> {
    /// Creates or replaces a mentor document; returns its new revision.
    pub async fn put(&self, id: &str, body: &serde_json::Value) -> Result<i64> {
        put(&mut self.store.inner.db.write().await?.conn(), id, body).await
    }

    /// One mentor.
    pub async fn get(&self, id: &str) -> Result<Option<MentorRow>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(&mut c.conn(), mentor_from_row, sql!("SELECT * FROM mentors WHERE id = $1"), id))
    }

    /// Ids of all mentors.
    pub async fn ids(&self) -> Result<Vec<String>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(scalar_all!(&mut c.conn(), String, sql!("SELECT id FROM mentors ORDER BY id")))
    }

    /// Deletes a mentor and its user questions; returns whether it existed.
    pub async fn delete(&self, id: &str) -> Result<bool> {
        Ok(in_tx!(self.store.inner.db, |c| delete(c, id)))
    }

    /// The mentor's revision and the active version of model `model_id`, in one read (the per-request staleness
    /// check); `None` when the mentor does not exist.
    pub async fn state(&self, id: &str, model_id: &str) -> Result<Option<(i64, Option<i64>)>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            state_from_row,
            sql!(
                "SELECT m.revision AS revision, (SELECT active_version FROM models WHERE id = $2) AS active \
                 FROM mentors m WHERE m.id = $1"
            ),
            id,
            model_id
        ))
    }

    /// Records a question a user asked.
    pub async fn insert_user_question(&self, q: &UserQuestionRecord) -> Result<()> {
        let c = &mut self.store.inner.db.write().await?;
        exec!(
            &mut c.conn(),
            sql!(
                "INSERT INTO user_questions (id, mentor_id, text, chat_session_id, answer_id, answer_type, \
                 confidence, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &q.id,
            &q.mentor_id,
            &q.text,
            &q.chat_session_id,
            &q.answer_id,
            q.answer_type.as_str(),
            q.confidence,
            q.created_at.timestamp_millis()
        );
        Ok(())
    }

    /// A mentor's user questions, newest first.
    pub async fn user_questions(&self, mentor_id: &str, f: &UserQuestionFilter) -> Result<Vec<UserQuestionRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(
            &mut c.conn(),
            user_question_from_row,
            sql!(
                "SELECT * FROM user_questions WHERE mentor_id = $1 AND (CAST($2 AS TEXT) IS NULL OR answer_type = $2) \
                 AND (NOT $3 OR (graded_answer_id IS NULL AND NOT graded_off_topic)) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            mentor_id,
            f.answer_type.map(AnswerType::as_str),
            f.ungraded,
            f.limit.unwrap_or(1000)
        ))
    }

    /// One user question.
    pub async fn user_question(&self, id: &str) -> Result<Option<UserQuestionRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_optional!(
            &mut c.conn(),
            user_question_from_row,
            sql!("SELECT * FROM user_questions WHERE id = $1"),
            id
        ))
    }

    /// Grades a user question and bumps its mentor's revision, in one transaction; returns the updated record.
    pub async fn grade(&self, id: &str, grade: &Grade) -> Result<Option<UserQuestionRecord>> {
        Ok(in_tx!(self.store.inner.db, |c| grade_question(c, id, grade)))
    }

    /// A mentor's graded user questions.
    pub async fn graded_questions(&self, mentor_id: &str) -> Result<Vec<UserQuestionRecord>> {
        let c = &mut self.store.inner.db.read().await?;
        Ok(fetch_all!(
            &mut c.conn(),
            user_question_from_row,
            sql!(
                "SELECT * FROM user_questions WHERE mentor_id = $1 \
                 AND (graded_answer_id IS NOT NULL OR graded_off_topic) ORDER BY created_at"
            ),
            mentor_id
        ))
    }
}

/// Mentors inside a caller's transaction.
pub struct TxMentors<'t> {
    pub(crate) tx: &'t mut Tx,
}

impl TxMentors<'_> {
    /// One mentor, locked until the transaction ends (PostgreSQL; SQLite's write transaction holds the database),
    /// so a read-modify-write of one answer cannot lose another writer's change.
    pub async fn get_for_update(&mut self, id: &str) -> Result<Option<MentorRow>> {
        Ok(fetch_optional!(
            &mut self.tx.conn.conn(),
            mentor_from_row,
            sql_for_update!("SELECT * FROM mentors WHERE id = $1"),
            id
        ))
    }

    /// Creates or replaces a mentor document; returns its new revision.
    pub async fn put(&mut self, id: &str, body: &serde_json::Value) -> Result<i64> {
        put(&mut self.tx.conn.conn(), id, body).await
    }
}

/// The revision is a timestamp-ordered counter: strictly increasing even across delete and re-create.
async fn put(c: &mut Conn<'_>, id: &str, body: &serde_json::Value) -> Result<i64> {
    Ok(scalar!(
        c,
        i64,
        sql!(
            "INSERT INTO mentors (id, body, revision, created_at, updated_at) VALUES ($1, $2, $3, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, \
               revision = CASE WHEN mentors.revision + 1 > excluded.revision THEN mentors.revision + 1 \
                          ELSE excluded.revision END, \
               updated_at = excluded.updated_at RETURNING revision"
        ),
        id,
        json(body),
        now_ms()
    ))
}

async fn delete(c: &mut Conn<'_>, id: &str) -> Result<bool> {
    exec!(c, sql!("DELETE FROM user_questions WHERE mentor_id = $1"), id);
    Ok(exec!(c, sql!("DELETE FROM mentors WHERE id = $1"), id) == 1)
}

async fn grade_question(c: &mut Conn<'_>, id: &str, grade: &Grade) -> Result<Option<UserQuestionRecord>> {
    let now = now_ms();
    let (answer, off_topic) = match grade {
        Grade::Answer(a) => (Some(a.as_str()), false),
        Grade::OffTopic => (None, true),
    };
    let Some(rec) = fetch_optional!(
        c,
        user_question_from_row,
        sql!(
            "UPDATE user_questions SET graded_answer_id = $1, graded_off_topic = $2, graded_at = $3 WHERE id = $4 \
             RETURNING *"
        ),
        answer,
        off_topic,
        now,
        id
    ) else {
        return Ok(None);
    };
    exec!(c, sql!("UPDATE mentors SET revision = revision + 1, updated_at = $1 WHERE id = $2"), now, &rec.mentor_id);
    Ok(Some(rec))
}
