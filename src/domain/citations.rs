//! Citation markers in lesson text: `[S3]` or a group `[S1, S2]`, the ids of
//! retrieved passages. One reader for validation, narration and pages.

/// The citation group at the start of `after_open` (the text just after a
/// `[`): the labels it names and the length up to and including its `]`.
/// `None` when the bracket holds anything but `S<digits>` ids separated by
/// commas or semicolons.
pub fn group_at(after_open: &str) -> Option<(Vec<&str>, usize)> {
    let close = after_open.find(']')?;
    let group = &after_open[..close];
    let ids: Vec<&str> = group.split([',', ';']).map(str::trim).collect();
    (!group.is_empty() && ids.iter().all(|id| is_label(id))).then_some((ids, close + 1))
}

/// Whether `id` is a citation id: `S` and digits.
pub fn is_label(id: &str) -> bool {
    id.len() > 1 && id.starts_with('S') && id[1..].bytes().all(|b| b.is_ascii_digit())
}

/// Every label cited in `text`, each once, in order of first citation.
pub fn labels(text: &str) -> Vec<String> {
    let mut labels: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        if let Some((ids, len)) = group_at(rest) {
            for id in ids {
                if !labels.iter().any(|l| l == id) {
                    labels.push(id.to_owned());
                }
            }
            rest = &rest[len..];
        }
    }
    labels
}

/// `text` with `replace(labels)` in place of each citation group (and the
/// group's `[`...`]`).
pub fn replace(text: &str, mut replace: impl FnMut(&[&str]) -> String) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match group_at(after) {
            Some((ids, len)) => {
                out.push_str(&replace(&ids));
                rest = &after[len..];
            }
            None => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_grouped_ids_are_read_and_other_brackets_left_alone() {
        assert_eq!(
            labels("a [S1] b [S2, S3; S1] [x] [S] [S1a] [1]"),
            ["S1", "S2", "S3"]
        );
        assert_eq!(
            replace("x [S1, S2] y [note] [S3]", |ids| ids.join("+")),
            "x S1+S2 y [note] S3"
        );
        assert_eq!(replace("unclosed [S1", |_| String::new()), "unclosed [S1");
    }
}
