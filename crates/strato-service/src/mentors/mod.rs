//! Mentors: documents of answers, their training, answering with exact match → classifier → off-topic, the
//! feedback loop (user questions and grades), training-data CSV and follow-up suggestions.
//!
//! Answering reads one row per request (`mentor_state`: the mentor's revision and its model's active version) and
//! rebuilds the cached runtime only when either changed, so a newly trained model or a new grade is served on the
//! next request, by any process, without reloading anything per request.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;

use bytes::Bytes;
use lru::LruCache;
use parking_lot::Mutex;
use serde::Serialize;
use serde_json::json;
use strato_blob::BlobStore;
use strato_ml::entities::{self, EntityType};
use strato_ml::mentor_model::MentorModel;
use strato_ml::text::sanitize;
use strato_store::{Store, UserQuestionFilter};
use strato_types::{
    validate_name, Answer, AnswerType, ErrorCode, Grade, Media, Mentor, StratoError, UserQuestionRecord, OFF_TOPIC,
};

use crate::embedding::Embeddings;
use crate::models::Models;
use crate::{blob_storage, internal, storage, Result};

mod train;

pub use train::{PublishError, TrainMentorArgs, TrainMentorWorker};

/// The model id under which a mentor's classifier versions are stored (`:` cannot appear in user model ids).
pub fn mentor_model_id(mentor: &str) -> String {
    format!("mentor:{mentor}")
}

fn not_found(id: &str) -> StratoError {
    StratoError::new(ErrorCode::MentorNotFound, format!("mentor {id:?} not found"))
}

fn bad(message: impl Into<String>) -> StratoError {
    StratoError::new(ErrorCode::InvalidRequest, message)
}

/// Everything answering needs, rebuilt when the mentor or its model changes.
pub(crate) struct MentorRuntime {
    revision: i64,
    version: Option<i64>,
    mentor: Arc<Mentor>,
    /// Sanitised question / paraphrase / graded user question → (answer id, EXACT or PARAPHRASE).
    exact: HashMap<String, (String, AnswerType)>,
    /// Answer id → position in `mentor.answers`, built once per revision instead of per question.
    answer_index: Arc<HashMap<String, usize>>,
    model: Option<Arc<MentorModel>>,
}

type MentorCache = Mutex<LruCache<String, Arc<MentorRuntime>>>;

/// Question-answering mentors: their documents, training, answering and the feedback loop.
#[derive(Clone)]
pub struct Mentors {
    store: Store,
    blobs: BlobStore,
    embeddings: Embeddings,
    models: Models,
    cache: Arc<MentorCache>,
}

/// The answer to a user's question.
#[derive(Debug, Clone, Serialize)]
pub struct AnswerResult {
    /// The question as asked.
    pub question: String,
    /// Id of the question answered ("" for off-topic).
    pub question_id: String,
    /// Id of the answer given.
    pub answer_id: String,
    /// Transcript.
    pub answer_text: String,
    /// Markdown transcript.
    pub answer_markdown_text: String,
    /// Media by use.
    pub answer_media: AnswerMedia,
    /// External video ids.
    pub external_video_ids: serde_json::Value,
    /// Probability that the answer is right, in [0, 1]; 1 for exact matches.
    pub confidence: f64,
    /// Id of the recorded user question, for grading.
    pub feedback_id: String,
    /// Which classifier answered.
    pub classifier: String,
    /// The predicted answer no longer exists or is not answerable.
    pub answer_missing: bool,
    /// EXACT, PARAPHRASE, CLASSIFIER or OFF_TOPIC.
    pub answer_type: AnswerType,
}

/// Media of an answer by use, as MentorPal clients expect.
#[derive(Debug, Clone, Serialize, Default)]
pub struct AnswerMedia {
    /// Video for the web.
    pub web_media: Option<Media>,
    /// Video for phones.
    pub mobile_media: Option<Media>,
    /// Subtitles.
    pub vtt_media: Option<Media>,
}

