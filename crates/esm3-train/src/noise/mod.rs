//! Per-sample corruption for the masked multi-track objective (spec esm3-training.md §1.2–1.11)
//! and batching of corrupted samples into model inputs plus per-track targets.
//!
//! `corrupt` follows the order of §1.11: crop (dropping BOS/EOS for cropped-away termini),
//! residue-gap augmentation else tertiary-interface split, per-track dropout else schedule
//! mask, span or i.i.d. coordinate masking with the atomic-coordination override, Gaussian
//! noise on visible coordinates, pseudo-chain ids and pLDDT tracks. `collate` pads samples into
//! an [`Esm3Input`] and [`Targets`] where −1 means "not supervised".

mod augment;
mod collate;
mod config;
mod schedule;

use esm3_models::esm3::structure_ids;
use esm3_models::schema::vocab;
use esm3_tokens::{sasa as sasa_vocab, sequence as seq_vocab, ss8 as ss8_vocab};
use rand::Rng;
use rand_distr::{Distribution, Normal};
use thiserror::Error;

pub use collate::{collate, SupervisedCounts, Targets, TrainingBatch};
pub use config::{NoiseConfig, TrackNoise};
pub use schedule::Schedule;

/// Value of every target that is not supervised.
pub const IGNORE: i64 = -1;
/// Sequence id of `X`: kept as input but never a target (it is not a residue identity).
const SEQ_X: i64 = 24;
const NAN3: [[f32; 3]; 3] = [[f32::NAN; 3]; 3];

#[derive(Debug, Error)]
pub enum NoiseError {
    #[error("invalid training protein: {0}")]
    Protein(String),
    #[error("invalid noise config: {0}")]
    Config(String),
    #[error("cannot collate: {0}")]
    Collate(String),
}

pub type Result<T> = std::result::Result<T, NoiseError>;

/// One protein with whichever tracks the data has; every present track has the sequence's
/// length.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainingProtein {
    /// One-letter residues (`LAGVSERTIDPKQNFYMHWCXBUZO`); `X` is input-only, never a target.
    pub sequence: String,
    /// VQ-VAE codes per residue in 0..4096 (no BOS/EOS); any other value means "no code".
    pub structure_tokens: Option<Vec<i64>>,
    /// N, CA, C per residue in Å; a residue with any non-finite atom counts as unresolved.
    pub backbone: Option<Vec<[[f32; 3]; 3]>>,
    /// DSSP letters `GHITEBSC`; blank or `-` is read as loop `C`; `X`, `_`, `?` as unknown.
    pub ss8: Option<String>,
    /// Per-residue SASA in Å²; NaN = unknown.
    pub sasa: Option<Vec<f32>>,
    /// 8 function ids per residue in 0..260; an all-zero row means "no label" (`<pad>`).
    pub function_tokens: Option<Vec<[i64; 8]>>,
    /// Residue-annotation ids per residue in 0..1478 (0 entries are ignored); an empty list is
    /// a valid "no annotation" label.
    pub residue_annotations: Option<Vec<Vec<i64>>>,
}

/// Per-position targets of one sample; [`IGNORE`] where not supervised.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleTargets {
    pub sequence: Vec<i64>,
    pub structure: Vec<i64>,
    pub ss8: Vec<i64>,
    pub sasa: Vec<i64>,
    pub function: Vec<[i64; 8]>,
    /// `None` when the protein has no annotations; else per position `Some(labels)` where
    /// supervised (an empty list supervises "no label present").
    pub residue_annotations: Option<Vec<Option<Vec<i64>>>>,
}

