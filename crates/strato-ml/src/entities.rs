//! A rule- and lexicon-based entity extractor for follow-up question suggestions.
//!
//! It finds people, organisations, acronyms, places and family words in answer transcripts. It favours precision over
//! recall: a suggested follow-up that makes no sense is worse than a missing one. Measured on the labelled fixture
//! in `tests/data/entities_fixture.json` (precision is asserted by a test).

use std::collections::HashSet;
use std::sync::OnceLock;

/// What kind of thing an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntityType {
    /// A named person.
    Person,
    /// A named organisation (school, company, military branch…).
    Organization,
    /// An all-caps abbreviation.
    Acronym,
    /// A named place.
    Place,
    /// A family member ("my mom").
    Family,
}

impl EntityType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Organization => "organization",
            Self::Acronym => "acronym",
            Self::Place => "place",
            Self::Family => "family",
        }
    }

    /// The follow-up question template; `$entity` is replaced by the entity text.
    pub fn template(self) -> &'static str {
        match self {
            Self::Person | Self::Organization => "Can you tell me more about $entity?",
            Self::Place => "What was $entity like?",
            Self::Acronym => "What is $entity?",
            Self::Family => "Can you tell me more about your $entity?",
        }
    }
}

/// An entity found in a text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entity {
    /// Surface text ("Los Angeles", "USC", "mom").
    pub text: String,
    /// Kind.
    pub kind: EntityType,
}

const FAMILY: &[&str] = &[
    "mom",
    "mother",
    "dad",
    "father",
    "parents",
    "brother",
    "brothers",
    "sister",
    "sisters",
    "wife",
    "husband",
    "son",
    "sons",
    "daughter",
    "daughters",
    "grandmother",
    "grandfather",
    "grandma",
    "grandpa",
    "grandparents",
    "uncle",
    "aunt",
    "cousin",
    "cousins",
    "kids",
    "children",
    "family",
    "stepfather",
    "stepmother",
    "fiance",
    "fiancee",
    "siblings",
    "twin",
    "niece",
    "nephew",
];

const PLACES: &[&str] = &[
    // Countries and regions.
    "afghanistan",
    "africa",
    "america",
    "argentina",
    "asia",
    "australia",
    "austria",
    "belgium",
    "brazil",
    "canada",
    "chile",
    "china",
    "colombia",
    "cuba",
    "egypt",
    "england",
    "europe",
    "france",
    "germany",
    "greece",
    "haiti",
    "india",
    "indonesia",
    "iran",
    "iraq",
    "ireland",
    "israel",
    "italy",
    "japan",
    "jordan",
    "korea",
    "kuwait",
    "lebanon",
    "mexico",
    "netherlands",
    "nigeria",
    "norway",
    "pakistan",
    "peru",
    "philippines",
    "poland",
    "portugal",
    "russia",
    "scotland",
    "somalia",
    "spain",
    "sweden",
    "switzerland",
    "syria",
    "taiwan",
    "thailand",
    "turkey",
    "ukraine",
    "vietnam",
    "wales",
    "united states",
    "united kingdom",
    "south korea",
    "north korea",
    "middle east",
    "puerto rico",
    "guam",
    "okinawa",
    // US states.
    "alabama",
    "alaska",
    "arizona",
    "arkansas",
    "california",
    "colorado",
    "connecticut",
    "delaware",
    "florida",
    "georgia",
    "hawaii",
    "idaho",
    "illinois",
    "indiana",
    "iowa",
    "kansas",
    "kentucky",
    "louisiana",
    "maine",
    "maryland",
    "massachusetts",
    "michigan",
    "minnesota",
    "mississippi",
    "missouri",
    "montana",
    "nebraska",
    "nevada",
    "new hampshire",
    "new jersey",
    "new mexico",
    "new york",
    "north carolina",
    "north dakota",
    "ohio",
    "oklahoma",
    "oregon",
    "pennsylvania",
    "rhode island",
    "south carolina",
    "south dakota",
    "tennessee",
    "texas",
    "utah",
    "vermont",
    "virginia",
    "washington",
    "west virginia",
    "wisconsin",
    "wyoming",
    // Cities.
    "atlanta",
    "austin",
    "baghdad",
    "baltimore",
    "beijing",
    "berlin",
    "boston",
    "chicago",
    "dallas",
    "denver",
    "detroit",
    "honolulu",
    "houston",
    "kabul",
    "las vegas",
    "london",
    "los angeles",
    "miami",
    "moscow",
    "nashville",
    "new orleans",
    "new york city",
    "norfolk",
    "paris",
    "philadelphia",
    "phoenix",
    "pittsburgh",
    "portland",
    "rome",
    "san antonio",
    "san diego",
    "san francisco",
    "seattle",
    "seoul",
    "tokyo",
    "pensacola",
    "annapolis",
    "fort bragg",
    "fort hood",
    "pearl harbor",
    "silicon valley",
    "hollywood",
    "brooklyn",
    "manhattan",
];

