//! The amino-acid sequence vocabulary shared by ESM3 and ESM C (spec §1.1).

use thiserror::Error;

/// Vocabulary in id order. Ids 33..64 exist in the model's tables but are never produced.
pub const VOCAB: [&str; 33] = [
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "|", "<mask>",
];

pub const BOS: u32 = 0;
pub const PAD: u32 = 1;
pub const EOS: u32 = 2;
pub const UNK: u32 = 3;
pub const CHAINBREAK: u32 = 31;
pub const MASK: u32 = 32;
/// Rows of the sequence embedding table and width of the sequence head.
pub const EMBEDDING_ROWS: usize = 64;
/// The SDK's short mask character.
pub const MASK_CHAR: char = '_';
/// Ids the reference treats as special (never sampled).
pub const SPECIAL_IDS: [u32; 6] = [BOS, PAD, EOS, UNK, CHAINBREAK, MASK];

/// A character or token the strict tokenizer refuses.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TokenizeError {
    #[error(
        "invalid residue {found:?} at position {position} (1-based): expected one of \
         LAGVSERTIDPKQNFYMHWCXBUZO.-, '|' (chain break), '_' (mask) or a special token \
         <cls> <pad> <eos> <unk> <mask>{hint}"
    )]
    InvalidCharacter {
        found: char,
        position: usize,
        hint: &'static str,
    },
    #[error("unknown token id {id} at position {position}: the sequence vocabulary has ids 0..{}", VOCAB.len())]
    InvalidId { id: u32, position: usize },
}

/// How characters outside the vocabulary are handled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strictness {
    /// Refuse them, naming the character and its position.
    #[default]
    Strict,
    /// Map each to `<unk>`, one per character, as the reference tokenizer does.
    Lenient,
}

/// Character-level tokenizer with the reference's special-token matching.
#[derive(Clone, Copy, Debug, Default)]
pub struct SequenceTokenizer {
    pub strictness: Strictness,
}

impl SequenceTokenizer {
    pub fn strict() -> Self {
        Self {
            strictness: Strictness::Strict,
        }
    }

    pub fn lenient() -> Self {
        Self {
            strictness: Strictness::Lenient,
        }
    }

    /// Encodes with `<cls>` prepended and `<eos>` appended (the SDK default): L residues → L+2 ids.
    pub fn encode(&self, sequence: &str) -> Result<Vec<u32>, TokenizeError> {
        let mut ids = Vec::with_capacity(sequence.len() + 2);
        ids.push(BOS);
        self.encode_into(sequence, &mut ids)?;
        ids.push(EOS);
        Ok(ids)
    }

    /// Encodes without adding BOS/EOS.
    pub fn encode_no_special(&self, sequence: &str) -> Result<Vec<u32>, TokenizeError> {
        let mut ids = Vec::with_capacity(sequence.len());
        self.encode_into(sequence, &mut ids)?;
        Ok(ids)
    }

    fn encode_into(&self, sequence: &str, ids: &mut Vec<u32>) -> Result<(), TokenizeError> {
        let mut rest = sequence;
        let mut position = 0usize; // 1-based position of the current character, counted in chars
        'outer: while let Some(c) = rest.chars().next() {
            position += 1;
            if c == '<' {
                for (id, tok) in VOCAB.iter().enumerate() {
                    if tok.len() > 1 && rest.starts_with(tok) {
                        ids.push(id as u32);
                        rest = &rest[tok.len()..];
                        position += tok.chars().count() - 1;
                        continue 'outer;
                    }
                }
            }
            rest = &rest[c.len_utf8()..];
            match char_id(c) {
                Some(id) => ids.push(id),
                None => match self.strictness {
                    Strictness::Lenient => ids.push(UNK),
                    Strictness::Strict => {
                        let hint = if c.is_ascii_lowercase() {
                            " (sequences are upper case)"
                        } else if c == 'J' {
                            " (J is not in the ESM vocabulary; use X)"
                        } else if c.is_whitespace() {
                            " (remove whitespace)"
                        } else if c == '*' {
                            " (remove the stop codon)"
                        } else {
                            ""
                        };
                        return Err(TokenizeError::InvalidCharacter {
                            found: c,
                            position,
                            hint,
                        });
                    }
                },
            }
        }
        Ok(())
    }

    /// Decodes ids back to a string: `<mask>` → `_`, `<cls>`/`<eos>` removed, other special
    /// tokens kept literally (as the reference does, so nothing is silently dropped).
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizeError> {
        let mut out = String::with_capacity(ids.len());
        for (position, &id) in ids.iter().enumerate() {
            match id {
                BOS | EOS => {}
                MASK => out.push(MASK_CHAR),
                _ => out.push_str(
                    VOCAB
                        .get(id as usize)
                        .ok_or(TokenizeError::InvalidId { id, position })?,
                ),
            }
        }
        Ok(out)
    }
}