impl SampleTargets {
    /// Dense multi-hot `[L, 1478]`: 1/0 where supervised, −1 elsewhere.
    pub fn residue_multi_hot(&self) -> Option<Vec<f32>> {
        let rows = self.residue_annotations.as_ref()?;
        let mut out = vec![-1.0f32; rows.len() * vocab::RESIDUE];
        for (p, row) in rows.iter().enumerate() {
            if let Some(labels) = row {
                let dst = &mut out[p * vocab::RESIDUE..(p + 1) * vocab::RESIDUE];
                dst.fill(0.0);
                for &l in labels {
                    dst[l as usize] = 1.0;
                }
            }
        }
        Some(out)
    }
}

/// What happened to one track, for logging.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrackRecord {
    /// The protein has this track.
    pub present: bool,
    /// Whole-track dropout fired.
    pub dropped: bool,
    /// Drawn mask rate (1.0 when dropped, 0.0 when absent).
    pub rate: f64,
    /// Residue positions masked on input.
    pub n_masked: usize,
    /// Positions with a target.
    pub n_supervised: usize,
}

/// How the coordinate mask was drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordinateMask {
    /// No backbone given.
    Absent,
    Dropped,
    Iid,
    Span,
    /// Only this triplet (original residue indices, 0-based) and some neighbours are shown.
    AtomicCoordination {
        triplet: [usize; 3],
    },
}

/// Which chain-splitting augmentation was applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Augmentation {
    None,
    ResidueGap {
        chains: usize,
    },
    /// Split around the long-range contact (original residue indices, 0-based).
    InterfaceSplit {
        contact: (usize, usize),
    },
}

/// Everything drawn for one sample.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseRecord {
    /// Residue window kept by the crop, `start..end` in original indices.
    pub window: (usize, usize),
    pub augmentation: Augmentation,
    pub coordinate_mask: CoordinateMask,
    pub sequence: TrackRecord,
    pub structure: TrackRecord,
    /// `n_masked` counts resolved residues hidden; `rate` is the drawn rate even when the
    /// atomic-coordination override replaced the mask.
    pub coordinates: TrackRecord,
    pub ss8: TrackRecord,
    pub sasa: TrackRecord,
    pub function: TrackRecord,
    pub residue_annotations: TrackRecord,
    /// Residues whose coordinates are visible while their structure token is masked
    /// (spec §1.3 diagnostic: the model may learn to copy the tokenizer there).
    pub visible_coords_masked_token: usize,
}

/// One corrupted sample; every per-position vector has `len()` entries including the
/// BOS/EOS/chain-break positions.
#[derive(Clone, Debug, PartialEq)]
pub struct CorruptedSample {
    /// Original residue index (0-based) per position, −1 for BOS/EOS/chain break.
    pub residue_index: Vec<i64>,
    /// Pseudo-chain per position (BOS joins the first chain, a break the chain before it).
    pub chain_id: Vec<i64>,
    pub sequence: Vec<i64>,
    pub structure: Vec<i64>,
    pub ss8: Vec<i64>,
    pub sasa: Vec<i64>,
    pub function: Vec<[i64; 8]>,
    pub residue_annotations: Vec<[i64; 16]>,
    /// N, CA, C with noise where visible; NaN where masked, unresolved or special.
    pub coordinates: Vec<[[f32; 3]; 3]>,
    /// 1.0 where coordinates are visible, 0.0 elsewhere (the wheel's convention, spec §1.10).
    pub per_res_plddt: Vec<f32>,
    /// Mean pLDDT before masking: experimental structures are 1.0, as is "no structure".
    pub average_plddt: f32,
    pub targets: SampleTargets,
    pub record: NoiseRecord,
}

impl CorruptedSample {
    pub fn len(&self) -> usize {
        self.sequence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sequence.is_empty()
    }
}

/// A position of the corrupted sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Bos,
    Eos,
    Break,
    Res(usize),
}