/// A suggested follow-up question.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Followup {
    /// The question.
    pub question: String,
    /// Kind of entity it is about.
    #[serde(rename = "entityType")]
    pub entity_type: EntityType,
    /// The template it came from.
    pub template: String,
}

fn media_of(a: &Answer) -> AnswerMedia {
    let find = |pred: &dyn Fn(&Media) -> bool| a.media.iter().find(|m| pred(m)).cloned();
    AnswerMedia {
        web_media: find(&|m| m.media_type == "video" && m.tag == "web"),
        mobile_media: find(&|m| m.media_type == "video" && m.tag == "mobile"),
        vtt_media: find(&|m| m.media_type == "subtitles"),
    }
}

/// Checks a mentor document: ids, texts, unique answers.
fn validate(m: &Mentor) -> Result<()> {
    validate_name("mentor", &m.id)?;
    let mut seen = std::collections::HashSet::new();
    for (i, a) in m.answers.iter().enumerate() {
        if a.id.trim().is_empty() {
            return Err(bad(format!("answers[{i}].id is empty")));
        }
        if !seen.insert(a.id.as_str()) {
            return Err(bad(format!("answers[{i}].id {:?} is used twice", a.id)));
        }
        if a.question.text.trim().is_empty() && a.question.question_type == strato_types::QuestionType::Question {
            return Err(bad(format!("answers[{i}].question.text is empty")));
        }
    }
    if let Some(t) = m.off_topic_threshold {
        if !(0.0..=1.0).contains(&t) {
            return Err(bad(format!("off_topic_threshold must be a probability in [0, 1], not {t}")));
        }
    }
    Ok(())
}

fn split_pipe(s: &str) -> Vec<String> {
    s.split('|').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect()
}

impl Mentors {
    pub(crate) fn new(
        store: Store,
        blobs: BlobStore,
        embeddings: Embeddings,
        models: Models,
        cache_size: usize,
    ) -> Self {
        let cache = Mutex::new(LruCache::new(NonZeroUsize::new(cache_size.max(1)).unwrap_or(NonZeroUsize::MIN)));
        Self { store, blobs, embeddings, models, cache: Arc::new(cache) }
    }

    /// Creates or replaces a mentor.
    pub async fn put(&self, id: &str, mut mentor: Mentor) -> Result<Mentor> {
        if mentor.id.is_empty() {
            mentor.id = id.to_string();
        }
        if mentor.id != id {
            return Err(bad(format!("the body's id {:?} differs from the URL's {id:?}", mentor.id)));
        }
        validate(&mentor)?;
        let body = serde_json::to_value(&mentor).map_err(internal("encoding the mentor failed"))?;
        // The document and its classifier's (empty) model row, together.
        let mut tx = self.store.begin().await.map_err(storage("storing the mentor failed"))?;
        tx.mentors().put(id, &body).await.map_err(storage("storing the mentor failed"))?;
        tx.models()
            .ensure(&mentor_model_id(id), &json!({"mentor": id}))
            .await
            .map_err(storage("storing the mentor failed"))?;
        tx.commit().await.map_err(storage("storing the mentor failed"))?;
        Ok(mentor)
    }

    /// A mentor.
    pub async fn get(&self, id: &str) -> Result<Mentor> {
        let row = self.store.mentors().get(id).await.map_err(storage("reading the mentor failed"))?;
        let row = row.ok_or_else(|| not_found(id))?;
        serde_json::from_value(row.body).map_err(internal("the stored mentor is unreadable"))
    }

    /// Deletes a mentor, its user questions and its classifier versions.
    pub async fn delete(&self, id: &str) -> Result<()> {
        if !self.store.mentors().delete(id).await.map_err(storage("deleting the mentor failed"))? {
            return Err(not_found(id));
        }
        match self.models.delete(&mentor_model_id(id)).await {
            Ok(_) => {}
            Err(e) if e.code == ErrorCode::ModelNotFound => {}
            Err(e) => return Err(e),
        }
        self.cache.lock().pop(id);
        Ok(())
    }