/// The id of a single character, with `_` as the mask and `|` as the chain break.
pub fn char_id(c: char) -> Option<u32> {
    if c == MASK_CHAR {
        return Some(MASK);
    }
    let mut buf = [0u8; 4];
    let s: &str = c.encode_utf8(&mut buf);
    VOCAB
        .iter()
        .position(|tok| tok.len() == 1 && *tok == s)
        .map(|i| i as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_match_the_reference_table() {
        let t = SequenceTokenizer::strict();
        assert_eq!(t.encode("LAGV").unwrap(), vec![0, 4, 5, 6, 7, 2]);
        assert_eq!(
            t.encode("XBUZO.-").unwrap(),
            vec![0, 24, 25, 26, 27, 28, 29, 30, 2]
        );
        assert_eq!(t.encode("C|W").unwrap(), vec![0, 23, 31, 22, 2]);
        assert_eq!(t.encode("").unwrap(), vec![0, 2]);
    }

    #[test]
    fn mask_char_and_special_tokens_are_whole_tokens() {
        let t = SequenceTokenizer::strict();
        assert_eq!(t.encode("A_<mask>K").unwrap(), vec![0, 5, 32, 32, 15, 2]);
        assert_eq!(
            t.encode_no_special("<cls><pad><eos><unk>").unwrap(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn strict_mode_names_the_character_and_position() {
        let t = SequenceTokenizer::strict();
        let err = t.encode("ACDJ").unwrap_err();
        assert_eq!(
            err,
            TokenizeError::InvalidCharacter {
                found: 'J',
                position: 4,
                hint: " (J is not in the ESM vocabulary; use X)"
            }
        );
        assert!(err.to_string().contains("position 4"));
        let err = t.encode("<mask>a").unwrap_err();
        assert!(matches!(
            err,
            TokenizeError::InvalidCharacter {
                found: 'a',
                position: 7,
                ..
            }
        ));
        // A lone '<' that starts no special token is itself invalid.
        assert!(t.encode("A<B").is_err());
    }

    #[test]
    fn lenient_mode_maps_each_unknown_character_to_unk() {
        let t = SequenceTokenizer::lenient();
        assert_eq!(t.encode("aJ K").unwrap(), vec![0, 3, 3, 3, 15, 2]);
    }

    #[test]
    fn decode_follows_the_reference() {
        let t = SequenceTokenizer::strict();
        assert_eq!(t.decode(&[0, 5, 32, 31, 1, 3, 2]).unwrap(), "A_|<pad><unk>");
        assert!(t.decode(&[40]).is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrips(s in "[LAGVSERTIDPKQNFYMHWCXBUZO.|_-]{0,64}") {
            let t = SequenceTokenizer::strict();
            let ids = t.encode(&s).unwrap();
            prop_assert_eq!(ids.len(), s.chars().count() + 2);
            prop_assert_eq!(t.decode(&ids).unwrap(), s);
        }

        #[test]
        fn lenient_never_fails_and_keeps_length(s in "\\PC{0,40}") {
            let t = SequenceTokenizer::lenient();
            let ids = t.encode_no_special(&s.replace('<', "")).unwrap();
            prop_assert_eq!(ids.len(), s.replace('<', "").chars().count());
        }
    }
}
