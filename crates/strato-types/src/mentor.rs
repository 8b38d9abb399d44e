//! Mentors: sets of recorded answers to questions (with paraphrases) that users ask in chat.
//!
//! Field names and enum spellings follow MentorPal's data model so its clients and exports work unchanged.

use serde::{Deserialize, Serialize};

/// VIDEO or CHAT mentor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MentorType {
    /// Answers are videos.
    #[default]
    Video,
    /// Answers are text.
    Chat,
}

/// Whether an answer can be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnswerStatus {
    /// Recorded and usable.
    #[default]
    Complete,
    /// Not finished: not answerable.
    Incomplete,
    /// Skipped by the mentor: not answerable.
    Skip,
    /// No status set: answerable.
    None,
}

/// A real question, or an utterance (`_OFF_TOPIC_`, `_IDLE_`, `_INTRO_`, …) the mentor says on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QuestionType {
    /// A question users may ask: training data.
    #[default]
    Question,
    /// An utterance: never training data.
    Utterance,
}

/// A question with its paraphrases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Question {
    /// Question id.
    pub id: String,
    /// The question.
    pub text: String,
    /// Other ways to ask it.
    #[serde(default)]
    pub paraphrases: Vec<String>,
    /// Topics.
    #[serde(default)]
    pub topics: Vec<String>,
    /// QUESTION or UTTERANCE.
    #[serde(default, rename = "type")]
    pub question_type: QuestionType,
    /// Utterance name such as `_OFF_TOPIC_`; empty for questions.
    #[serde(default)]
    pub name: String,
    /// Category, for follow-up suggestions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// A media file of an answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Media {
    /// `video`, `subtitles`, …
    #[serde(rename = "type", default)]
    pub media_type: String,
    /// `web`, `mobile`, `en`, …
    #[serde(default)]
    pub tag: String,
    /// Where it is.
    #[serde(default)]
    pub url: String,
    /// Transparent-background variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_video_url: Option<String>,
    /// Seconds (videos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    /// SHA-1 (hex) of the original upload it was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// ffprobe's view of the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// The subtitles' text (subtitles).
    #[serde(default, rename = "vttText", skip_serializing_if = "Option::is_none")]
    pub vtt_text: Option<String>,
}

/// One recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Answer {
    /// Answer id.
    pub id: String,
    /// The question it answers.
    pub question: Question,
    /// What the mentor says.
    #[serde(default)]
    pub transcript: String,
    /// Markdown version of the transcript.
    #[serde(default)]
    pub markdown: String,
    /// Status.
    #[serde(default)]
    pub status: AnswerStatus,
    /// Media files.
    #[serde(default)]
    pub media: Vec<Media>,
    /// Ids of the answer's video on external platforms.
    #[serde(default = "empty_object")]
    pub external_video_ids: serde_json::Value,
    /// Category, for follow-up suggestions (falls back to the question's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl Answer {
    /// Whether this answer may be given to a user.
    pub fn is_answerable(&self) -> bool {
        !matches!(self.status, AnswerStatus::Incomplete | AnswerStatus::Skip)
    }

    /// Whether its question (and paraphrases) are classifier training data.
    pub fn is_training_question(&self) -> bool {
        self.is_answerable() && self.question.question_type == QuestionType::Question
    }

    /// Whether this is one of the mentor's off-topic replies.
    pub fn is_off_topic_reply(&self) -> bool {
        self.question.question_type == QuestionType::Utterance
            && self.question.name == OFF_TOPIC
            && self.is_answerable()
    }

    /// The answer's category, else its question's.
    pub fn category(&self) -> Option<&str> {
        self.category.as_deref().or(self.question.category.as_deref())
    }
}

/// Name of the off-topic utterance.
pub const OFF_TOPIC: &str = "_OFF_TOPIC_";

/// A mentor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mentor {
    /// Mentor id.
    pub id: String,
    /// Display name (also dropped from follow-up suggestions).
    #[serde(default)]
    pub name: String,
    /// VIDEO or CHAT.
    #[serde(default, rename = "type")]
    pub mentor_type: MentorType,
    /// Answers.
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// Overrides the learned off-topic threshold (a probability in [0, 1]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_topic_threshold: Option<f64>,
    /// The mentor's picture (`POST /upload/thumbnail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    /// The virtual background behind the mentor's videos (`POST /upload/vbg`).
    #[serde(default, rename = "virtualBackgroundUrl", skip_serializing_if = "Option::is_none")]
    pub virtual_background_url: Option<String>,
}

/// How an answer was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AnswerType {
    /// The query equals a question.
    Exact,
    /// The query equals a paraphrase or a graded user question.
    Paraphrase,
    /// The classifier chose it.
    Classifier,
    /// Off-topic: the reply is an off-topic utterance.
    OffTopic,
}

impl AnswerType {
    /// Stored / wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "EXACT",
            Self::Paraphrase => "PARAPHRASE",
            Self::Classifier => "CLASSIFIER",
            Self::OffTopic => "OFF_TOPIC",
        }
    }

    /// Parses the stored / wire form.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "EXACT" => Self::Exact,
            "PARAPHRASE" => Self::Paraphrase,
            "CLASSIFIER" => Self::Classifier,
            "OFF_TOPIC" => Self::OffTopic,
            _ => return None,
        })
    }
}

/// A question a user asked a mentor, with the answer given and, once graded, the right one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UserQuestionRecord {
    /// The feedback id.
    pub id: String,
    /// Mentor asked.
    pub mentor_id: String,
    /// What the user typed.
    pub text: String,
    /// Chat session.
    pub chat_session_id: Option<String>,
    /// Answer given (empty for off-topic).
    pub answer_id: String,
    /// How it was chosen.
    pub answer_type: AnswerType,
    /// Confidence of the answer given.
    pub confidence: f64,
    /// A grader's correct answer.
    pub graded_answer_id: Option<String>,
    /// A grader marked it off-topic.
    pub graded_off_topic: bool,
    /// When it was graded.
    pub graded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When it was asked.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A grade for a user question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grade {
    /// This answer was the right one.
    Answer(String),
    /// The question was off-topic.
    OffTopic,
}