    /// Merges a CSV (`id,question,paraphrases,answer,topic`; `|` joins lists) into a mentor, creating it if needed:
    /// rows update the answer with the same id or add a new one.
    pub async fn import_csv(&self, id: &str, csv_bytes: Bytes) -> Result<Mentor> {
        validate_name("mentor", id)?;
        let mut mentor = match self.get(id).await {
            Ok(m) => m,
            Err(e) if e.code == ErrorCode::MentorNotFound => Mentor {
                id: id.to_string(),
                name: String::new(),
                mentor_type: Default::default(),
                answers: Vec::new(),
                off_topic_threshold: None,
                thumbnail: None,
                virtual_background_url: None,
            },
            Err(e) => return Err(e),
        };
        let mut reader = csv::ReaderBuilder::new().from_reader(&csv_bytes[..]);
        let headers =
            reader.headers().map_err(|e| StratoError::new(ErrorCode::InvalidDataset, format!("line 1: {e}")))?.clone();
        let col = |name: &str| headers.iter().position(|h| h.trim().eq_ignore_ascii_case(name));
        let (Some(c_id), Some(c_q)) = (col("id"), col("question")) else {
            return Err(StratoError::new(
                ErrorCode::InvalidDataset,
                "line 1: the header must be id,question,paraphrases,answer,topic",
            ));
        };
        let (c_p, c_a, c_t) = (col("paraphrases"), col("answer"), col("topic").or_else(|| col("topics")));
        let index: HashMap<String, usize> = mentor.answers.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
        let mut updates: Vec<(Option<usize>, Answer)> = Vec::new();
        for rec in reader.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map(|p| p.line()).unwrap_or(0);
                StratoError::new(ErrorCode::InvalidDataset, format!("line {line}: {e}"))
            })?;
            let line = rec.position().map(|p| p.line()).unwrap_or(0);
            let get = |c: Option<usize>| c.and_then(|c| rec.get(c)).unwrap_or("").to_string();
            let (aid, question) = (get(Some(c_id)), get(Some(c_q)));
            if aid.trim().is_empty() || question.trim().is_empty() {
                return Err(StratoError::new(
                    ErrorCode::InvalidDataset,
                    format!("line {line}: id and question are required"),
                ));
            }
            let existing = index.get(&aid).copied();
            let mut a = existing.map(|i| mentor.answers[i].clone()).unwrap_or_else(|| Answer {
                id: aid.clone(),
                question: strato_types::Question {
                    id: format!("q-{aid}"),
                    text: String::new(),
                    paraphrases: Vec::new(),
                    topics: Vec::new(),
                    question_type: Default::default(),
                    name: String::new(),
                    category: None,
                },
                transcript: String::new(),
                markdown: String::new(),
                status: Default::default(),
                media: Vec::new(),
                external_video_ids: json!({}),
                category: None,
            });
            a.question.text = question;
            if c_p.is_some() {
                a.question.paraphrases = split_pipe(&get(c_p));
            }
            if c_a.is_some() {
                a.transcript = get(c_a);
            }
            if c_t.is_some() {
                a.question.topics = split_pipe(&get(c_t));
            }
            updates.push((existing, a));
        }
        for (at, a) in updates {
            match at {
                Some(i) => mentor.answers[i] = a,
                None => mentor.answers.push(a),
            }
        }
        self.put(id, mentor).await
    }

    /// The mentor's training data as CSV: one row per answerable question.
    pub async fn training_csv(&self, id: &str) -> Result<String> {
        let mentor = self.get(id).await?;
        let mut w = csv::Writer::from_writer(Vec::new());
        let err = internal("writing CSV failed");
        w.write_record(["id", "question", "paraphrases", "answer", "topic"]).map_err(internal("writing CSV failed"))?;
        for a in mentor.answers.iter().filter(|a| a.is_training_question()) {
            w.write_record([
                a.id.as_str(),
                a.question.text.as_str(),
                &a.question.paraphrases.join("|"),
                a.transcript.as_str(),
                &a.question.topics.join("|"),
            ])
            .map_err(internal("writing CSV failed"))?;
        }
        String::from_utf8(w.into_inner().map_err(|e| err(e.to_string()))?).map_err(internal("CSV is not UTF-8"))
    }

    /// The cached runtime of a mentor, rebuilt when its revision or model version changed.
    async fn mentor_runtime(&self, id: &str) -> Result<Arc<MentorRuntime>> {
        let model_id = mentor_model_id(id);
        let (revision, version) = self
            .store
            .mentors()
            .state(id, &model_id)
            .await
            .map_err(internal("reading the mentor failed"))?
            .ok_or_else(|| not_found(id))?;
        let cached = self.cache.lock().get(id).cloned();
        if let Some(rt) = &cached {
            if rt.revision == revision && rt.version == version {
                return Ok(rt.clone());
            }
        }
        // Reuse what did not change.
        let (mentor, exact, answer_index) = match &cached {
            Some(rt) if rt.revision == revision => (rt.mentor.clone(), rt.exact.clone(), rt.answer_index.clone()),
            _ => {
                let mentor = Arc::new(self.get(id).await?);
                let graded =
                    self.store.mentors().graded_questions(id).await.map_err(storage("reading grades failed"))?;
                let index = mentor.answers.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
                (mentor.clone(), exact_index(&mentor, &graded), Arc::new(index))
            }
        };
        let model = match (&cached, version) {
            (Some(rt), Some(v)) if rt.version == Some(v) => rt.model.clone(),
            (_, Some(v)) => Some(self.load_mentor_model(&model_id, v).await?),
            (_, None) => None,
        };
        let rt = Arc::new(MentorRuntime { revision, version, mentor, exact, answer_index, model });
        self.cache.lock().put(id.to_string(), rt.clone());
        Ok(rt)
    }

    async fn load_mentor_model(&self, model_id: &str, version: i64) -> Result<Arc<MentorModel>> {
        let rec = self
            .store
            .models()
            .version(model_id, version)
            .await
            .map_err(internal("reading the version failed"))?
            .ok_or_else(|| StratoError::new(ErrorCode::MentorNotTrained, "the mentor's model version is gone"))?;
        let bytes = self.blobs.get(&rec.blob_key).await.map_err(blob_storage("reading the mentor model failed"))?;
        let model = tokio::task::spawn_blocking(move || MentorModel::from_bytes(&bytes))
            .await
            .map_err(internal("loading task failed"))?
            .map_err(internal("the mentor model is unreadable"))?;
        Ok(Arc::new(model))
    }

    /// Answers a user's question and records it for feedback.
    pub async fn answer(&self, id: &str, query: &str, chat_session_id: Option<String>) -> Result<AnswerResult> {
        let rt = self.mentor_runtime(id).await?;
        let Some(model) = rt.model.clone() else {
            return Err(StratoError::new(ErrorCode::MentorNotTrained, format!("No models found for mentor {id}.")));
        };
        // 1. Exact match on the sanitised text.
        let (mut chosen, mut answer_type, mut confidence) = (None, AnswerType::Classifier, 0.0);
        if let Some((aid, t)) = rt.exact.get(&sanitize(query)) {
            chosen = Some(aid.clone());
            answer_type = *t;
            confidence = 1.0;
        }
        // 2. Otherwise the classifier, 3. with its off-topic rule.
        let mut off_topic = false;
        if chosen.is_none() {
            let q = self.embeddings.embed(vec![query.to_string()]).await?.pop().unwrap_or_default();
            let d = model.decide(&q, rt.mentor.off_topic_threshold);
            confidence = d.confidence as f64;
            off_topic = d.off_topic;
            chosen = Some(d.label);
        }
        // 4. A predicted answer that is gone or not answerable gets the off-topic reply.
        let picked = chosen
            .as_deref()
            .and_then(|aid| rt.answer_index.get(aid))
            .map(|&i| &rt.mentor.answers[i])
            .filter(|a| a.is_answerable());
        let answer_missing = !off_topic && picked.is_none();
        let feedback_id = uuid::Uuid::now_v7().to_string();
        let result = match picked.filter(|_| !off_topic) {
            Some(a) => AnswerResult {
                question: query.to_string(),
                question_id: a.question.id.clone(),
                answer_id: a.id.clone(),
                answer_text: a.transcript.clone(),
                answer_markdown_text: a.markdown.clone(),
                answer_media: media_of(a),
                external_video_ids: a.external_video_ids.clone(),
                confidence,
                feedback_id: feedback_id.clone(),
                classifier: "strato-lr-knn-v2".into(),
                answer_missing,
                answer_type,
            },
            None => off_topic_reply(&rt.mentor, query, confidence, feedback_id.clone(), answer_missing),
        };
        // Recording must not slow the answer down: it runs after the reply is built, off the request path.
        let record = UserQuestionRecord {
            id: feedback_id,
            mentor_id: id.to_string(),
            text: query.to_string(),
            chat_session_id,
            answer_id: result.answer_id.clone(),
            answer_type: result.answer_type,
            confidence: result.confidence,
            graded_answer_id: None,
            graded_off_topic: false,
            graded_at: None,
            created_at: chrono::Utc::now(),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.mentors().insert_user_question(&record).await {
                tracing::warn!(error = %e, "could not record a user question");
            }
        });
        Ok(result)
    }

    /// A mentor's user questions.
    pub async fn user_questions(&self, id: &str, filter: &UserQuestionFilter) -> Result<Vec<UserQuestionRecord>> {
        self.store
            .mentors()
            .state(id, &mentor_model_id(id))
            .await
            .map_err(internal("reading the mentor failed"))?
            .ok_or_else(|| not_found(id))?;
        self.store.mentors().user_questions(id, filter).await.map_err(storage("listing user questions failed"))
    }

    /// Grades a user question; used for exact matching at once and as training data at the next training.
    pub async fn grade(&self, feedback_id: &str, grade: Grade) -> Result<UserQuestionRecord> {
        let q = self.user_question(feedback_id).await?;
        if let Grade::Answer(aid) = &grade {
            let mentor = self.get(&q.mentor_id).await?;
            if !mentor.answers.iter().any(|a| &a.id == aid) {
                return Err(bad(format!("mentor {:?} has no answer {aid:?}", q.mentor_id)));
            }
        }
        self.store.mentors().grade(feedback_id, &grade).await.map_err(storage("grading failed"))?.ok_or_else(|| {
            StratoError::new(ErrorCode::FeedbackNotFound, format!("user question {feedback_id:?} not found"))
        })
    }

    /// One user question, by its feedback id.
    pub async fn user_question(&self, feedback_id: &str) -> Result<UserQuestionRecord> {
        self.store
            .mentors()
            .user_question(feedback_id)
            .await
            .map_err(internal("reading the user question failed"))?
            .ok_or_else(|| {
                StratoError::new(ErrorCode::FeedbackNotFound, format!("user question {feedback_id:?} not found"))
            })
    }

    /// Follow-up questions for a category's answers, most relevant first.
    pub async fn followups(&self, id: &str, category: &str) -> Result<Vec<Followup>> {
        let mentor = self.get(id).await?;
        // 1. Entities across the category's answers, counted.
        let mut counts: BTreeMap<(String, EntityType), (usize, usize)> = BTreeMap::new();
        let mut order = 0;
        for a in mentor.answers.iter().filter(|a| a.is_answerable() && a.category() == Some(category)) {
            for e in entities::extract(&a.transcript) {
                order += 1;
                let entry = counts.entry((e.text, e.kind)).or_insert((0, order));
                entry.0 += 1;
            }
        }
        // 2. Drop the mentor's own name.
        let name_words: Vec<String> = mentor.name.split_whitespace().map(str::to_lowercase).collect();
        let mut candidates: Vec<(String, EntityType, usize, usize)> = counts
            .into_iter()
            .filter(|((text, _), _)| {
                let lower = text.to_lowercase();
                !lower.split_whitespace().all(|w| name_words.contains(&w.to_string()))
            })
            .map(|((text, kind), (n, first))| (text, kind, n, first))
            .collect();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        // 3. Drop questions the mentor already answers (cosine > 0.92 to an existing question).
        let questions: Vec<String> =
            candidates.iter().map(|(text, kind, _, _)| kind.template().replace("$entity", text)).collect();
        let existing: Vec<String> = mentor
            .answers
            .iter()
            .filter(|a| a.is_training_question())
            .flat_map(|a| std::iter::once(a.question.text.clone()).chain(a.question.paraphrases.iter().cloned()))
            .collect();
        let mut all = questions.clone();
        all.extend(existing.iter().cloned());
        let emb = self.embeddings.embed(all).await?;
        let (cand_emb, known_emb) = emb.split_at(questions.len());
        let mut keep = Vec::new();
        for (i, c) in candidates.drain(..).enumerate() {
            let dup = known_emb.iter().any(|k| k.iter().zip(&cand_emb[i]).map(|(a, b)| a * b).sum::<f32>() > 0.92);
            if !dup {
                keep.push((questions[i].clone(), c));
            }
        }
        // 4. Rank: entities mentioned more often first, then by first mention.
        keep.sort_by(|a, b| b.1 .2.cmp(&a.1 .2).then(a.1 .3.cmp(&b.1 .3)));
        Ok(keep
            .into_iter()
            .map(|(question, (_, kind, _, _))| Followup {
                question,
                entity_type: kind,
                template: kind.template().into(),
            })
            .collect())
    }
}

