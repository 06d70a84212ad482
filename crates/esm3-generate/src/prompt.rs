//! The prompt file: one TOML (or JSON) document saying what to design and how.
//!
//! ```toml
//! name = "binder"                 # output file stem (default: the prompt file's stem)
//! length = 80                     # needed when no sequence is given
//! sequence = "M___K____"          # `_` = to be generated; length must agree with `length`
//! secondary_structure = "___HHHHHHHH___"   # DSSP-8 letters GHITEBSC, `_` free
//! sasa = [nan, 12.5, 0.0]         # Å² per residue, nan = free
//!
//! [[motif]]                       # residues of a real structure placed in the design
//! file = "1ubq.pdb"               # PDB/mmCIF, plain or .gz (relative to the prompt file)
//! chain = "A"                     # default: first protein chain
//! residues = "10-25"              # author residue numbers in that chain (inclusive)
//! at = 31                         # 1-based design position of the motif's first residue
//! keep_sequence = true            # also fix the motif's amino acids (default true)
//!
//! [[function]]                    # InterPro ids or keywords over spans (needs function_decoder/)
//! label = "IPR000719"
//! start = 1
//! end = 40
//!
//! [[residue_annotation]]          # residue-level labels (needs residue_annotations.csv)
//! label = "zinc ion binding site" # a `label_clean` of the model's residue_annotations.csv
//! start = 12                      # 1-based, inclusive
//! end = 18
//!
//! [[generate]]                    # tracks to generate, in order (default: sequence, structure)
//! track = "sequence"              # sequence | structure | secondary_structure | sasa | function
//! num_steps = 20
//! temperature = 0.7
//! strategy = "random"             # random | entropy
//! schedule = "cosine"             # cosine | linear
//! top_p = 1.0
//! temperature_annealing = true
//! invalid_ids = []
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use esm3_protein::residue_constants::ATOM_TYPE_NUM;
use esm3_protein::{read_chain, Vec3};

use crate::config::GenerationConfig;
use crate::protein::EsmProtein;
use crate::track::Track;

/// Longest protein we accept: the longest the official model was trained on.
pub const MAX_LENGTH: usize = 2048;

