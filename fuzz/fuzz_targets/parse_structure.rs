//! Any bytes, read as PDB, as mmCIF or sniffed, must give a structure or an error; a structure
//! must be consistent and writable.
#![no_main]

use esm3_protein::io::{parse_structure, write_mmcif, Format};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for format in [None, Some(Format::Pdb), Some(Format::Mmcif)] {
        if let Ok(structure) = parse_structure(data, "fuzz", format) {
            for chain in structure.chains() {
                chain
                    .check_shape()
                    .expect("reader built an inconsistent chain");
                let _ = chain.normalize_coordinates();
                let mut out = Vec::new();
                write_mmcif(chain, None, &mut out)
                    .expect("a chain we read must be writable as mmCIF");
            }
        }
    }
});