fn exact_index(mentor: &Mentor, graded: &[UserQuestionRecord]) -> HashMap<String, (String, AnswerType)> {
    let mut m = HashMap::new();
    for a in mentor.answers.iter().filter(|a| a.is_training_question()) {
        for p in &a.question.paraphrases {
            m.insert(sanitize(p), (a.id.clone(), AnswerType::Paraphrase));
        }
    }
    for g in graded {
        if let Some(aid) = &g.graded_answer_id {
            m.entry(sanitize(&g.text)).or_insert((aid.clone(), AnswerType::Paraphrase));
        }
    }
    // Questions last: an exact question match wins over a paraphrase or grade of the same text.
    for a in mentor.answers.iter().filter(|a| a.is_training_question()) {
        m.insert(sanitize(&a.question.text), (a.id.clone(), AnswerType::Exact));
    }
    m.remove("");
    m
}

fn off_topic_reply(mentor: &Mentor, query: &str, confidence: f64, feedback_id: String, missing: bool) -> AnswerResult {
    let replies: Vec<&Answer> = mentor.answers.iter().filter(|a| a.is_off_topic_reply()).collect();
    let pick = (!replies.is_empty()).then(|| replies[rand::random_range(0..replies.len())]);
    AnswerResult {
        question: query.to_string(),
        question_id: String::new(),
        answer_id: pick.map(|a| a.id.clone()).unwrap_or_else(|| OFF_TOPIC.into()),
        answer_text: pick.map(|a| a.transcript.clone()).unwrap_or_else(|| OFF_TOPIC.into()),
        answer_markdown_text: pick.map(|a| a.markdown.clone()).unwrap_or_default(),
        answer_media: pick.map(media_of).unwrap_or_default(),
        external_video_ids: pick.map(|a| a.external_video_ids.clone()).unwrap_or_else(|| json!({})),
        confidence,
        feedback_id,
        classifier: "strato-lr-knn-v2".into(),
        answer_missing: missing,
        answer_type: AnswerType::OffTopic,
    }
}
