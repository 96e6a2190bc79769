//! The GPT-2 byte-level alphabet: every byte is written as one printable character in token strings
//! (`Ġ` for a space, `Ċ` for a newline). Needed to turn tokens back into bytes for streaming.

/// Whether byte `b` is written as the character with the same code point.
const fn is_printable(b: usize) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Byte -> code point of its character (GPT-2's `bytes_to_unicode`): printable bytes map to
/// themselves, the 68 others to U+0100.. in byte order.
const BYTE_TO_CHAR: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut next = 256u16;
    let mut b = 0usize;
    while b < 256 {
        if is_printable(b) {
            table[b] = b as u16;
        } else {
            table[b] = next;
            next += 1;
        }
        b += 1;
    }
    table
};

/// Number of code points the inverse table must cover (U+0000 ..= U+0143).
const INV_LEN: usize = 256 + 68;

/// Code point -> byte, or -1 where the character is not part of the alphabet.
const CHAR_TO_BYTE: [i16; INV_LEN] = {
    let mut inv = [-1i16; INV_LEN];
    let mut b = 0usize;
    while b < 256 {
        inv[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    inv
};

/// The byte written as `c` in a byte-level token, if `c` belongs to the alphabet.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let b = *CHAR_TO_BYTE.get(c as usize)?;
    u8::try_from(b).ok()
}

/// Appends the bytes of `token` exactly as the `ByteLevel` decoder of `tokenizers` does: every
/// character mapped through the alphabet, or, if any character is outside it (an added token such
/// as `<|im start|>` with a space), the token's own UTF-8.
pub(crate) fn push_token_bytes(token: &str, out: &mut Vec<u8>) {
    let start = out.len();
    for c in token.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.truncate(start);
                out.extend_from_slice(token.as_bytes());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alphabet_is_a_bijection() {
        let mut seen = [false; 256];
        for b in 0..256usize {
            let c = char::from_u32(u32::from(BYTE_TO_CHAR[b])).expect("valid char");
            let back = char_to_byte(c).expect("in alphabet");
            assert_eq!(usize::from(back), b);
            assert!(!seen[b]);
            seen[b] = true;
        }
        assert_eq!(char_to_byte('Ġ'), Some(b' '));
        assert_eq!(char_to_byte('Ċ'), Some(b'\n'));
        assert_eq!(char_to_byte('a'), Some(b'a'));
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn token_bytes_fall_back_to_utf8() {
        let mut out = Vec::new();
        push_token_bytes("ĠHello", &mut out);
        assert_eq!(out, b" Hello");
        out.clear();
        push_token_bytes("a b", &mut out);
        assert_eq!(out, b"a b");
    }
}
