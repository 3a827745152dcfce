//! How a search picks the chunks it ranks (pure: no database).
//!
//! Ranking every match of a query is what made search slow: a query of
//! common words matches a large part of a library, and `ts_rank_cd` reads
//! each match's `tsvector`. So a search ranks at most about [`CANDIDATES`]
//! chunks, chosen from the query's words and how common each is (the
//! planner's statistics of `source_chunks.tsv`, `pg_stats.most_common_elems`):
//!
//! - **Few matches** (the estimate is at most [`CANDIDATES`], or the query is
//!   not a plain list of words, or there are no statistics yet): every match
//!   is ranked, as a plain `ts_rank_cd` search would.
//! - **Any of the words** (`a or b or c`, what retrieval in generation
//!   sends): the candidates are the matches of its rarest words, as many of
//!   them as keep the estimate within [`CANDIDATES`]. A chunk having only
//!   words that a large part of the library has is not among them: those
//!   words tell little (the idea of inverse document frequency).
//! - **All of the words**, or any-of-the-words whose rarest word alone is
//!   common: the matches of all (or the rarest few) of the words, then a
//!   deterministic sample of them, by chunk id (uniform: ids are name-based
//!   UUIDs), of about [`CANDIDATES`] chunks (none when it would keep a third
//!   or more). Which part of the library is sampled depends on the query,
//!   so no chunk is left out of every search.
//!
//! Whatever the candidates, what is returned matches the whole query and is
//! ordered by `ts_rank_cd` over the whole query, among the candidates
//! `ts_rank` puts first ([`RESCORED_PER_HIT`]). The statistics are the
//! server's, over every library: when narrowed candidates give fewer hits
//! than asked (their rare words may be absent from this library), every
//! match is ranked after all, up to a hard cap.

/// About how many chunks a search ranks at most.
pub const CANDIDATES: f64 = 1500.0;

/// Of the candidates, the best `RESCORED_PER_HIT` per hit asked for (at
/// least [`RESCORED_MIN`]) by `ts_rank` are ranked by `ts_rank_cd`, whose
/// cover density costs, on a query of many words, a hundred times as much.
pub const RESCORED_PER_HIT: i64 = 10;
/// See [`RESCORED_PER_HIT`].
pub const RESCORED_MIN: i64 = 50;

/// The sampling buckets of chunks (`coursegen_chunk_keys` in
/// `projections/0013_sources_search.sql`: `~0` to `~255`).
pub const BUCKETS: u32 = 256;

/// How common lexemes are among the chunks (`pg_stats.most_common_elems`
/// of `source_chunks.tsv`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LexemeStats {
    listed: std::collections::HashMap<String, f64>,
    /// The lowest fraction listed; `None`: no statistics.
    lowest: Option<f64>,
}

impl LexemeStats {
    /// From `pg_stats`' arrays: the lexemes, and their fractions followed
    /// by the lowest, the highest and the fraction of NULLs.
    pub fn new(lexemes: Vec<String>, fractions: Vec<f32>) -> Self {
        let lowest = fractions.get(lexemes.len()).map(|f| f64::from(*f));
        Self {
            listed: lexemes
                .into_iter()
                .zip(fractions.iter().map(|f| f64::from(*f)))
                .collect(),
            lowest,
        }
    }

    /// The fraction of chunks containing `lexeme`. One the statistics do
    /// not list is rarer than those they do (half the lowest, as
    /// PostgreSQL's own estimate takes); without statistics, every lexeme
    /// is taken as rare (then every match is ranked).
    pub fn fraction(&self, lexeme: &str) -> f64 {
        self.listed
            .get(lexeme)
            .copied()
            .or(self.lowest.map(|f| f / 2.0))
            .unwrap_or(0.0)
    }
}

/// A lexeme of a parsed `tsquery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// As written in the `tsquery`'s text, quotes and escapes included.
    pub quoted: String,
    /// The lexeme itself.
    pub lexeme: String,
}

/// The shape of a `tsquery` (from `websearch_to_tsquery(...)::text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// No searchable word: nothing matches.
    Empty,
    /// One word, or words joined by `&`.
    All(Vec<Term>),
    /// Words joined by `|`.
    Any(Vec<Term>),
    /// Phrases, negations, mixed operators: ranked exactly.
    Other,
}

enum Token {
    Lexeme(Term),
    And,
    Or,
    Other,
}

