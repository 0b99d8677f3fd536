//! Byte-level mutations of a valid input: what an attacker, a broken proxy or a truncated
//! upload does to a body.

use proptest::prelude::*;

#[derive(Debug, Clone)]
pub enum Mutation {
    /// Flip one bit at a position (taken modulo the length).
    FlipBit { at: usize, bit: u8 },
    /// Keep only the first `len` bytes (modulo the length + 1).
    Truncate { len: usize },
    /// Insert bytes at a position.
    Insert { at: usize, bytes: Vec<u8> },
    /// Replace a byte range with other bytes (a wrong length or a wrong type).
    Replace {
        at: usize,
        len: usize,
        bytes: Vec<u8>,
    },
    /// Repeat a slice many times at a position (a huge value).
    Repeat { at: usize, len: usize, times: usize },
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just(b"null".to_vec()),
        Just(b"0".to_vec()),
        Just(b"-1e400".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"[]".to_vec()),
        Just(b"{}".to_vec()),
        Just(b"\"\"".to_vec()),
        Just(b"true".to_vec()),
        Just(b"\"\\u0000\"".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..16),
    ];
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::FlipBit { at, bit }),
        2 => any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        2 => (any::<usize>(), token.clone()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        2 => (any::<usize>(), 0usize..64, token)
            .prop_map(|(at, len, bytes)| Mutation::Replace { at, len, bytes }),
        1 => (any::<usize>(), 1usize..16, 1usize..20_000)
            .prop_map(|(at, len, times)| Mutation::Repeat { at, len, times }),
    ]
}

pub fn mutate(input: &[u8], m: &Mutation) -> Vec<u8> {
    let mut out = input.to_vec();
    let pos = |at: usize, n: usize| if n == 0 { 0 } else { at % n };
    match m {
        Mutation::FlipBit { at, bit } => {
            if !out.is_empty() {
                let i = pos(*at, out.len());
                out[i] ^= 1 << bit;
            }
        }
        Mutation::Truncate { len } => out.truncate(len % (input.len() + 1)),
        Mutation::Insert { at, bytes } => {
            let i = pos(*at, out.len() + 1);
            out.splice(i..i, bytes.iter().copied());
        }
        Mutation::Replace { at, len, bytes } => {
            let i = pos(*at, out.len() + 1);
            let end = (i + len).min(out.len());
            out.splice(i..end, bytes.iter().copied());
        }
        Mutation::Repeat { at, len, times } => {
            let i = pos(*at, out.len() + 1);
            let end = (i + len).min(out.len());
            let piece = out[i..end].to_vec();
            let copies: Vec<u8> = piece
                .iter()
                .copied()
                .cycle()
                .take(piece.len() * times)
                .collect();
            out.splice(end..end, copies);
        }
    }
    out
}
