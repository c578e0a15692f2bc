//! Lowercase hex for tokens, proofs, keys and fingerprints: a leaf every
//! layer may use (the wire, the masks, the key files).

/// Lowercase hex (bearer tokens, registration proofs).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string of at most 256 digits (`None` if not plain hex).
pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    parse_hex_up_to(s, 128)
}

/// Bytes of a hex string of at most `max` bytes (`None` if not plain hex
/// or longer): double masking's share bundles, `32 · roster + 16` bytes.
pub fn parse_hex_up_to(s: &str, max: usize) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 2 * max || !s.bytes().all(|b| b.is_ascii_hexdigit())
    {
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