/// Per-residue labels after validation, over the full protein.
struct Labels {
    sequence: Vec<i64>,
    /// −1 where there is no true code.
    structure: Option<Vec<i64>>,
    /// `None` per residue where any backbone atom is missing.
    coords: Option<Vec<Option<[[f32; 3]; 3]>>>,
    /// 0 = unknown.
    ss8: Option<Vec<i64>>,
    /// 0 = unknown.
    sasa: Option<Vec<i64>>,
    /// All zero = no label.
    function: Option<Vec<[i64; 8]>>,
    /// Sorted, deduplicated, 0 removed.
    residue: Option<Vec<Vec<i64>>>,
}

impl Labels {
    fn len(&self) -> usize {
        self.sequence.len()
    }

    fn ca(&self, k: usize) -> Option<[f32; 3]> {
        self.coords.as_ref()?[k].map(|c| c[1])
    }
}

fn validate(protein: &TrainingProtein) -> Result<Labels> {
    let sequence = sequence_ids(&protein.sequence)?;
    let n = sequence.len();
    let coords = match &protein.backbone {
        Some(b) => {
            check_len("backbone", b.len(), n)?;
            Some(
                b.iter()
                    .map(|r| r.iter().flatten().all(|v| v.is_finite()).then_some(*r))
                    .collect::<Vec<_>>(),
            )
        }
        None => None,
    };
    let structure = match &protein.structure_tokens {
        Some(t) => Some(structure_labels(t, coords.as_deref(), n)?),
        None => None,
    };
    let ss8 = match &protein.ss8 {
        Some(s) => Some(ss8_labels(s, n)?),
        None => None,
    };
    let sasa = match &protein.sasa {
        Some(v) => {
            check_len("sasa", v.len(), n)?;
            let opt: Vec<Option<f32>> = v.iter().map(|&x| (!x.is_nan()).then_some(x)).collect();
            let ids = sasa_vocab::encode(&opt).map_err(|e| NoiseError::Protein(e.to_string()))?;
            Some(ids[1..ids.len() - 1].iter().map(|&v| v as i64).collect())
        }
        None => None,
    };
    let function = match &protein.function_tokens {
        Some(f) => {
            check_len("function_tokens", f.len(), n)?;
            check_ids(f, vocab::FUNCTION, "function token")?;
            Some(f.clone())
        }
        None => None,
    };
    let residue = match &protein.residue_annotations {
        Some(r) => {
            check_len("residue_annotations", r.len(), n)?;
            check_ids(r, vocab::RESIDUE, "residue annotation")?;
            // Each residue's labels as a set: empty slots (0) and repeats dropped, sorted.
            let sets = r.iter().map(|labels| {
                let mut l: Vec<i64> = labels.iter().copied().filter(|&v| v != 0).collect();
                l.sort_unstable();
                l.dedup();
                l
            });
            Some(sets.collect())
        }
        None => None,
    };
    Ok(Labels {
        sequence,
        structure,
        coords,
        ss8,
        sasa,
        function,
        residue,
    })
}

/// Sequence ids of the residue letters; anything else is an error naming its position.
fn sequence_ids(sequence: &str) -> Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(sequence.len());
    for (k, c) in sequence.chars().enumerate() {
        match seq_vocab::char_id(c) {
            Some(id) if (4..=28).contains(&id) => ids.push(id as i64),
            _ => {
                return Err(NoiseError::Protein(format!(
                    "sequence character {c:?} at position {} (1-based) is not a residue letter \
                     (expected one of LAGVSERTIDPKQNFYMHWCXBUZO)",
                    k + 1
                )))
            }
        }
    }
    if ids.is_empty() {
        return Err(NoiseError::Protein("empty sequence".into()));
    }
    Ok(ids)
}

/// A per-residue track must have one entry per residue.
fn check_len(name: &str, got: usize, n: usize) -> Result<()> {
    if got != n {
        return Err(NoiseError::Protein(format!(
            "`{name}` has {got} entries but the sequence has {n} residues"
        )));
    }
    Ok(())
}