const ORG_WORDS: &[&str] = &[
    "university",
    "college",
    "school",
    "academy",
    "institute",
    "navy",
    "army",
    "marines",
    "marine",
    "corps",
    "force",
    "guard",
    "company",
    "corporation",
    "inc",
    "corp",
    "department",
    "agency",
    "hospital",
    "bank",
    "foundation",
    "association",
    "church",
    "club",
    "team",
    "center",
    "laboratory",
    "lab",
    "office",
    "ministry",
    "council",
    "committee",
    "google",
    "microsoft",
    "amazon",
    "apple",
    "facebook",
    "nasa",
    "boeing",
];

/// Common first names: a single capitalised word is a person only if it is one of these.
const FIRST_NAMES: &[&str] = &[
    "james",
    "john",
    "robert",
    "michael",
    "william",
    "david",
    "richard",
    "joseph",
    "thomas",
    "charles",
    "daniel",
    "matthew",
    "anthony",
    "mark",
    "paul",
    "steven",
    "andrew",
    "kevin",
    "brian",
    "george",
    "edward",
    "ronald",
    "timothy",
    "jason",
    "jeffrey",
    "ryan",
    "jacob",
    "gary",
    "eric",
    "jonathan",
    "stephen",
    "larry",
    "justin",
    "scott",
    "brandon",
    "benjamin",
    "samuel",
    "frank",
    "gregory",
    "raymond",
    "patrick",
    "jack",
    "dennis",
    "jerry",
    "mary",
    "patricia",
    "jennifer",
    "linda",
    "elizabeth",
    "barbara",
    "susan",
    "jessica",
    "sarah",
    "karen",
    "nancy",
    "lisa",
    "betty",
    "margaret",
    "sandra",
    "ashley",
    "kimberly",
    "emily",
    "donna",
    "michelle",
    "carol",
    "amanda",
    "melissa",
    "deborah",
    "stephanie",
    "rebecca",
    "laura",
    "sharon",
    "cynthia",
    "kathleen",
    "amy",
    "anna",
    "maria",
    "julia",
    "emma",
    "olivia",
    "sophia",
    "grace",
    "alice",
    "clint",
    "dan",
    "bob",
    "tom",
    "jim",
    "mike",
    "joe",
    "bill",
    "kate",
    "jane",
    "luis",
    "carlos",
    "jose",
    "juan",
    "ana",
    "chen",
    "wei",
    "ali",
    "omar",
    "fatima",
];

