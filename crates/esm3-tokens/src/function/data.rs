//! The function-annotation tables the official `esm` wheel ships (spec §5.1), parsed once and
//! cached in a binary file beside them.
//!
//! `tools/fetch-function-data.sh` puts the five files into `data/function/`. Parsing the
//! 10 MB InterPro→keyword CSV and the 58,641-line vocabulary takes a noticeable fraction of a
//! second; the postcard cache makes later loads a single read. The cache remembers each source
//! file's size and modification time and is rebuilt when any of them changes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::FunctionError;

pub const KEYWORD_VOCABULARY_FILE: &str = "keyword_vocabulary_safety_filtered_58641.txt";
pub const KEYWORD_IDF_FILE: &str = "keyword_idf_safety_filtered_58641.npy";
pub const INTERPRO_KEYWORDS_FILE: &str = "interpro_29026_to_keywords_58641.csv";
pub const INTERPRO_ENTRIES_FILE: &str = "entry_list_safety_29026.list";
pub const INTERPRO_HIERARCHY_FILE: &str = "ParentChildTreeFile.txt";
/// Environment variable naming the data directory when no path is given.
pub const DATA_DIR_ENV: &str = "ESM3_FUNCTION_DATA";
const CACHE_FILE: &str = "function-data.v1.postcard";

const SOURCES: [&str; 5] = [
    KEYWORD_VOCABULARY_FILE,
    KEYWORD_IDF_FILE,
    INTERPRO_KEYWORDS_FILE,
    INTERPRO_ENTRIES_FILE,
    INTERPRO_HIERARCHY_FILE,
];

/// One InterPro entry of the entry list, with the keywords the CSV maps it to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterProEntry {
    /// e.g. `IPR000001`.
    pub id: String,
    /// `ENTRY_TYPE`: Family, Domain, Homologous_superfamily, …
    pub kind: String,
    /// `ENTRY_NAME`, e.g. `Kringle`.
    pub name: String,
    /// Keyword-vocabulary indices in CSV order; repeats are kept because they count in the
    /// term frequency. Empty for `IPR006563`, whose CSV row has no keywords.
    pub keywords: Vec<u32>,
    /// The parent entry in the InterPro hierarchy, when it has one.
    pub parent: Option<String>,
}

/// Keyword vocabulary, IDF and InterPro entries, as one value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionData {
    /// Sorted, unique keywords; index = TF-IDF dimension = keyword-logit column.
    pub keywords: Vec<String>,
    pub idf: Vec<f64>,
    /// Sorted by id; index = InterPro-logit column of the function decoder.
    pub entries: Vec<InterProEntry>,
    #[serde(skip)]
    keyword_index: HashMap<String, u32>,
    #[serde(skip)]
    entry_index: HashMap<String, u32>,
}

#[derive(Serialize, Deserialize)]
struct Cache {
    fingerprint: Vec<(String, u64, u128)>,
    data: FunctionData,
}

