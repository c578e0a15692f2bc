//! Client ids and display names: what the aggregator accepts and a plan's
//! named roster may list. A leaf below `plan` and `protocol`.

/// Is `id` an acceptable client id?
pub fn valid_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Is `name` an acceptable display name? No control characters, and none of
/// the invisible or direction-changing characters that could make one name
/// look like another in the operator's client table.
pub fn valid_client_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=128).contains(&n) && !name.chars().any(|c| c.is_control() || is_invisible(c))
}

/// Bidirectional overrides, embeddings and isolates, zero-width characters,
/// and other format characters that render as nothing.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}'                 // soft hyphen
        | '\u{061C}'               // Arabic letter mark
        | '\u{180E}'               // Mongolian vowel separator
        | '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM, RLM
        | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // bidi isolates
        | '\u{FEFF}'               // zero-width no-break space
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        assert!(valid_client_id("clinic-a.01_x"));
        assert!(!valid_client_id(""));
        assert!(!valid_client_id("../etc"));
        assert!(!valid_client_id("a b"));
        assert!(!valid_client_id(&"a".repeat(65)));
        assert!(valid_client_name("Clinic A (Lyon)"));
        assert!(!valid_client_name(""));
        assert!(!valid_client_name("a\nb"));
        // Names that would look like another in the clients table.
        assert!(!valid_client_name("Clinic\u{202E}A"));
        assert!(!valid_client_name("Clinic\u{200B}A"));
        assert!(!valid_client_name("\u{2066}Clinic A\u{2069}"));
        assert!(valid_client_name("Clinique Saint-Étienne (日本)"));
    }
}