/// Capitalised words that start or fill sentences without naming anything.
const STOP: &[&str] = &[
    "i",
    "i'm",
    "i've",
    "i'd",
    "i'll",
    "the",
    "a",
    "an",
    "and",
    "but",
    "or",
    "so",
    "then",
    "when",
    "what",
    "why",
    "how",
    "where",
    "who",
    "which",
    "my",
    "our",
    "we",
    "you",
    "he",
    "she",
    "they",
    "it",
    "this",
    "that",
    "there",
    "these",
    "those",
    "if",
    "in",
    "on",
    "at",
    "for",
    "of",
    "to",
    "from",
    "with",
    "as",
    "after",
    "before",
    "during",
    "once",
    "yes",
    "no",
    "well",
    "also",
    "because",
    "while",
    "since",
    "some",
    "many",
    "most",
    "all",
    "every",
    "one",
    "two",
    "first",
    "later",
    "now",
    "today",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "christmas",
    "english",
    "god",
    "ok",
    "okay",
    "mr",
    "mrs",
    "ms",
    "dr",
];

const CONNECTORS: &[&str] = &["of", "the", "de", "and", "for"];

fn set(words: &'static [&'static str]) -> HashSet<&'static str> {
    words.iter().copied().collect()
}

struct Lexicons {
    family: HashSet<&'static str>,
    places: HashSet<&'static str>,
    org: HashSet<&'static str>,
    names: HashSet<&'static str>,
    stop: HashSet<&'static str>,
}

fn lexicons() -> &'static Lexicons {
    static L: OnceLock<Lexicons> = OnceLock::new();
    L.get_or_init(|| Lexicons {
        family: set(FAMILY),
        places: set(PLACES),
        org: set(ORG_WORDS),
        names: set(FIRST_NAMES),
        stop: set(STOP),
    })
}

fn is_capitalized(w: &str) -> bool {
    let mut cs = w.chars();
    cs.next().is_some_and(char::is_uppercase) && cs.any(char::is_lowercase)
}

fn is_acronym(w: &str) -> bool {
    let letters = w.chars().filter(|c| c.is_ascii_uppercase()).count();
    (2..=6).contains(&w.len())
        && letters >= 2
        && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '&')
}

/// Words with their sentence-start flag; punctuation splits sentences and is stripped from words.
fn words(text: &str) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    let mut sentence_start = true;
    for raw in text.split_whitespace() {
        let ends = raw.ends_with(['.', '!', '?', ';', ':']);
        let breaks = ends || raw.ends_with(',');
        let w: String = raw.trim_matches(|c: char| !c.is_alphanumeric() && c != '&').to_string();
        let w = w.strip_suffix("'s").or_else(|| w.strip_suffix("’s")).unwrap_or(&w).to_string();
        if !w.is_empty() {
            // (word, starts a sentence, punctuation after it ends a name)
            out.push((w, sentence_start, breaks));
        }
        sentence_start = ends;
    }
    out
}