fn data_error(path: &Path, message: impl Into<String>) -> FunctionError {
    FunctionError::Data {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn read_text(path: &Path) -> Result<String, FunctionError> {
    std::fs::read_to_string(path).map_err(|e| {
        data_error(
            path,
            format!("{e} (run tools/fetch-function-data.sh to fetch the function data files)"),
        )
    })
}

impl FunctionData {
    /// Builds the tables from parts (used for small test vocabularies and by the parser).
    pub fn new(
        keywords: Vec<String>,
        idf: Vec<f64>,
        mut entries: Vec<InterProEntry>,
    ) -> Result<Self, String> {
        if keywords.len() != idf.len() {
            return Err(format!(
                "{} keywords but {} IDF values",
                keywords.len(),
                idf.len()
            ));
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        let mut data = Self {
            keywords,
            idf,
            entries,
            keyword_index: HashMap::new(),
            entry_index: HashMap::new(),
        };
        data.index()?;
        Ok(data)
    }

    fn index(&mut self) -> Result<(), String> {
        self.keyword_index = self
            .keywords
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i as u32))
            .collect();
        if self.keyword_index.len() != self.keywords.len() {
            return Err("the keyword vocabulary has duplicate entries".into());
        }
        self.entry_index = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i as u32))
            .collect();
        if self.entry_index.len() != self.entries.len() {
            return Err("the InterPro entry list has duplicate ids".into());
        }
        let n = self.keywords.len() as u32;
        if let Some(e) = self
            .entries
            .iter()
            .find(|e| e.keywords.iter().any(|&k| k >= n))
        {
            return Err(format!(
                "entry {} has a keyword index outside the vocabulary",
                e.id
            ));
        }
        Ok(())
    }

    pub fn keyword_index(&self, keyword: &str) -> Option<u32> {
        self.keyword_index.get(keyword).copied()
    }

    pub fn entry_index(&self, interpro_id: &str) -> Option<u32> {
        self.entry_index.get(interpro_id).copied()
    }

    pub fn entry(&self, interpro_id: &str) -> Option<&InterProEntry> {
        self.entry_index(interpro_id)
            .map(|i| &self.entries[i as usize])
    }

    /// The directory given, else `$ESM3_FUNCTION_DATA`, else `data/function`.
    pub fn resolve_dir(dir: Option<&Path>) -> PathBuf {
        match dir {
            Some(d) => d.to_path_buf(),
            None => std::env::var_os(DATA_DIR_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("data/function")),
        }
    }

    /// Loads from the cache when it matches the source files, else parses and writes the cache
    /// (silently skipped when the directory is read-only).
    pub fn load(dir: &Path) -> Result<Self, FunctionError> {
        let fingerprint = fingerprint(dir)?;
        let cache_path = dir.join(CACHE_FILE);
        if let Ok(bytes) = std::fs::read(&cache_path) {
            if let Ok(cache) = postcard::from_bytes::<Cache>(&bytes) {
                if cache.fingerprint == fingerprint {
                    let mut data = cache.data;
                    data.index().map_err(|m| data_error(&cache_path, m))?;
                    return Ok(data);
                }
            }
        }
        let data = Self::parse(dir)?;
        let cache = Cache { fingerprint, data };
        if let Ok(bytes) = postcard::to_stdvec(&cache) {
            // Unique per process and call, so concurrent loads never share a temporary file.
            static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tmp = dir.join(format!("{CACHE_FILE}.{}.{n}.tmp", std::process::id()));
            if std::fs::write(&tmp, bytes).is_ok() && std::fs::rename(&tmp, &cache_path).is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
        }
        Ok(cache.data)
    }

    /// Parses the five source files, ignoring any cache.
    pub fn parse(dir: &Path) -> Result<Self, FunctionError> {
        let vocab_path = dir.join(KEYWORD_VOCABULARY_FILE);
        // The reference reads `f.read().strip().split("\n")`.
        let keywords: Vec<String> = read_text(&vocab_path)?
            .trim()
            .split('\n')
            .map(str::to_string)
            .collect();
        let idf = read_idf(&dir.join(KEYWORD_IDF_FILE))?;
        let keyword_index: HashMap<&str, u32> = keywords
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i as u32))
            .collect();
        let csv_path = dir.join(INTERPRO_KEYWORDS_FILE);
        let interpro_keywords = read_interpro_keywords(&csv_path, &keyword_index)?;
        let parents = parse_hierarchy(&read_text(&dir.join(INTERPRO_HIERARCHY_FILE))?);
        let entries = read_entries(
            &dir.join(INTERPRO_ENTRIES_FILE),
            &csv_path,
            interpro_keywords,
            &parents,
        )?;
        Self::new(keywords, idf, entries).map_err(|m| data_error(dir, m))
    }
}

/// The keyword IDF vector (a 1-D `.npy` of f64).
fn read_idf(idf_path: &Path) -> Result<Vec<f64>, FunctionError> {
    let bytes = std::fs::read(idf_path).map_err(|e| data_error(idf_path, e.to_string()))?;
    let idf = read_npy_f64(&bytes).map_err(|m| data_error(idf_path, m))?;
    if idf.0.len() != 1 {
        return Err(data_error(
            idf_path,
            format!("expected a 1-D array, found shape {:?}", idf.0),
        ));
    }
    Ok(idf.1)
}

/// Each InterPro id's keywords (indices into the vocabulary) from the `interpro_id,keywords` CSV.
fn read_interpro_keywords(
    csv_path: &Path,
    keyword_index: &HashMap<&str, u32>,
) -> Result<HashMap<String, Vec<u32>>, FunctionError> {
    let mut interpro_keywords: HashMap<String, Vec<u32>> = HashMap::new();
    let mut reader = csv::Reader::from_path(csv_path)
        .map_err(|e| data_error(csv_path, format!("{e} (run tools/fetch-function-data.sh)")))?;
    let header = reader
        .headers()
        .map_err(|e| data_error(csv_path, e.to_string()))?
        .clone();
    if header.iter().collect::<Vec<_>>() != ["interpro_id", "keywords"] {
        return Err(data_error(
            csv_path,
            format!("header {header:?}, expected interpro_id,keywords"),
        ));
    }
    for (row, record) in reader.records().enumerate() {
        let record = record.map_err(|e| data_error(csv_path, e.to_string()))?;
        let line = row + 2;
        let id = record.get(0).unwrap_or_default().to_string();
        let text = record.get(1).unwrap_or_default();
        // An empty cell (IPR006563) is an empty keyword list; pandas makes it NaN and the
        // reference then crashes on it (spec §5.1 QUIRK).
        let mut indices = Vec::new();
        if !text.is_empty() {
            for keyword in text.split(',') {
                let index = keyword_index.get(keyword).ok_or_else(|| {
                    data_error(
                        csv_path,
                        format!(
                            "line {line}: keyword {keyword:?} of {id} is not in the vocabulary"
                        ),
                    )
                })?;
                indices.push(*index);
            }
        }
        interpro_keywords.insert(id, indices);
    }
    Ok(interpro_keywords)
}

