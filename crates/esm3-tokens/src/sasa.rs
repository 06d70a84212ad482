//! The solvent-accessibility track (spec §1.4, reference `SASADiscretizingTokenizer`): SASA in
//! Å² binned at fixed boundaries.

use thiserror::Error;

/// Bin boundaries (Å²), held as `f32` as the reference's `torch.tensor` holds them.
pub const BOUNDARIES: [f32; 15] = [
    0.8, 4.0, 9.6, 16.4, 24.5, 32.9, 42.0, 51.5, 61.2, 70.9, 81.6, 93.3, 107.2, 125.4, 151.4,
];
/// `<pad>` stands for mask, BOS, EOS, padding and chain breaks alike.
pub const PAD: u32 = 0;
pub const MOTIF: u32 = 1;
pub const UNK: u32 = 2;
pub const SPECIAL_IDS: [u32; 3] = [PAD, MOTIF, UNK];
/// Number of ids: 3 specials + 16 bins.
pub const VOCAB_SIZE: usize = 3 + BOUNDARIES.len() + 1;

#[derive(Debug, Error, PartialEq)]
pub enum SasaError {
    #[error("SASA value at position {position} (1-based) is NaN; give a number or a mask (None)")]
    NotANumber { position: usize },
    #[error("unknown SASA token id {id} at position {position}: the vocabulary has ids 0..19")]
    InvalidId { id: u32, position: usize },
}

/// The vocabulary string of an id: specials, then `<low-high>` ranges as the reference prints
/// them (Python's `str` of the boundaries, `0` and `inf` at the ends).
pub fn token(id: u32) -> Option<String> {
    const LABELS: [&str; 17] = [
        "0", "0.8", "4.0", "9.6", "16.4", "24.5", "32.9", "42.0", "51.5", "61.2", "70.9", "81.6",
        "93.3", "107.2", "125.4", "151.4", "inf",
    ];
    match id {
        0 => Some("<pad>".into()),
        1 => Some("<motif>".into()),
        2 => Some("<unk>".into()),
        3..=18 => {
            let b = (id - 3) as usize;
            Some(format!("<{}-{}>", LABELS[b], LABELS[b + 1]))
        }
        _ => None,
    }
}

/// Id of one SASA value: 3 + the number of boundaries strictly below it (`torch.bucketize`,
/// right = False), so a value equal to a boundary falls in the lower bin.
pub fn bin(value: f32) -> u32 {
    3 + BOUNDARIES.iter().filter(|&&b| b < value).count() as u32
}

/// Encodes per-residue SASA with BOS and EOS (`<pad>`); `None` masks a position. NaN is refused
/// (the reference leaves it to torch's unspecified behaviour).
pub fn encode(values: &[Option<f32>]) -> Result<Vec<u32>, SasaError> {
    let mut ids = Vec::with_capacity(values.len() + 2);
    ids.push(PAD);
    for (k, v) in values.iter().enumerate() {
        ids.push(match v {
            None => PAD,
            Some(x) if x.is_nan() => return Err(SasaError::NotANumber { position: k + 1 }),
            Some(x) => bin(*x),
        });
    }
    ids.push(PAD);
    Ok(ids)
}

/// Midpoint of a bin id (the last bin's upper edge is twice the last boundary); `None` for the
/// special ids, as the reference's `decode_float` gives.
pub fn midpoint(id: u32) -> Option<f32> {
    // The reference adds the edges as Python floats (f64), then stores the result as f32.
    const EDGES: [f64; 17] = [
        0.0, 0.8, 4.0, 9.6, 16.4, 24.5, 32.9, 42.0, 51.5, 61.2, 70.9, 81.6, 93.3, 107.2, 125.4,
        151.4, 302.8,
    ];
    match id {
        3..=18 => {
            let b = (id - 3) as usize;
            Some(((EDGES[b] + EDGES[b + 1]) / 2.0) as f32)
        }
        _ => None,
    }
}

/// Decodes ids (BOS/EOS included) to bin midpoints, `None` where masked or special.
pub fn decode(ids: &[u32]) -> Result<Vec<Option<f32>>, SasaError> {
    let inner = if ids.len() >= 2 {
        &ids[1..ids.len() - 1]
    } else {
        &[]
    };
    inner
        .iter()
        .enumerate()
        .map(|(k, &id)| {
            if id as usize >= VOCAB_SIZE {
                Err(SasaError::InvalidId {
                    id,
                    position: k + 2,
                })
            } else {
                Ok(midpoint(id))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries_fall_in_the_lower_bin() {
        assert_eq!(bin(0.8), 3);
        assert_eq!(bin(0.81), 4);
        assert_eq!(bin(-5.0), 3);
        assert_eq!(bin(151.4), 17);
        assert_eq!(bin(1000.0), 18);
        assert_eq!(
            encode(&[None, Some(f32::NAN)]).unwrap_err(),
            SasaError::NotANumber { position: 2 }
        );
        assert_eq!(token(18).unwrap(), "<151.4-inf>");
    }

    proptest! {
        #[test]
        fn decoded_midpoint_lies_in_its_bin(v in 0.0f32..400.0) {
            let ids = encode(&[Some(v)]).unwrap();
            let m = decode(&ids).unwrap()[0].unwrap();
            // Re-encoding the midpoint gives the same bin.
            prop_assert_eq!(bin(m), ids[1]);
        }
    }
}