/// A complex is written `AAA|BBB`: each `|` between two chains. One at an end or two in a row
/// would make an empty chain.
pub fn check_chain_breaks(sequence: &str) -> Result<(), String> {
    let letters: Vec<char> = sequence.chars().collect();
    for (i, &c) in letters.iter().enumerate() {
        if c != '|' {
            continue;
        }
        if i == 0 || i + 1 == letters.len() {
            return Err(format!(
                "chain break `|` at position {} ends the sequence; `|` goes between two chains (AAA|BBB)",
                i + 1
            ));
        }
        if letters[i + 1] == '|' {
            return Err(format!(
                "two chain breaks `||` at positions {}-{}: an empty chain",
                i + 1,
                i + 2
            ));
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFile {
    pub name: Option<String>,
    pub length: Option<usize>,
    pub sequence: Option<String>,
    pub secondary_structure: Option<String>,
    pub sasa: Option<Vec<f32>>,
    #[serde(default)]
    pub motif: Vec<MotifSpec>,
    /// InterPro ids or keywords over residue spans.
    #[serde(default)]
    pub function: Vec<FunctionSpec>,
    /// Residue-level labels over residue spans.
    #[serde(default)]
    pub residue_annotation: Vec<FunctionSpec>,
    #[serde(default)]
    pub generate: Vec<GenerationConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotifSpec {
    pub file: PathBuf,
    pub chain: Option<String>,
    pub residues: String,
    pub at: usize,
    #[serde(default = "yes")]
    pub keep_sequence: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// An InterPro id (`IPR000001`) or a keyword of the function vocabulary.
    pub label: String,
    /// 1-based, inclusive.
    pub start: usize,
    pub end: usize,
}

fn yes() -> bool {
    true
}

/// A motif placed in the design: design positions (0-based) and the file's coordinates there.
#[derive(Clone, Debug)]
pub struct PlacedMotif {
    pub label: String,
    pub positions: Vec<usize>,
    pub atom37: Vec<[Vec3; ATOM_TYPE_NUM]>,
}

/// A prompt ready to run.
#[derive(Clone, Debug)]
pub struct Prompt {
    pub name: String,
    pub protein: EsmProtein,
    pub motifs: Vec<PlacedMotif>,
    pub plan: Vec<GenerationConfig>,
}

fn parse_range(text: &str) -> Option<(i32, i32)> {
    let (a, b) = match text.split_once('-') {
        Some((a, b)) if !a.is_empty() => (a, b),
        _ => (text, text),
    };
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// The default plan: sequence, then structure.
pub fn default_plan() -> Vec<GenerationConfig> {
    vec![
        GenerationConfig::new(Track::Sequence),
        GenerationConfig::new(Track::Structure),
    ]
}

impl Prompt {
    /// Reads a `.toml` or `.json` prompt; paths inside are relative to the prompt's folder.
    pub fn read(path: &Path) -> Result<Prompt, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let file: PromptFile = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "design".into());
        let base = path.parent().unwrap_or(Path::new("."));
        Prompt::build(file, &stem, base).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Validates a parsed prompt and resolves its motifs.
    pub fn build(file: PromptFile, default_name: &str, base: &Path) -> Result<Prompt, String> {
        let length = prompt_length(&file)?;
        check_per_residue_tracks(&file, length)?;
        let mut sequence: Vec<char> = file
            .sequence
            .clone()
            .unwrap_or_else(|| "_".repeat(length))
            .chars()
            .collect();
        let mut coords = vec![[[f32::NAN; 3]; ATOM_TYPE_NUM]; length];
        let motifs = place_motifs(&file.motif, base, &mut sequence, &mut coords)?;
        check_annotation_ranges(&file, length)?;
        let plan = if file.generate.is_empty() {
            default_plan()
        } else {
            file.generate
        };
        for (i, c) in plan.iter().enumerate() {
            c.validate()
                .map_err(|e| format!("generate step {}: {e}", i + 1))?;
        }
        let annotations = |spans: Vec<(String, usize, usize)>| {
            (!spans.is_empty()).then(|| {
                spans
                    .into_iter()
                    .map(|(label, start, end)| {
                        esm3_tokens::function::FunctionAnnotation::new(label, start, end)
                    })
                    .collect()
            })
        };
        let protein = EsmProtein {
            sequence: Some(sequence.into_iter().collect()),
            secondary_structure: file.secondary_structure,
            sasa: file
                .sasa
                .map(|v| v.into_iter().map(|x| (!x.is_nan()).then_some(x)).collect()),
            coordinates: (!motifs.is_empty()).then_some(coords),
            function_annotations: annotations(
                file.function
                    .iter()
                    .map(|f| (f.label.clone(), f.start, f.end))
                    .collect(),
            ),
            residue_annotations: annotations(
                file.residue_annotation
                    .iter()
                    .map(|r| (r.label.clone(), r.start, r.end))
                    .collect(),
            ),
            ..Default::default()
        };
        Ok(Prompt {
            name: file.name.unwrap_or_else(|| default_name.to_string()),
            protein,
            motifs,
            plan,
        })
    }

    /// A prompt of `length` fully masked residues.
    pub fn unconditional(
        name: &str,
        length: usize,
        plan: Vec<GenerationConfig>,
    ) -> Result<Prompt, String> {
        Prompt::build(
            PromptFile {
                name: Some(name.into()),
                length: Some(length),
                sequence: None,
                secondary_structure: None,
                sasa: None,
                motif: Vec::new(),
                function: Vec::new(),
                residue_annotation: Vec::new(),
                generate: plan,
            },
            name,
            Path::new("."),
        )
    }
}

/// The protein's length: `length`, else the sequence's, and both agreeing when both are given.
fn prompt_length(file: &PromptFile) -> Result<usize, String> {
    let seq_len = file.sequence.as_ref().map(|s| s.chars().count());
    let length = match (file.length, seq_len) {
        (Some(l), Some(s)) if l != s => {
            return Err(format!("length = {l} but the sequence has {s} residues"))
        }
        (Some(l), _) => l,
        (None, Some(s)) => s,
        (None, None) => return Err("give `length` or a `sequence`".into()),
    };
    if length == 0 {
        return Err("length must be at least 1".into());
    }
    if length > MAX_LENGTH {
        return Err(format!(
            "length {length} is beyond the model's limit of {MAX_LENGTH} residues"
        ));
    }
    Ok(length)
}

/// Secondary structure and SASA of the protein's length, with only SS8 letters or `_`.
fn check_per_residue_tracks(file: &PromptFile, length: usize) -> Result<(), String> {
    let check_len = |what: &str, n: Option<usize>| match n {
        Some(n) if n != length => Err(format!("{what} has {n} residues, expected {length}")),
        _ => Ok(()),
    };
    check_len(
        "secondary_structure",
        file.secondary_structure.as_ref().map(|s| s.chars().count()),
    )?;
    check_len("sasa", file.sasa.as_ref().map(Vec::len))?;
    if let Some(ss) = &file.secondary_structure {
        if let Some((i, c)) = ss
            .chars()
            .enumerate()
            .find(|(_, c)| !"GHITEBSC_".contains(*c))
        {
            return Err(format!(
                "secondary_structure: '{c}' at position {} is not one of GHITEBSC or _",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Reads each motif's residues from its file and places them at `at`: their coordinates into
/// `coords`, their residues into `sequence` where `keep_sequence`; motifs may not overlap.
fn place_motifs(
    specs: &[MotifSpec],
    base: &Path,
    sequence: &mut [char],
    coords: &mut [[Vec3; ATOM_TYPE_NUM]],
) -> Result<Vec<PlacedMotif>, String> {
    let length = sequence.len();
    let mut motifs = Vec::new();
    let mut taken = vec![None::<usize>; length];
    for (k, m) in specs.iter().enumerate() {
        let label = format!(
            "motif {} ({} residues {})",
            k + 1,
            m.file.display(),
            m.residues
        );
        let path = if m.file.is_absolute() {
            m.file.clone()
        } else {
            base.join(&m.file)
        };
        let chain = read_chain(&path, m.chain.as_deref()).map_err(|e| format!("{label}: {e}"))?;
        let (from, to) = parse_range(&m.residues)
            .filter(|(a, b)| a <= b)
            .ok_or_else(|| format!("{label}: residues must look like `10-25` or `12`"))?;
        let picked: Vec<usize> = (0..chain.len())
            .filter(|&i| (from..=to).contains(&chain.residue_index[i]))
            .collect();
        let expected = (to - from + 1) as usize;
        if picked.len() != expected {
            return Err(format!(
                "{label}: chain {} has {} residues numbered {from}..{to}, expected {expected} (gaps or insertion codes)",
                chain.chain_id,
                picked.len()
            ));
        }
        if m.at == 0 || m.at - 1 + picked.len() > length {
            return Err(format!(
                "{label}: placed at {} it would end at {}, outside the protein (length {length})",
                m.at,
                m.at as i64 - 1 + picked.len() as i64
            ));
        }
        let positions: Vec<usize> = (m.at - 1..m.at - 1 + picked.len()).collect();
        for (&pos, &src) in positions.iter().zip(&picked) {
            if let Some(other) = taken[pos] {
                return Err(format!(
                    "{label} overlaps motif {} at position {}",
                    other + 1,
                    pos + 1
                ));
            }
            taken[pos] = Some(k);
            coords[pos] = chain.atom37[src];
            if m.keep_sequence {
                let aa = chain.sequence.chars().nth(src).unwrap_or('X');
                if sequence[pos] != '_' && sequence[pos] != aa {
                    return Err(format!(
                        "{label}: the prompt sequence has {} at position {}, the motif has {aa}",
                        sequence[pos],
                        pos + 1
                    ));
                }
                sequence[pos] = aa;
            }
        }
        motifs.push(PlacedMotif {
            label,
            atom37: positions.iter().map(|&p| coords[p]).collect(),
            positions,
        });
    }
    Ok(motifs)
}

/// Function and residue-annotation spans inside 1..=length, residue annotations labelled.
fn check_annotation_ranges(file: &PromptFile, length: usize) -> Result<(), String> {
    for f in &file.function {
        if f.start == 0 || f.start > f.end || f.end > length {
            return Err(format!(
                "function `{}` over {}-{} is outside the protein (1-{length})",
                f.label, f.start, f.end
            ));
        }
    }
    for (k, r) in file.residue_annotation.iter().enumerate() {
        if r.label.trim().is_empty() {
            return Err(format!("residue_annotation {}: the label is empty", k + 1));
        }
        if r.start == 0 || r.start > r.end || r.end > length {
            return Err(format!(
                "residue_annotation {} `{}` over {}-{} is outside the protein (expected 1 <= start <= end <= {length})",
                k + 1,
                r.label,
                r.start,
                r.end
            ));
        }
    }
    Ok(())
}

/// Puts each motif back exactly as given: the generated structure is superposed onto the motif's
/// backbone (N, CA, C), then the motif residues' atoms are written in place. Returns each motif's
/// backbone RMSD (Å) after superposition and before the atoms were replaced — how well the
/// generated scaffold itself matches the motif.
pub fn restore_motifs(protein: &mut EsmProtein, motifs: &[PlacedMotif]) -> Vec<Option<f64>> {
    use esm3_protein::metrics::superpose;
    use esm3_protein::residue_constants::{C, CA, N};
    let Some(coords) = protein.coordinates.as_mut() else {
        return vec![None; motifs.len()];
    };
    let mut mobile = Vec::new();
    let mut target = Vec::new();
    for m in motifs {
        for (&p, given) in m.positions.iter().zip(&m.atom37) {
            for a in [N, CA, C] {
                if given[a].iter().all(|v| v.is_finite())
                    && coords[p][a].iter().all(|v| v.is_finite())
                {
                    mobile.push(coords[p][a]);
                    target.push(given[a]);
                }
            }
        }
    }
    let Some(fit) = superpose(&mobile, &target, None) else {
        return vec![None; motifs.len()];
    };
    let moved = |p: Vec3| -> Vec3 {
        if p.iter().all(|v| v.is_finite()) {
            let q = fit.apply(p);
            [q.x as f32, q.y as f32, q.z as f32]
        } else {
            p
        }
    };
    for residue in coords.iter_mut() {
        for atom in residue.iter_mut() {
            *atom = moved(*atom);
        }
    }
    motifs
        .iter()
        .map(|m| {
            let mut sq = 0f64;
            let mut n = 0usize;
            for (&p, given) in m.positions.iter().zip(&m.atom37) {
                for a in [N, CA, C] {
                    if given[a].iter().all(|v| v.is_finite())
                        && coords[p][a].iter().all(|v| v.is_finite())
                    {
                        sq += (0..3)
                            .map(|k| ((coords[p][a][k] - given[a][k]) as f64).powi(2))
                            .sum::<f64>();
                        n += 1;
                    }
                }
            }
            for (&p, given) in m.positions.iter().zip(&m.atom37) {
                coords[p] = *given;
            }
            (n > 0).then(|| (sq / n as f64).sqrt())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Prompt, String> {
        let file: PromptFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/structures");
        Prompt::build(file, "t", &base)
    }

    #[test]
    fn motif_is_placed_with_its_residues_and_coordinates() {
        let p = parse(
            r#"
            length = 40
            [[motif]]
            file = "freesasa/1ubq.pdb.gz"
            residues = "10-14"
            at = 21
            [[generate]]
            track = "structure"
            num_steps = 4
            "#,
        )
        .unwrap();
        let seq = p.protein.sequence.as_ref().unwrap();
        // Ubiquitin residues 10-14 are GKTIT.
        assert_eq!(&seq[20..25], "GKTIT");
        assert_eq!(seq.chars().filter(|&c| c == '_').count(), 35);
        assert_eq!(p.motifs[0].positions, vec![20, 21, 22, 23, 24]);
        assert!(p.protein.has_backbone(20) && !p.protein.has_backbone(19));
        assert_eq!(p.plan[0].track, Track::Structure);
    }

    #[test]
    fn residue_annotations_are_read_over_1_based_spans() {
        let p = parse(
            "length = 20\n[[residue_annotation]]\nlabel = \"zinc\"\nstart = 3\nend = 9\n\
             [[residue_annotation]]\nlabel = \"heme\"\nstart = 20\nend = 20\n",
        )
        .unwrap();
        let r = p.protein.residue_annotations.unwrap();
        assert_eq!((r[0].label.as_str(), r[0].start, r[0].end), ("zinc", 3, 9));
        assert_eq!(
            (r[1].label.as_str(), r[1].start, r[1].end),
            ("heme", 20, 20)
        );
        assert!(p.protein.function_annotations.is_none());
    }

    #[test]
    fn bad_prompts_say_what_is_wrong() {
        let e = parse("length = 10\n[[motif]]\nfile = \"freesasa/1ubq.pdb.gz\"\nresidues = \"10-14\"\nat = 8\n").unwrap_err();
        assert!(
            e.contains("would end at 12, outside the protein (length 10)"),
            "{e}"
        );
        let e = parse("sequence = \"MKT\"\nsecondary_structure = \"HH\"\n").unwrap_err();
        assert!(
            e.contains("secondary_structure has 2 residues, expected 3"),
            "{e}"
        );
        let e = parse("length = 0\n").unwrap_err();
        assert!(e.contains("at least 1"), "{e}");
        let e = parse("length = 5000\n").unwrap_err();
        assert!(e.contains("beyond the model's limit of 2048"), "{e}");
        let e = parse("length = 3\nsecondary_structure = \"HXH\"\n").unwrap_err();
        assert!(e.contains("'X' at position 2"), "{e}");
        let e = parse("length = 3\n[[generate]]\ntrack = \"sequence\"\ntop_p = 0\n").unwrap_err();
        assert!(e.contains("generate step 1: top_p"), "{e}");
        let e = parse("length = 3\n[[generate]]\ntrack = \"coordinates\"\n").unwrap_err();
        assert!(e.contains("coordinates"), "{e}");
        let e =
            parse("length = 10\n[[residue_annotation]]\nlabel = \"zinc\"\nstart = 8\nend = 11\n")
                .unwrap_err();
        assert!(
            e.contains("residue_annotation 1 `zinc` over 8-11 is outside the protein"),
            "{e}"
        );
        let e =
            parse("length = 10\n[[residue_annotation]]\nlabel = \"zinc\"\nstart = 0\nend = 2\n")
                .unwrap_err();
        assert!(e.contains("over 0-2"), "{e}");
        let e = parse("length = 3\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }
}