/// The InterPro entries of the `ENTRY_AC<TAB>ENTRY_TYPE<TAB>ENTRY_NAME` list, each with its
/// keywords (every entry must have a CSV row, and every CSV row an entry) and parent.
fn read_entries(
    entries_path: &Path,
    csv_path: &Path,
    mut interpro_keywords: HashMap<String, Vec<u32>>,
    parents: &HashMap<String, String>,
) -> Result<Vec<InterProEntry>, FunctionError> {
    let text = read_text(entries_path)?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    if header.split('\t').collect::<Vec<_>>() != ["ENTRY_AC", "ENTRY_TYPE", "ENTRY_NAME"] {
        return Err(data_error(
            entries_path,
            format!("header {header:?}, expected ENTRY_AC<TAB>ENTRY_TYPE<TAB>ENTRY_NAME"),
        ));
    }
    let mut entries = Vec::new();
    for (row, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.splitn(3, '\t').collect();
        if fields.len() != 3 {
            return Err(data_error(
                entries_path,
                format!("line {}: expected 3 tab-separated fields", row + 2),
            ));
        }
        let id = fields[0].to_string();
        let keywords = interpro_keywords.remove(&id).ok_or_else(|| {
            data_error(
                csv_path,
                format!("entry {id} of {INTERPRO_ENTRIES_FILE} has no row here"),
            )
        })?;
        entries.push(InterProEntry {
            parent: parents.get(&id).cloned(),
            id,
            kind: fields[1].to_string(),
            name: fields[2].to_string(),
            keywords,
        });
    }
    // The first in id order, so the message is the same on every run.
    if let Some(id) = interpro_keywords.keys().min() {
        return Err(data_error(
            csv_path,
            format!("{id} is not in {INTERPRO_ENTRIES_FILE}"),
        ));
    }
    Ok(entries)
}

fn fingerprint(dir: &Path) -> Result<Vec<(String, u64, u128)>, FunctionError> {
    SOURCES
        .iter()
        .map(|name| {
            let path = dir.join(name);
            let meta = std::fs::metadata(&path).map_err(|e| {
                data_error(
                    &path,
                    format!(
                        "{e} (run tools/fetch-function-data.sh to fetch the function data files)"
                    ),
                )
            })?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            Ok((name.to_string(), meta.len(), mtime))
        })
        .collect()
}

/// `--IPR…::name::` lines, one `--` per depth; returns child → parent.
fn parse_hierarchy(text: &str) -> HashMap<String, String> {
    let mut parents = HashMap::new();
    let mut stack: Vec<String> = Vec::new();
    for line in text.lines() {
        let depth = line.len() - line.trim_start_matches('-').len();
        let depth = depth / 2;
        let Some(id) = line.trim_start_matches('-').split("::").next() else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        stack.truncate(depth);
        if let Some(parent) = stack.last() {
            parents.insert(id.to_string(), parent.clone());
        }
        stack.push(id.to_string());
    }
    parents
}

/// Reads a little-endian f64 or f32 `.npy` array as f64: (shape, row-major values).
pub(crate) fn read_npy_f64(bytes: &[u8]) -> Result<(Vec<u64>, Vec<f64>), String> {
    let npy = npyz::NpyFile::new(bytes).map_err(|e| format!("not a .npy array: {e}"))?;
    let shape = npy.shape().to_vec();
    if npy.order() != npyz::Order::C {
        return Err("Fortran-ordered arrays are not supported".into());
    }
    let dtype = npy.dtype();
    let values = match dtype.descr().as_str() {
        "'<f8'" => npy.into_vec::<f64>().map_err(|e| e.to_string())?,
        "'<f4'" => npy
            .into_vec::<f32>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(f64::from)
            .collect(),
        other => return Err(format!("dtype {other}, expected float64 or float32")),
    };
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_parents_follow_the_dash_depth() {
        let p = parse_hierarchy("IPR1::a::\n--IPR2::b::\n----IPR3::c::\n--IPR4::d::\nIPR5::e::\n");
        assert_eq!(p.get("IPR2").map(String::as_str), Some("IPR1"));
        assert_eq!(p.get("IPR3").map(String::as_str), Some("IPR2"));
        assert_eq!(p.get("IPR4").map(String::as_str), Some("IPR1"));
        assert!(!p.contains_key("IPR1") && !p.contains_key("IPR5"));
    }
}
