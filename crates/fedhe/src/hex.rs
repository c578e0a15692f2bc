//! Lowercase hex for tokens, proofs, keys and fingerprints: a leaf every
//! layer may use (the wire, the masks, the key files).

/// Lowercase hex (bearer tokens, registration proofs).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string of at most 256 digits (`None` if not plain hex).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Exactly `N` bytes of hex (keys, signatures), `None` otherwise.
pub fn parse_hex_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    parse_hex(s)?.try_into().ok()
}