/// Every id of every residue's row in `0..limit`, else an error naming the residue.
fn check_ids<R: AsRef<[i64]>>(rows: &[R], limit: usize, what: &str) -> Result<()> {
    for (k, row) in rows.iter().enumerate() {
        if let Some(v) = row.as_ref().iter().find(|v| !(0..limit as i64).contains(v)) {
            return Err(NoiseError::Protein(format!(
                "{what} {v} at residue {} (1-based) is outside 0..{limit}",
                k + 1
            )));
        }
    }
    Ok(())
}

/// Structure labels: a code for an unresolved residue is the tokenizer's "no coordinates" code,
/// not a structure label, so it is [`IGNORE`]d, as is any id outside the structure logits.
fn structure_labels(
    tokens: &[i64],
    coords: Option<&[Option<[[f32; 3]; 3]>]>,
    n: usize,
) -> Result<Vec<i64>> {
    check_len("structure_tokens", tokens.len(), n)?;
    Ok(tokens
        .iter()
        .enumerate()
        .map(|(k, &v)| {
            let resolved = coords.is_none_or(|c| c[k].is_some());
            if (0..vocab::STRUCTURE_LOGITS as i64).contains(&v) && resolved {
                v
            } else {
                IGNORE
            }
        })
        .collect())
}

/// SS8 ids of a DSSP string, with the blanks DSSP writes for coil (' ', '-') read as C and
/// unknowns ('X', '?') as mask.
fn ss8_labels(ss8: &str, n: usize) -> Result<Vec<i64>> {
    let cleaned: String = ss8
        .chars()
        .map(|c| match c {
            ' ' | '-' => 'C',
            'X' | '?' => ss8_vocab::MASK_CHAR,
            c => c,
        })
        .collect();
    check_len("ss8", cleaned.chars().count(), n)?;
    let ids = ss8_vocab::encode(&cleaned).map_err(|e| NoiseError::Protein(e.to_string()))?;
    Ok(ids[1..ids.len() - 1].iter().map(|&v| v as i64).collect())
}

/// Dropout else schedule mask over `n` residue positions (spec §1.2–1.3).
fn draw_mask(track: &TrackNoise, n: usize, rng: &mut impl Rng) -> (bool, f64, Vec<bool>) {
    if rng.random_bool(track.dropout) {
        return (true, 1.0, vec![true; n]);
    }
    let r = track.schedule.sample_rate(rng);
    let mask = (0..n).map(|_| rng.random::<f64>() < r).collect();
    (false, r, mask)
}

/// Corrupts one protein into model inputs and targets (spec §1.11 order).
pub fn corrupt(
    protein: &TrainingProtein,
    config: &NoiseConfig,
    rng: &mut impl Rng,
) -> Result<CorruptedSample> {
    config.validate()?;
    let labels = validate(protein)?;
    // The random draws happen in this order (crop, augmentation, masks, coordinate noise), so a
    // seed gives the same sample as it always did.
    let layout = SampleLayout::draw(&labels, config, rng);
    let masks = TrackMasks::draw(&labels, &layout.residues, config, rng);
    let noise = Normal::new(0.0f32, config.coordinate_noise_std as f32)
        .map_err(|e| NoiseError::Config(format!("coordinate_noise_std: {e}")))?;
    let mut s = CorruptedSample::empty(&layout, &labels);
    let mut m = 0usize; // index into `layout.residues`
    for (p, slot) in layout.slots.iter().enumerate() {
        match *slot {
            Slot::Res(k) => {
                let at = Position {
                    slot: p,
                    residue: k,
                    masked: m,
                };
                s.fill_residue(at, &labels, &masks, &noise, rng);
                m += 1;
            }
            special => s.push_special(special),
        }
    }
    s.record_counts(&labels, &masks, &layout.residues);
    Ok(s)
}

/// Which residues a sample holds and in which slots (steps 2–3 of spec §1.11).
struct SampleLayout {
    window: (usize, usize),
    augmentation: Augmentation,
    slots: Vec<Slot>,
    /// Chain index of each slot.
    chain_of: Vec<i64>,
    /// Residues of the sample in position order; masks index this list.
    residues: Vec<usize>,
}

