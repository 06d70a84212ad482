//! The generatable tracks and their special ids (spec §1.2–1.5, §1.7).

use serde::{Deserialize, Serialize};

use esm3_models::esm3::structure_ids;
use esm3_tokens::sequence as seq;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Track {
    Sequence,
    Structure,
    SecondaryStructure,
    Sasa,
    Function,
}

impl Track {
    pub const ALL: [Track; 5] = [
        Track::Sequence,
        Track::Structure,
        Track::SecondaryStructure,
        Track::Sasa,
        Track::Function,
    ];

    /// The SDK's name of the track.
    pub fn name(self) -> &'static str {
        match self {
            Track::Sequence => "sequence",
            Track::Structure => "structure",
            Track::SecondaryStructure => "secondary_structure",
            Track::Sasa => "sasa",
            Track::Function => "function",
        }
    }

    pub fn from_name(name: &str) -> Option<Track> {
        Track::ALL
            .into_iter()
            .find(|t| t.name() == name)
            .or(match name {
                "ss8" => Some(Track::SecondaryStructure),
                _ => None,
            })
    }

    pub fn mask_id(self) -> i64 {
        match self {
            Track::Sequence => seq::MASK as i64,
            Track::Structure => structure_ids::MASK,
            _ => 0,
        }
    }

    pub fn bos_id(self) -> i64 {
        match self {
            Track::Sequence => seq::BOS as i64,
            Track::Structure => structure_ids::BOS,
            _ => 0,
        }
    }

    pub fn eos_id(self) -> i64 {
        match self {
            Track::Sequence => seq::EOS as i64,
            Track::Structure => structure_ids::EOS,
            _ => 0,
        }
    }

    pub fn pad_id(self) -> i64 {
        match self {
            Track::Sequence => seq::PAD as i64,
            Track::Structure => structure_ids::PAD,
            _ => 0,
        }
    }

    /// Ids the sampler may produce before user `invalid_ids` are removed: the tokenizer's
    /// ids minus its special ids.
    pub fn samplable_ids(self) -> std::ops::Range<i64> {
        match self {
            Track::Sequence => 4..31,
            Track::Structure => 0..4096,
            Track::SecondaryStructure => 3..11,
            Track::Sasa => 3..19,
            Track::Function => 0..260,
        }
    }
}