/// Finds entities in a text; each distinct (text, kind) once, in order of first appearance.
pub fn extract(text: &str) -> Vec<Entity> {
    let lx = lexicons();
    let ws = words(text);
    let mut found: Vec<Entity> = Vec::new();
    let mut push = |e: Entity| {
        if !found.contains(&e) {
            found.push(e);
        }
    };
    let mut i = 0;
    while i < ws.len() {
        let (w, start, _) = &ws[i];
        let lower = w.to_lowercase();
        // Family words after a possessive: "my mom", "our kids".
        if lx.family.contains(lower.as_str()) && i > 0 && matches!(ws[i - 1].0.to_lowercase().as_str(), "my" | "our") {
            push(Entity { text: lower.clone(), kind: EntityType::Family });
            i += 1;
            continue;
        }
        if is_acronym(w) && !matches!(w.as_str(), "I" | "OK" | "TV" | "AM" | "PM") {
            let kind = if matches!(w.as_str(), "US" | "USA" | "UK") { EntityType::Place } else { EntityType::Acronym };
            push(Entity { text: w.clone(), kind });
            i += 1;
            continue;
        }
        if !is_capitalized(w) || lx.stop.contains(lower.as_str()) {
            i += 1;
            continue;
        }
        // A run of capitalised words, allowing lower-case connectors inside ("University of Southern California").
        let mut j = i + 1;
        let mut end = i + 1;
        if !ws[i].2 {
            while j < ws.len() {
                let (wj, _, brk) = &ws[j];
                if is_capitalized(wj) && !lx.stop.contains(wj.to_lowercase().as_str()) {
                    end = j + 1;
                } else if !(CONNECTORS.contains(&wj.as_str()) && j + 1 < ws.len() && is_capitalized(&ws[j + 1].0)) {
                    break;
                }
                if *brk {
                    break;
                }
                j += 1;
            }
        }
        let span: Vec<&str> = ws[i..end].iter().map(|(w, _, _)| w.as_str()).collect();
        let phrase = span.join(" ");
        let lower_phrase = phrase.to_lowercase();
        let kind = if lx.places.contains(lower_phrase.as_str()) {
            Some(EntityType::Place)
        } else if span.iter().any(|w| lx.org.contains(w.to_lowercase().as_str())) {
            Some(EntityType::Organization)
        } else if (span.len() >= 2 && lx.names.contains(span[0].to_lowercase().as_str()))
            || (span.len() == 1 && lx.names.contains(lower_phrase.as_str()) && !start)
        {
            Some(EntityType::Person)
        } else if span.len() >= 2 && span.len() <= 3 && !*start && i > 0 {
            // Two or three capitalised words mid-sentence: a name of something; a place after a place preposition.
            let prev = ws[i - 1].0.to_lowercase();
            Some(if matches!(prev.as_str(), "in" | "to" | "from" | "near" | "visited") {
                EntityType::Place
            } else {
                EntityType::Person
            })
        } else {
            None
        };
        if let Some(kind) = kind {
            push(Entity { text: phrase, kind });
        }
        i = end.max(i + 1);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(String, EntityType)> {
        extract(text).into_iter().map(|e| (e.text, e.kind)).collect()
    }

    #[test]
    fn finds_each_kind() {
        let got = kinds("I grew up in Los Angeles with my mom. Then I studied at the University of Southern California, and later joined the NAVY with John Smith.");
        assert!(got.contains(&("Los Angeles".into(), EntityType::Place)), "{got:?}");
        assert!(got.contains(&("mom".into(), EntityType::Family)), "{got:?}");
        assert!(got.contains(&("University of Southern California".into(), EntityType::Organization)), "{got:?}");
        assert!(got.contains(&("NAVY".into(), EntityType::Acronym)), "{got:?}");
        assert!(got.contains(&("John Smith".into(), EntityType::Person)), "{got:?}");
    }

    #[test]
    fn sentence_starts_and_pronouns_are_not_entities() {
        assert!(kinds("Then we went home. After that I slept.").is_empty());
    }
}

#[cfg(test)]
mod fixture {
    use super::*;

    /// Precision on the labelled fixture must stay ≥ 0.7 (entity text and kind both right).
    #[test]
    fn precision_on_labelled_fixture() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data/entities_fixture.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let (mut tp, mut predicted, mut gold) = (0usize, 0usize, 0usize);
        for item in v["items"].as_array().unwrap() {
            let truth: HashSet<(String, String)> = item["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_str().unwrap().to_string(), e[1].as_str().unwrap().to_string()))
                .collect();
            let got: HashSet<(String, String)> = extract(item["text"].as_str().unwrap())
                .into_iter()
                .map(|e| (e.text, serde_json::to_value(e.kind).unwrap().as_str().unwrap().to_string()))
                .collect();
            tp += got.intersection(&truth).count();
            predicted += got.len();
            gold += truth.len();
        }
        let precision = tp as f64 / predicted as f64;
        let recall = tp as f64 / gold as f64;
        eprintln!("entity extraction on the fixture: precision {precision:.3}, recall {recall:.3} ({tp}/{predicted}, {gold} labelled)");
        assert!(precision >= 0.7, "precision {precision:.3}");
    }
}