impl SampleLayout {
    fn draw(labels: &Labels, config: &NoiseConfig, rng: &mut impl Rng) -> Self {
        let n_all = labels.len();
        // 2. Crop: a window of at most crop_length − 2 residues; a terminus outside it loses its
        // BOS/EOS token.
        let w = n_all.min(config.crop_length - 2);
        let start = rng.random_range(0..=n_all - w);
        let end = start + w;
        let (mut bos, mut eos) = (start == 0, end == n_all);

        // 3. Residue gaps, else the interface split.
        let mut chains = vec![std::ops::Range { start, end }];
        let mut augmentation = Augmentation::None;
        if let Some(split) = augment::residue_gap(start, end, config, rng) {
            augmentation = Augmentation::ResidueGap {
                chains: split.len(),
            };
            chains = split;
        } else if labels.coords.is_some() && rng.random_bool(config.interface_split_probability) {
            if let Some((contact, split)) =
                augment::interface_split(labels, start, end, config, rng)
            {
                bos &= split[0].start == start;
                eos &= split[1].end == end;
                augmentation = Augmentation::InterfaceSplit { contact };
                chains = split;
            }
        }

        let mut slots = Vec::with_capacity(w + chains.len() + 1);
        let mut chain_of = Vec::with_capacity(slots.capacity());
        if bos {
            slots.push(Slot::Bos);
            chain_of.push(0i64);
        }
        for (c, range) in chains.iter().enumerate() {
            if c > 0 {
                slots.push(Slot::Break);
                chain_of.push(c as i64 - 1);
            }
            for k in range.clone() {
                slots.push(Slot::Res(k));
                chain_of.push(c as i64);
            }
        }
        if eos {
            slots.push(Slot::Eos);
            chain_of.push(chains.len() as i64 - 1);
        }
        Self {
            window: (start, end),
            augmentation,
            slots,
            chain_of,
            residues: chains.iter().flat_map(|r| r.clone()).collect(),
        }
    }
}

/// One track's mask draw: (dropped, rate, masked per residue of the sample).
type MaskDraw = (bool, f64, Vec<bool>);

/// The per-track masks of one sample (step 5 of spec §1.11).
struct TrackMasks {
    sequence: MaskDraw,
    structure: MaskDraw,
    coordinates: MaskDraw,
    coordinate_mask: CoordinateMask,
    ss8: MaskDraw,
    sasa: MaskDraw,
    function: MaskDraw,
    residue_annotations: MaskDraw,
}

impl TrackMasks {
    fn draw(labels: &Labels, residues: &[usize], config: &NoiseConfig, rng: &mut impl Rng) -> Self {
        let nr = residues.len();
        let absent = || (false, 0.0, vec![false; nr]);
        let sequence = draw_mask(&config.sequence, nr, rng);
        let structure = match labels.structure {
            Some(_) => draw_mask(&config.structure, nr, rng),
            None => absent(),
        };
        let (coordinates, coordinate_mask) = match &labels.coords {
            None => (absent(), CoordinateMask::Absent),
            Some(_) => {
                let (dropped, rate, iid) = draw_mask(&config.coordinates, nr, rng);
                let (mut mask, mut mode) = if dropped {
                    (iid, CoordinateMask::Dropped)
                } else if rng.random_bool(config.span_mask_probability) {
                    (
                        augment::span_mask(nr, rate, config.max_spans, rng),
                        CoordinateMask::Span,
                    )
                } else {
                    (iid, CoordinateMask::Iid)
                };
                if rng.random_bool(config.atomic_coordination_probability) {
                    if let Some((triplet, shown)) =
                        augment::atomic_coordination(labels, residues, config, rng)
                    {
                        mask = shown.iter().map(|s| !s).collect();
                        mode = CoordinateMask::AtomicCoordination { triplet };
                    }
                }
                ((dropped, rate, mask), mode)
            }
        };
        let mut maybe = |present: bool, track: &TrackNoise| {
            if present {
                draw_mask(track, nr, rng)
            } else {
                absent()
            }
        };
        let ss8 = maybe(labels.ss8.is_some(), &config.ss8);
        let sasa = maybe(labels.sasa.is_some(), &config.sasa);
        let function = maybe(labels.function.is_some(), &config.function);
        let residue_annotations = maybe(labels.residue.is_some(), &config.residue_annotations);
        Self {
            sequence,
            structure,
            coordinates,
            coordinate_mask,
            ss8,
            sasa,
            function,
            residue_annotations,
        }
    }
}

