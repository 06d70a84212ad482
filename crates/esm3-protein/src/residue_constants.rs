//! Residue and atom vocabularies in the reference's conventions (spec §4.1;
//! `esm/utils/residue_constants.py`).

/// The atom37 order (AlphaFold's), which every atom37 array in the project uses.
pub const ATOM_TYPES: [&str; 37] = [
    "N", "CA", "C", "CB", "O", "CG", "CG1", "CG2", "OG", "OG1", "SG", "CD", "CD1", "CD2", "ND1",
    "ND2", "OD1", "OD2", "SD", "CE", "CE1", "CE2", "CE3", "NE", "NE1", "NE2", "OE1", "OE2", "CH2",
    "NH1", "NH2", "OH", "CZ", "CZ2", "CZ3", "NZ", "OXT",
];

/// Number of atom slots per residue.
pub const ATOM_TYPE_NUM: usize = 37;

/// Slots of the backbone atoms that frames are built from.
pub const N: usize = 0;
pub const CA: usize = 1;
pub const C: usize = 2;
pub const CB: usize = 3;
pub const O: usize = 4;
pub const SD: usize = 18;

/// The atom37 slot of an atom name, if the name has one.
pub fn atom_index(name: &str) -> Option<usize> {
    ATOM_TYPES.iter().position(|a| *a == name)
}

/// One-letter code → PDB residue name. The twenty standard residues are the reference's
/// `restype_1to3`; `U`, `O`, `B`, `Z` are added so that every letter of the sequence vocabulary
/// except `X` survives a write → read round trip (the reference writes them as `UNK`).
const ONE_TO_THREE: [(char, &str); 24] = [
    ('A', "ALA"),
    ('R', "ARG"),
    ('N', "ASN"),
    ('D', "ASP"),
    ('C', "CYS"),
    ('Q', "GLN"),
    ('E', "GLU"),
    ('G', "GLY"),
    ('H', "HIS"),
    ('I', "ILE"),
    ('L', "LEU"),
    ('K', "LYS"),
    ('M', "MET"),
    ('F', "PHE"),
    ('P', "PRO"),
    ('S', "SER"),
    ('T', "THR"),
    ('W', "TRP"),
    ('Y', "TYR"),
    ('V', "VAL"),
    ('U', "SEC"),
    ('O', "PYL"),
    ('B', "ASX"),
    ('Z', "GLX"),
];

/// Residue name written for `X` and for any letter without a PDB name.
pub const UNKNOWN_RESIDUE: &str = "UNK";

/// Selenomethionine: read as methionine, its selenium stored in the SD slot (spec §4.1).
pub const SELENOMETHIONINE: &str = "MSE";

/// PDB residue name of a one-letter code (`UNK` for `X` and anything unnamed).
pub fn one_to_three(letter: char) -> &'static str {
    ONE_TO_THREE
        .iter()
        .find(|(l, _)| *l == letter)
        .map_or(UNKNOWN_RESIDUE, |(_, three)| three)
}

/// One-letter code of a residue name: the table above, `MSE` → `M`, anything else `X`.
pub fn three_to_one(name: &str) -> char {
    if name == SELENOMETHIONINE {
        return 'M';
    }
    ONE_TO_THREE
        .iter()
        .find(|(_, three)| *three == name)
        .map_or('X', |(letter, _)| *letter)
}

/// Whether a residue name is one we read as an amino acid without looking at its atoms.
pub fn is_known_amino_acid(name: &str) -> bool {
    name == SELENOMETHIONINE
        || name == UNKNOWN_RESIDUE
        || ONE_TO_THREE.iter().any(|(_, t)| *t == name)
}

/// Heavy atoms (atom37 names) of each standard residue, as in AlphaFold's `residue_atoms`.
pub fn residue_atoms(letter: char) -> &'static [&'static str] {
    match letter {
        'A' => &["C", "CA", "CB", "N", "O"],
        'R' => &[
            "C", "CA", "CB", "CG", "CD", "CZ", "N", "NE", "O", "NH1", "NH2",
        ],
        'N' => &["C", "CA", "CB", "CG", "N", "ND2", "O", "OD1"],
        'D' => &["C", "CA", "CB", "CG", "N", "O", "OD1", "OD2"],
        'C' => &["C", "CA", "CB", "N", "O", "SG"],
        'Q' => &["C", "CA", "CB", "CG", "CD", "N", "NE2", "O", "OE1"],
        'E' => &["C", "CA", "CB", "CG", "CD", "N", "O", "OE1", "OE2"],
        'G' => &["C", "CA", "N", "O"],
        'H' => &["C", "CA", "CB", "CG", "CD2", "CE1", "N", "ND1", "NE2", "O"],
        'I' => &["C", "CA", "CB", "CG1", "CG2", "CD1", "N", "O"],
        'L' => &["C", "CA", "CB", "CG", "CD1", "CD2", "N", "O"],
        'K' => &["C", "CA", "CB", "CG", "CD", "CE", "N", "NZ", "O"],
        'M' => &["C", "CA", "CB", "CG", "CE", "N", "O", "SD"],
        'F' => &[
            "C", "CA", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "N", "O",
        ],
        'P' => &["C", "CA", "CB", "CG", "CD", "N", "O"],
        'S' => &["C", "CA", "CB", "N", "O", "OG"],
        'T' => &["C", "CA", "CB", "CG2", "N", "O", "OG1"],
        'W' => &[
            "C", "CA", "CB", "CG", "CD1", "CD2", "CE2", "CE3", "CZ2", "CZ3", "CH2", "N", "NE1", "O",
        ],
        'Y' => &[
            "C", "CA", "CB", "CG", "CD1", "CD2", "CE1", "CE2", "CZ", "N", "O", "OH",
        ],
        'V' => &["C", "CA", "CB", "CG1", "CG2", "N", "O"],
        _ => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom37_order_matches_the_spec() {
        assert_eq!(ATOM_TYPES.len(), ATOM_TYPE_NUM);
        for (i, name) in [
            (0, "N"),
            (1, "CA"),
            (2, "C"),
            (3, "CB"),
            (4, "O"),
            (18, "SD"),
            (36, "OXT"),
        ] {
            assert_eq!(ATOM_TYPES[i], name);
            assert_eq!(atom_index(name), Some(i));
        }
        assert_eq!(atom_index("SE"), None);
    }

    #[test]
    fn residue_codes_round_trip_and_mse_is_methionine() {
        for letter in "ARNDCQEGHILKMFPSTWYVUOBZ".chars() {
            assert_eq!(three_to_one(one_to_three(letter)), letter);
        }
        assert_eq!(three_to_one("MSE"), 'M');
        assert_eq!(three_to_one("SEP"), 'X');
        assert_eq!(one_to_three('X'), "UNK");
        assert_eq!(three_to_one("UNK"), 'X');
    }

    #[test]
    fn residue_atom_lists_only_name_atom37_slots() {
        for letter in "ARNDCQEGHILKMFPSTWYV".chars() {
            let atoms = residue_atoms(letter);
            assert!(atoms.len() >= 4);
            assert!(atoms.iter().all(|a| atom_index(a).is_some()), "{letter}");
        }
    }
}
