//! Finding NUL characters in untrusted bytes, before they reach SQL:
//! PostgreSQL refuses U+0000 in `text` and `jsonb`, so every ingress checks
//! for it at the edge and refuses the request as the sender's mistake.

/// Whether `bytes` would carry a NUL into a text: a raw NUL byte, or the
/// JSON escape `\u0000` (see [`has_json_escaped_nul`]).
pub fn in_json(bytes: &[u8]) -> bool {
    bytes.contains(&0) || has_json_escaped_nul(bytes)
}

/// Whether `text` holds the JSON escape `\u0000`: a `\` ending an odd run of
/// backslashes (the last one escapes), then `u0000`. `\\u0000` (an escaped
/// backslash, then the letters `u0000`) is no NUL.
pub fn has_json_escaped_nul(text: &[u8]) -> bool {
    let mut run = 0usize;
    for (i, &b) in text.iter().enumerate() {
        if b == b'\\' {
            run += 1;
            continue;
        }
        if run % 2 == 1 && text[i..].starts_with(b"u0000") {
            return true;
        }
        run = 0;
    }
    false
}

/// Whether a path or query string carries a NUL: raw (no HTTP/1 parser lets
/// one through today) or percent-encoded.
pub fn in_url(bytes: &[u8]) -> bool {
    bytes.contains(&0) || has_percent_nul(bytes)
}

/// `%00`: a NUL once percent-decoded (query strings, paths, forms).
pub fn has_percent_nul(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w == b"%00")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_escaped_nul_is_found_only_when_its_backslash_escapes() {
        assert!(has_json_escaped_nul(br#"{"q":"a\u0000b"}"#));
        assert!(has_json_escaped_nul(br#"{"q":"\\\u0000"}"#));
        assert!(!has_json_escaped_nul(br#"{"q":"\\u0000"}"#));
        assert!(!has_json_escaped_nul(br#"{"q":"u0000 \u0001"}"#));
        assert!(has_json_escaped_nul(br#"{"a\u0000":1}"#));
        assert!(in_json(b"{\"q\":\"a\0\"}"));
    }

    #[test]
    fn an_escaped_nul_is_exactly_what_serde_decodes_to_nul() {
        for text in [
            r#""\u0000""#,
            r#""\\\u0000""#,
            r#""\\u0000""#,
            r#""\\\\u0000""#,
            r#""a\\\\\u0000""#,
            r#""\u00000""#,
        ] {
            let decoded: String = serde_json::from_str(text).unwrap();
            assert_eq!(
                has_json_escaped_nul(text.as_bytes()),
                decoded.contains('\0'),
                "{text}"
            );
        }
    }

    #[test]
    fn percent_nul_is_found_anywhere() {
        assert!(has_percent_nul(b"q=a%00b"));
        assert!(!has_percent_nul(b"q=a%100"));
        assert!(!has_percent_nul(b"q=%0"));
    }
}