/// A residue's place: its slot in the sample, its index in the protein, its index in the masks.
#[derive(Clone, Copy)]
struct Position {
    slot: usize,
    residue: usize,
    masked: usize,
}

impl CorruptedSample {
    /// Every slot padded and unsupervised; residue slots are filled in afterwards.
    fn empty(layout: &SampleLayout, labels: &Labels) -> Self {
        let l = layout.slots.len();
        let unset = TrackRecord::default;
        CorruptedSample {
            residue_index: Vec::with_capacity(l),
            chain_id: layout.chain_of.clone(),
            sequence: Vec::with_capacity(l),
            structure: Vec::with_capacity(l),
            ss8: vec![0; l],
            sasa: vec![0; l],
            function: vec![[0; 8]; l],
            residue_annotations: vec![[0; 16]; l],
            coordinates: vec![NAN3; l],
            per_res_plddt: vec![0.0; l],
            average_plddt: 1.0,
            targets: SampleTargets {
                sequence: vec![IGNORE; l],
                structure: vec![IGNORE; l],
                ss8: vec![IGNORE; l],
                sasa: vec![IGNORE; l],
                function: vec![[IGNORE; 8]; l],
                residue_annotations: labels.residue.as_ref().map(|_| vec![None; l]),
            },
            record: NoiseRecord {
                window: layout.window,
                augmentation: layout.augmentation,
                coordinate_mask: CoordinateMask::Absent,
                sequence: unset(),
                structure: unset(),
                coordinates: unset(),
                ss8: unset(),
                sasa: unset(),
                function: unset(),
                residue_annotations: unset(),
                visible_coords_masked_token: 0,
            },
        }
    }

    /// BOS, EOS or a chain break: its tokens on the sequence and structure tracks.
    fn push_special(&mut self, slot: Slot) {
        let (sequence, structure) = match slot {
            Slot::Bos => (seq_vocab::BOS, structure_ids::BOS),
            Slot::Eos => (seq_vocab::EOS, structure_ids::EOS),
            Slot::Break => (seq_vocab::CHAINBREAK, structure_ids::CHAINBREAK),
            Slot::Res(_) => unreachable!("residue slots are filled by fill_residue"),
        };
        self.residue_index.push(-1);
        self.sequence.push(sequence as i64);
        self.structure.push(structure);
    }

    /// Steps 6–7 for one residue: masked tracks become targets, visible ones inputs, and
    /// visible coordinates get noise.
    fn fill_residue(
        &mut self,
        at: Position,
        labels: &Labels,
        masks: &TrackMasks,
        noise: &Normal<f32>,
        rng: &mut impl Rng,
    ) {
        let Position {
            slot: p,
            residue: k,
            masked: m,
        } = at;
        self.residue_index.push(k as i64);
        let t = &mut self.targets;

        let label = labels.sequence[k];
        if masks.sequence.2[m] {
            self.sequence.push(seq_vocab::MASK as i64);
            if label != SEQ_X {
                t.sequence[p] = label;
            }
        } else {
            self.sequence.push(label);
        }

        let code = labels.structure.as_ref().map_or(IGNORE, |v| v[k]);
        let structure_masked = masks.structure.2[m];
        if structure_masked || code < 0 {
            self.structure.push(structure_ids::MASK);
            if structure_masked && code >= 0 {
                t.structure[p] = code;
            }
        } else {
            self.structure.push(code);
        }

        if let Some(c) = labels.coords.as_ref().and_then(|c| c[k]) {
            if !masks.coordinates.2[m] {
                let mut noisy = c;
                for v in noisy.iter_mut().flatten() {
                    *v += noise.sample(rng);
                }
                self.coordinates[p] = noisy;
                self.per_res_plddt[p] = 1.0;
                if self.structure[p] == structure_ids::MASK {
                    self.record.visible_coords_masked_token += 1;
                }
            }
        }

        self.fill_labels(at, labels, masks);
    }