/// Reads the text form of a `tsquery`.
pub fn shape(tsquery: &str) -> Shape {
    let mut tokens = Vec::new();
    let mut chars = tsquery.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            ' ' => {}
            '&' => tokens.push(Token::And),
            '|' => tokens.push(Token::Or),
            '\'' => {
                let mut lexeme = String::new();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, e)) = chars.next() {
                                lexeme.push(e);
                            }
                        }
                        '\'' if chars.peek().is_some_and(|(_, n)| *n == '\'') => {
                            chars.next();
                            lexeme.push('\'');
                        }
                        '\'' => {
                            end = Some(i + 1);
                            break;
                        }
                        c => lexeme.push(c),
                    }
                }
                let Some(end) = end else {
                    return Shape::Other;
                };
                // A weight or prefix marker (`:*`, `:AB`) makes it another query.
                if chars.peek().is_some_and(|(_, n)| *n == ':') {
                    return Shape::Other;
                }
                tokens.push(Token::Lexeme(Term {
                    quoted: tsquery[start..end].to_owned(),
                    lexeme,
                }));
            }
            _ => tokens.push(Token::Other),
        }
    }
    if tokens.is_empty() {
        return Shape::Empty;
    }
    let mut terms = Vec::new();
    let mut all = None;
    let operators = tokens.len() / 2;
    for (i, t) in tokens.into_iter().enumerate() {
        match (i % 2 == 0, t) {
            (true, Token::Lexeme(term)) => terms.push(term),
            (false, Token::And) if all != Some(false) => all = Some(true),
            (false, Token::Or) if all != Some(true) => all = Some(false),
            _ => return Shape::Other,
        }
    }
    // An operator last: not a query `websearch_to_tsquery` writes.
    if terms.len() != operators + 1 {
        return Shape::Other;
    }
    match all {
        Some(false) => Shape::Any(terms),
        _ => Shape::All(terms),
    }
}

/// Which chunks of one text search configuration a search ranks.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    /// A `tsquery` (text form) the candidates match besides the query.
    pub tsquery: String,
    /// The part of the matches kept (1: all of them).
    pub sample: f64,
}

/// The candidates for `shape` (of `query`) among `scope` chunks, given the
/// fraction of chunks containing each lexeme. `None`: nothing can match.
pub fn candidates(
    query: &str,
    shape: &Shape,
    scope: f64,
    fraction: impl Fn(&str) -> f64,
) -> Option<Candidates> {
    let all = |sample: f64| Candidates {
        tsquery: query.to_owned(),
        sample: sample.clamp(0.0, 1.0),
    };
    // The expected matches of all of `terms` together, taken as independent.
    let together = |terms: &[&Term]| {
        scope
            * terms
                .iter()
                .map(|t| fraction(&t.lexeme).clamp(0.0, 1.0))
                .product::<f64>()
    };
    match shape {
        Shape::Empty => None,
        Shape::Other => Some(all(1.0)),
        Shape::All(terms) => {
            let terms: Vec<&Term> = terms.iter().collect();
            Some(all(CANDIDATES / together(&terms).max(1.0)))
        }
        Shape::Any(terms) => {
            let mut by_rarity: Vec<&Term> = terms.iter().collect();
            by_rarity.sort_by(|a, b| fraction(&a.lexeme).total_cmp(&fraction(&b.lexeme)));
            let mut expected = 0.0;
            let mut rare = 0;
            for t in &by_rarity {
                let n = together(&[t]);
                if expected + n > CANDIDATES {
                    break;
                }
                expected += n;
                rare += 1;
            }
            if rare == by_rarity.len() {
                return Some(all(1.0));
            }
            if rare > 0 {
                return Some(Candidates {
                    tsquery: join(&by_rarity[..rare], " | "),
                    sample: 1.0,
                });
            }
            // Even the rarest word is common: the chunks having the rarest
            // few together (the best ranked have many of the words), as
            // few words as still leave about CANDIDATES chunks, sampled.
            let mut j = 1;
            while j < by_rarity.len() && together(&by_rarity[..=j]) >= CANDIDATES {
                j += 1;
            }
            Some(Candidates {
                tsquery: join(&by_rarity[..j], " & "),
                sample: (CANDIDATES / together(&by_rarity[..j]).max(1.0)).clamp(0.0, 1.0),
            })
        }
    }
}

fn join(terms: &[&Term], op: &str) -> String {
    terms
        .iter()
        .map(|t| t.quoted.as_str())
        .collect::<Vec<_>>()
        .join(op)
}

