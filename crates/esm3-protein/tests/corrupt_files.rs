//! Truncated and corrupted structure files give errors, never panics.

use std::io::Read;
use std::path::PathBuf;

use esm3_protein::io::{parse_structure, read_structure, Format};
use proptest::prelude::*;

fn structures_dir() -> PathBuf {
    esm3_test_support::shared_data().join("structures")
}

fn decompressed(file: &str) -> Vec<u8> {
    let raw = std::fs::read(structures_dir().join(file)).unwrap();
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Small real files of both formats (NMR PDB with models; mmCIF with altlocs and quoting).
fn samples() -> Vec<(Vec<u8>, Format)> {
    vec![
        (decompressed("emboss-test/1tos.pdb.gz"), Format::Pdb),
        (decompressed("biopython/3JQH.cif.gz"), Format::Mmcif),
        (decompressed("biopython/1AS5.cif.gz"), Format::Mmcif),
    ]
}

/// Parsing anything must return; what it returns must be usable.
fn parse_all_ways(bytes: &[u8]) {
    for format in [Some(Format::Pdb), Some(Format::Mmcif), None] {
        if let Ok(s) = parse_structure(bytes, "fuzz", format) {
            for chain in s.chains() {
                chain.check_shape().unwrap();
                let _ = chain.normalize_coordinates();
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn truncated_files_never_panic(which in 0usize..3, cut in 0.0f64..1.0) {
        let (bytes, _) = &samples()[which];
        parse_all_ways(&bytes[..(bytes.len() as f64 * cut) as usize]);
    }

    #[test]
    fn corrupted_bytes_never_panic(
        which in 0usize..3,
        edits in prop::collection::vec((0.0f64..1.0, any::<u8>()), 1..40),
    ) {
        let (mut bytes, _) = samples().swap_remove(which);
        let len = bytes.len();
        for (at, byte) in edits {
            bytes[((len - 1) as f64 * at) as usize] = byte;
        }
        parse_all_ways(&bytes);
    }

    #[test]
    fn shuffled_lines_never_panic(which in 0usize..3, picks in prop::collection::vec(0.0f64..1.0, 0..400)) {
        let (bytes, _) = &samples()[which];
        let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let mixed: Vec<u8> = picks
            .iter()
            .flat_map(|p| lines[((lines.len() - 1) as f64 * p) as usize].iter().copied().chain([b'\n']))
            .collect();
        parse_all_ways(&mixed);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        parse_all_ways(&bytes);
    }
}

/// A truncated gzip stream is a clear error naming the file.
#[test]
fn truncated_gzip_is_an_error_naming_the_file() {
    let raw = std::fs::read(structures_dir().join("emboss-test/1tos.pdb.gz")).unwrap();
    let dir = std::env::temp_dir().join(format!("esm3-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for keep in [10, raw.len() / 2, raw.len() - 4] {
        let path = dir.join(format!("cut{keep}.pdb.gz"));
        std::fs::write(&path, &raw[..keep]).unwrap();
        let err = read_structure(&path).unwrap_err().to_string();
        assert!(err.contains(&format!("cut{keep}.pdb.gz")), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
