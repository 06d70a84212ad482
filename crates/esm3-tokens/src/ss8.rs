//! The 8-state secondary-structure track (spec §1.3, reference `SecondaryStructureTokenizer`).

use thiserror::Error;

/// Vocabulary in id order: three specials, then the DSSP states `GHITEBSC`.
pub const VOCAB: [&str; 11] = [
    "<pad>", "<motif>", "<unk>", "G", "H", "I", "T", "E", "B", "S", "C",
];
/// `<pad>` stands for mask, BOS, EOS, padding and chain breaks alike.
pub const PAD: u32 = 0;
pub const MOTIF: u32 = 1;
pub const UNK: u32 = 2;
pub const SPECIAL_IDS: [u32; 3] = [PAD, MOTIF, UNK];
/// The SDK's short mask character.
pub const MASK_CHAR: char = '_';
/// The 8 states in vocabulary order.
pub const STATES: &str = "GHITEBSC";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum Ss8Error {
    #[error("invalid secondary-structure letter {found:?} at position {position} (1-based): expected one of GHITEBSC or '_' (mask)")]
    InvalidCharacter { found: char, position: usize },
    #[error("unknown SS8 token id {id} at position {position}: the vocabulary has ids 0..11")]
    InvalidId { id: u32, position: usize },
}

/// Encodes an SS8 string with BOS and EOS (both `<pad>`). `_` and the literal `<pad>` mask a
/// position, as the reference's `tokenize_secondary_structure` does; any other letter outside
/// `GHITEBSC` is an error (a `KeyError` in the reference).
pub fn encode(ss8: &str) -> Result<Vec<u32>, Ss8Error> {
    let text = ss8.replace(VOCAB[PAD as usize], "_");
    let mut ids = Vec::with_capacity(text.chars().count() + 2);
    ids.push(PAD);
    for (k, c) in text.chars().enumerate() {
        let id = if c == MASK_CHAR {
            PAD
        } else {
            match STATES.find(c) {
                Some(i) => i as u32 + 3,
                None => {
                    return Err(Ss8Error::InvalidCharacter {
                        found: c,
                        position: k + 1,
                    })
                }
            }
        };
        ids.push(id);
    }
    ids.push(PAD);
    Ok(ids)
}

/// Decodes ids as the reference does: BOS/EOS slots dropped, then each id's vocabulary string
/// concatenated, so masked positions come back as the literal `<pad>`.
pub fn decode(ids: &[u32]) -> Result<String, Ss8Error> {
    let inner = if ids.len() >= 2 {
        &ids[1..ids.len() - 1]
    } else {
        &[]
    };
    inner
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            VOCAB.get(id as usize).copied().ok_or(Ss8Error::InvalidId {
                id,
                position: k + 2,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn masks_and_errors() {
        assert_eq!(encode("H_<pad>C").unwrap(), vec![0, 4, 0, 0, 10, 0]);
        assert_eq!(
            encode("HX").unwrap_err(),
            Ss8Error::InvalidCharacter {
                found: 'X',
                position: 2
            }
        );
        assert_eq!(decode(&[0, 4, 0, 10, 0]).unwrap(), "H<pad>C");
        assert!(decode(&[0, 11, 0]).is_err());
    }

    proptest! {
        #[test]
        fn states_round_trip(s in "[GHITEBSC]{0,50}") {
            let ids = encode(&s).unwrap();
            prop_assert_eq!(ids.len(), s.len() + 2);
            prop_assert!(ids[1..ids.len() - 1].iter().all(|&i| (3..=10).contains(&i)));
            prop_assert_eq!(decode(&ids).unwrap(), s);
        }
    }
}