/// The sampling bucket keys for keeping `sample` of the matches of
/// `query`: a run of buckets starting at one chosen by the query's text.
/// Empty when every bucket is kept.
pub fn bucket_keys(query: &str, sample: f64) -> Vec<String> {
    // Each bucket is a GIN key to read: keeping a third or more costs more
    // than ranking the (at most three times CANDIDATES) matches.
    if sample >= 1.0 / 3.0 {
        return Vec::new();
    }
    let n = (f64::from(BUCKETS) * sample)
        .ceil()
        .clamp(1.0, f64::from(BUCKETS)) as u32;
    // FNV-1a: stable across builds, unlike the standard library's hasher.
    let mut h: u32 = 0x811c_9dc5;
    for b in query.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (0..n)
        .map(|i| format!("~{}", (h % BUCKETS + i) % BUCKETS))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(lexeme: &str) -> Term {
        Term {
            quoted: format!("'{lexeme}'"),
            lexeme: lexeme.to_owned(),
        }
    }

    #[test]
    fn tsqueries_of_plain_word_lists_are_read_and_others_are_not() {
        assert_eq!(shape(""), Shape::Empty);
        assert_eq!(shape("'cell'"), Shape::All(vec![term("cell")]));
        assert_eq!(
            shape("'cell' & 'enzym'"),
            Shape::All(vec![term("cell"), term("enzym")])
        );
        assert_eq!(
            shape("'cell' | 'enzym' | 'atp'"),
            Shape::Any(vec![term("cell"), term("enzym"), term("atp")])
        );
        let quoted = shape(r"'o''neil' | 'a\\b'");
        assert_eq!(
            quoted,
            Shape::Any(vec![
                Term {
                    quoted: "'o''neil'".into(),
                    lexeme: "o'neil".into()
                },
                Term {
                    quoted: r"'a\\b'".into(),
                    lexeme: r"a\b".into()
                },
            ])
        );
        for other in [
            "'a' & 'b' | 'c'",
            "'a' <-> 'b'",
            "!'a' & 'b'",
            "( 'a' | 'b' ) & 'c'",
            "'a':*",
            "'a' &",
            "'unterminated",
        ] {
            assert_eq!(shape(other), Shape::Other, "{other}");
        }
    }

    fn fractions(lexeme: &str) -> f64 {
        match lexeme {
            "cell" | "enzym" | "water" | "light" => 0.4,
            "membran" => 0.2,
            "atp" => 0.001,
            "ribosom" => 0.002,
            _ => 0.0001,
        }
    }

    #[test]
    fn few_expected_matches_are_all_ranked() {
        let q = "'atp' & 'cell'";
        assert_eq!(
            candidates(q, &shape(q), 100_000.0, fractions),
            Some(Candidates {
                tsquery: q.into(),
                sample: 1.0
            })
        );
        let q = "'cell' | 'water'";
        assert_eq!(
            candidates(q, &shape(q), 1000.0, fractions).unwrap().tsquery,
            q
        );
        assert_eq!(candidates("", &Shape::Empty, 10.0, fractions), None);
    }

    #[test]
    fn any_of_the_words_ranks_the_matches_of_the_rarest() {
        let q = "'cell' | 'atp' | 'water' | 'ribosom' | 'krebs'";
        let c = candidates(q, &shape(q), 100_000.0, fractions).unwrap();
        assert_eq!(c.tsquery, "'krebs' | 'atp' | 'ribosom'");
        assert_eq!(c.sample, 1.0);
    }

    #[test]
    fn common_words_only_are_sampled_among_the_chunks_having_the_rarest_together() {
        let q = "'cell' | 'water' | 'membran'";
        let c = candidates(q, &shape(q), 100_000.0, fractions).unwrap();
        // membran: 20,000; & cell: 8,000; & water: 3,200, all above CANDIDATES.
        assert_eq!(c.tsquery, "'membran' & 'cell' & 'water'");
        assert!((c.sample - CANDIDATES / 3200.0).abs() < 1e-9, "{c:?}");
        let q = "'cell' & 'enzym'";
        let c = candidates(q, &shape(q), 100_000.0, fractions).unwrap();
        assert_eq!(c.tsquery, q);
        assert!((c.sample - CANDIDATES / 16_000.0).abs() < 1e-9, "{c:?}");
    }

    #[test]
    fn unlisted_lexemes_are_rarer_than_the_rarest_listed() {
        let stats = LexemeStats::new(
            vec!["cell".into(), "atp".into()],
            vec![0.4, 0.02, 0.02, 0.4, 0.0],
        );
        assert_eq!(stats.fraction("cell"), f64::from(0.4f32));
        assert_eq!(stats.fraction("krebs"), f64::from(0.02f32) / 2.0);
        assert_eq!(LexemeStats::default().fraction("cell"), 0.0);
    }

    #[test]
    fn a_sample_is_a_run_of_buckets_chosen_by_the_query() {
        assert!(bucket_keys("'a'", 1.0).is_empty());
        assert!(bucket_keys("'a'", 0.4).is_empty());
        let a = bucket_keys("'cell' & 'enzym'", 0.1);
        assert_eq!(a.len(), 26);
        assert_eq!(a, bucket_keys("'cell' & 'enzym'", 0.1));
        assert_ne!(a, bucket_keys("'cell' & 'water'", 0.1));
        assert_eq!(bucket_keys("'x'", 0.0).len(), 1);
        assert!(a.iter().all(|k| k.starts_with('~')));
    }
}
