//! Text normalisation for exact matching of questions.

/// Trims, case-folds, keeps letters, digits and single spaces: "  What's   your NAME?! " → "whats your name".
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if pending_space && !out.is_empty() {
                out.push(' ');
            }
            pending_space = false;
            out.push(c);
        } else if c.is_whitespace() {
            pending_space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn sanitizes() {
        assert_eq!(sanitize("  What's   your NAME?! "), "whats your name");
        assert_eq!(sanitize("Café\tau lait"), "café au lait");
        assert_eq!(sanitize("?!"), "");
        assert_eq!(sanitize("C++ vs Rust"), "c vs rust");
    }
}