    /// The SS8, SASA, function and residue-annotation tracks of one residue.
    fn fill_labels(&mut self, at: Position, labels: &Labels, masks: &TrackMasks) {
        let Position {
            slot: p,
            residue: k,
            masked: m,
        } = at;
        let t = &mut self.targets;
        for (track, mask, input, target) in [
            (&labels.ss8, &masks.ss8.2, &mut self.ss8, &mut t.ss8),
            (&labels.sasa, &masks.sasa.2, &mut self.sasa, &mut t.sasa),
        ] {
            if let Some(v) = track {
                if mask[m] {
                    if v[k] != 0 {
                        target[p] = v[k];
                    }
                } else {
                    input[p] = v[k];
                }
            }
        }

        if let Some(f) = &labels.function {
            if masks.function.2[m] {
                if f[k].iter().any(|&v| v != 0) {
                    t.function[p] = f[k];
                }
            } else {
                self.function[p] = f[k];
            }
        }

        if let Some(r) = &labels.residue {
            if masks.residue_annotations.2[m] {
                if let Some(rows) = t.residue_annotations.as_mut() {
                    rows[p] = Some(r[k].clone());
                }
            } else {
                // The input holds at most 16 labels; targets keep them all.
                for (slot, &v) in self.residue_annotations[p].iter_mut().zip(&r[k]) {
                    *slot = v;
                }
            }
        }
    }

    /// The noise record's per-track counts, from the masks and the filled targets.
    fn record_counts(&mut self, labels: &Labels, masks: &TrackMasks, residues: &[usize]) {
        let count = |v: &[i64]| v.iter().filter(|&&x| x != IGNORE).count();
        let rec = |present: bool, d: &MaskDraw, n_supervised: usize| TrackRecord {
            present,
            dropped: d.0,
            rate: d.1,
            n_masked: d.2.iter().filter(|&&x| x).count(),
            n_supervised,
        };
        let t = &self.targets;
        let r = &mut self.record;
        r.coordinate_mask = masks.coordinate_mask;
        r.sequence = rec(true, &masks.sequence, count(&t.sequence));
        r.structure = rec(
            labels.structure.is_some(),
            &masks.structure,
            count(&t.structure),
        );
        r.coordinates = TrackRecord {
            n_masked: residues
                .iter()
                .zip(&masks.coordinates.2)
                .filter(|(&k, &masked)| masked && labels.ca(k).is_some())
                .count(),
            ..rec(labels.coords.is_some(), &masks.coordinates, 0)
        };
        r.ss8 = rec(labels.ss8.is_some(), &masks.ss8, count(&t.ss8));
        r.sasa = rec(labels.sasa.is_some(), &masks.sasa, count(&t.sasa));
        let fun_sup = t.function.iter().filter(|r| r[0] != IGNORE).count();
        r.function = rec(labels.function.is_some(), &masks.function, fun_sup);
        let res_sup = t
            .residue_annotations
            .as_ref()
            .map_or(0, |r| r.iter().filter(|x| x.is_some()).count());
        r.residue_annotations = rec(
            labels.residue.is_some(),
            &masks.residue_annotations,
            res_sup,
        );
    }
}
