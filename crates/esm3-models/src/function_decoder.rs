//! `FunctionTokenDecoder` (spec §5.5): 8 function ids of one position → keyword and InterPro
//! logits, through bit-unpacking, a 3-block transformer over the 64 bits and mean pooling.
//!
//! A model directory of type `esm3_function_decoder` may also hold the LSH hyperplanes the
//! function tokenizer uses (`hyperplanes.safetensors`, see `esm3_tokens::function::lsh`):
//! `esm3 import` converts the official `hyperplanes_8bit_58641.npz`, and
//! [`random_hyperplanes`] makes seeded ones for our own models.

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{embedding, Embedding, VarBuilder};
use esm3_nn::{AttentionContext, RegressionHead, TransformerStack};
use std::path::Path;

use esm3_tokens::function::annotation::{decode_function_logits, interpro_display};
use esm3_tokens::function::{
    FunctionData, Hyperplanes, BITS_PER_TOKEN, DEPTH, LSH_OFFSET, VOCAB_SIZE,
};

use crate::array::{expect_shape, HostArray};
use crate::config::FunctionDecoderConfig;
use crate::error::{ModelError, Result};
use crate::init::Normal;

/// Bits per position seen by the transformer (8 ids × 8 bits); its embedding has two rows
/// (bit 0 / bit 1) per bit position.
pub const BIT_TOKENS: usize = DEPTH * BITS_PER_TOKEN;
pub const EMBEDDING_ROWS: usize = 2 * BIT_TOKENS;
pub const HEAD_NAMES: [&str; 3] = ["keyword_logits", "keyword_tfidf", "interpro_logits"];

pub struct FunctionDecoderOutput {
    /// `[N, keyword_vocabulary_size]`.
    pub keyword_logits: Tensor,
    /// `[N, keyword_vocabulary_size]` (a training target; unused when decoding).
    pub keyword_tfidf: Tensor,
    /// `[N, num_interpro_classes]`; class i is the i-th id of the sorted entry list.
    pub interpro_logits: Tensor,
}

impl FunctionDecoderOutput {
    pub fn named(&self) -> Vec<(&'static str, &Tensor)> {
        vec![
            ("keyword_logits", &self.keyword_logits),
            ("keyword_tfidf", &self.keyword_tfidf),
            ("interpro_logits", &self.interpro_logits),
        ]
    }
}

pub struct FunctionTokenDecoder {
    config: FunctionDecoderConfig,
    embedding: Embedding,
    decoder: TransformerStack,
    heads: Vec<RegressionHead>,
    device: Device,
    dtype: DType,
}

/// The transformer's 64 input ids of one position: feature f = 8·bit + depth (all depths'
/// lowest bit first) becomes id 2f + bit; a row with any special id (< 4) becomes all zeros.
pub fn unpack_bits(row: &[i64; DEPTH]) -> [u32; BIT_TOKENS] {
    let mut out = [0u32; BIT_TOKENS];
    if row.iter().any(|&id| id < i64::from(LSH_OFFSET)) {
        return out;
    }
    for hob in 0..BITS_PER_TOKEN {
        for (depth, &id) in row.iter().enumerate() {
            let bit = ((id - i64::from(LSH_OFFSET)) >> hob) & 1;
            let f = BITS_PER_TOKEN * hob + depth;
            out[f] = (2 * f) as u32 + bit as u32;
        }
    }
    out
}

impl FunctionTokenDecoder {
    pub fn new(config: &FunctionDecoderConfig, vb: VarBuilder) -> Result<Self> {
        let d = config.d_model;
        let outs = [
            config.keyword_vocabulary_size,
            config.keyword_vocabulary_size,
            config.num_interpro_classes,
        ];
        let heads = HEAD_NAMES
            .iter()
            .zip(outs)
            .map(|(name, out)| {
                RegressionHead::with_hidden(d, 4 * d, out, vb.pp(format!("heads.{name}")))
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            embedding: embedding(EMBEDDING_ROWS, d, vb.pp("embedding"))?,
            decoder: TransformerStack::new(
                config.n_layers,
                |i| config.block(i),
                true,
                d,
                vb.pp("decoder"),
            )?,
            heads,
            device: vb.device().clone(),
            dtype: vb.dtype(),
        })
    }

    pub fn config(&self) -> &FunctionDecoderConfig {
        &self.config
    }

    /// `token_ids` is `[N, 8]` with ids in 0..260; positions are decoded independently.
    pub fn forward(&self, token_ids: &HostArray<i64>) -> Result<FunctionDecoderOutput> {
        expect_shape("token_ids", &token_ids.shape, &[None, Some(DEPTH)])?;
        let n = token_ids.shape[0];
        if n == 0 {
            return Err(ModelError::Input("`token_ids` has no rows".into()));
        }
        token_ids.check_range("token_ids", VOCAB_SIZE as i64, "function token ids")?;
        let inputs: Vec<u32> = token_ids
            .data
            .chunks_exact(DEPTH)
            .flat_map(|r| unpack_bits(r.try_into().expect("rows of 8")))
            .collect();
        let inputs = Tensor::from_vec(inputs, (n, BIT_TOKENS), &self.device)?;
        let x = self.embedding.forward(&inputs)?;
        let d_head = self.config.d_model / self.config.n_heads;
        let ctx = AttentionContext::new(d_head, n, BIT_TOKENS, None, self.dtype, &self.device)?;
        let encoded = self.decoder.forward(&x, Some(&ctx), None, false)?.normed;
        let pooled = encoded.mean(1)?;
        let run = |i: usize| -> Result<Tensor> {
            Ok(self.heads[i].forward(&pooled)?.to_dtype(DType::F32)?)
        };
        Ok(FunctionDecoderOutput {
            keyword_logits: run(0)?,
            keyword_tfidf: run(1)?,
            interpro_logits: run(2)?,
        })
    }

    /// Logits as host vectors, row-major `[N, classes]`, for decoding to annotations.
    pub fn logits(&self, token_ids: &HostArray<i64>) -> Result<(Vec<f32>, Vec<f32>)> {
        let out = self.forward(token_ids)?;
        let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
        Ok((flat(&out.keyword_logits)?, flat(&out.interpro_logits)?))
    }
}

/// Seeded hyperplanes for our own models, drawn as the reference draws its own (standard
/// normal rows, each scaled to unit length).
pub fn random_hyperplanes(seed: u64, dim: usize) -> Result<Hyperplanes> {
    let mut rng = Normal::new(seed);
    let mut values = Vec::with_capacity(DEPTH * BITS_PER_TOKEN * dim);
    for _ in 0..DEPTH * BITS_PER_TOKEN {
        let row: Vec<f64> = (0..dim).map(|_| f64::from(rng.sample())).collect();
        let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
        values.extend(row.into_iter().map(|v| v / norm));
    }
    Hyperplanes::new(dim, values).map_err(ModelError::Input)
}

/// The labels the decoder's logit columns stand for: the keyword vocabulary and the sorted
/// InterPro entry list (with display names).
#[derive(Clone, Debug)]
pub struct DecoderVocabulary {
    pub keywords: Vec<String>,
    /// (id, name), sorted by id.
    pub interpro: Vec<(String, String)>,
}

/// Vocabulary files a model directory may hold, for decoders trained on other vocabularies
/// than the official one (the test fixtures' small decoders): the keyword list, one a line,
/// and an entry list in the wheel's `ENTRY_AC<TAB>ENTRY_TYPE<TAB>ENTRY_NAME` format.
pub const KEYWORDS_FILE: &str = "keywords.txt";
pub const ENTRIES_FILE: &str = "entries.tsv";

impl DecoderVocabulary {
    pub fn from_data(data: &FunctionData) -> Self {
        Self {
            keywords: data.keywords.clone(),
            interpro: data
                .entries
                .iter()
                .map(|e| (e.id.clone(), e.name.clone()))
                .collect(),
        }
    }

    /// Reads `keywords.txt` + `entries.tsv` from `dir`; `None` when the directory has neither.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        let (k, e) = (dir.join(KEYWORDS_FILE), dir.join(ENTRIES_FILE));
        if !k.is_file() && !e.is_file() {
            return Ok(None);
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|err| ModelError::io(p, err));
        let keywords = read(&k)?.trim().split('\n').map(str::to_string).collect();
        let text = read(&e)?;
        let mut interpro: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.splitn(3, '\t').collect();
            if f.len() != 3 {
                return Err(ModelError::Config {
                    path: e.clone(),
                    message: format!(
                        "line {}: expected ENTRY_AC<TAB>ENTRY_TYPE<TAB>ENTRY_NAME",
                        i + 1
                    ),
                });
            }
            interpro.push((f[0].to_string(), f[2].to_string()));
        }
        interpro.sort();
        Ok(Some(Self { keywords, interpro }))
    }

    /// The decoder's head widths must be these vocabularies' sizes.
    pub fn check(&self, config: &FunctionDecoderConfig) -> Result<()> {
        if self.keywords.len() != config.keyword_vocabulary_size
            || self.interpro.len() != config.num_interpro_classes
        {
            return Err(ModelError::Input(format!(
                "the decoder has {} keyword and {} InterPro outputs, but the vocabulary has {} \
                 keywords and {} InterPro entries",
                config.keyword_vocabulary_size,
                config.num_interpro_classes,
                self.keywords.len(),
                self.interpro.len()
            )));
        }
        Ok(())
    }
}

/// One decoded annotation: a keyword or an InterPro entry over a residue span.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DecodedAnnotation {
    /// The reference's label: the keyword, or `"<name> (<IPR id>)"`.
    pub label: String,
    /// 1-based inclusive.
    pub start: usize,
    pub end: usize,
    /// `keyword` or `interpro`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpro_id: Option<String>,
}

/// `rows` is the function track `[L+2, 8]` including the BOS/EOS rows (spec §5.6); the result is
/// keyword annotations first, then InterPro, as the reference's `decode_function_tokens`.
pub fn decode_function_tokens(
    model: &FunctionTokenDecoder,
    vocab: &DecoderVocabulary,
    rows: &[[i64; DEPTH]],
) -> Result<Vec<DecodedAnnotation>> {
    vocab.check(model.config())?;
    let tokens = HostArray::new(vec![rows.len(), DEPTH], rows.concat());
    let (kw, ipr) = model.logits(&tokens)?;
    let ids: Vec<String> = vocab.interpro.iter().map(|e| e.0.clone()).collect();
    let decoded = decode_function_logits(rows, &kw, &ipr, &vocab.keywords, &ids);
    let mut out: Vec<DecodedAnnotation> = decoded
        .keywords
        .into_iter()
        .map(|a| DecodedAnnotation {
            label: a.label,
            start: a.start,
            end: a.end,
            kind: "keyword",
            interpro_id: None,
        })
        .collect();
    for a in decoded.interpro {
        let name = vocab
            .interpro
            .binary_search_by(|e| e.0.as_str().cmp(&a.label))
            .ok()
            .map(|i| vocab.interpro[i].1.as_str());
        out.push(DecodedAnnotation {
            label: interpro_display(&a.label, name),
            start: a.start,
            end: a.end,
            kind: "interpro",
            interpro_id: Some(a.label),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_unpacked_bit_major() {
        // depth 0 holds value 1 (bit 0 set), depth 3 value 128 (bit 7 set), others 0.
        let mut row = [4i64; DEPTH];
        row[0] = 5;
        row[3] = 4 + 128;
        let ids = unpack_bits(&row);
        for (f, &id) in ids.iter().enumerate() {
            let set = f == 0 || f == 8 * 7 + 3;
            assert_eq!(id, 2 * f as u32 + u32::from(set), "feature {f}");
        }
        row[5] = 3;
        assert_eq!(unpack_bits(&row), [0; BIT_TOKENS]);
    }

    #[test]
    fn official_preset_has_the_published_shapes() {
        let s = crate::schema::schema(&crate::ModelConfig::FunctionDecoder(
            FunctionDecoderConfig::v0(),
        ));
        assert_eq!(s["embedding.weight"], vec![128, 1024]);
        assert_eq!(
            s["decoder.blocks.2.attn.layernorm_qkv.1.weight"],
            vec![3072, 1024]
        );
        assert_eq!(s["decoder.blocks.2.ffn.3.weight"], vec![1024, 4096]);
        assert_eq!(s["heads.keyword_logits.3.weight"], vec![58641, 4096]);
        assert_eq!(s["heads.interpro_logits.3.bias"], vec![29026]);
        assert!(!s.contains_key("decoder.blocks.3.ffn.0.weight"));
        assert!(!s.keys().any(|k| k.contains("q_ln")));
    }

    #[test]
    fn vocabulary_sizes_must_match_the_heads() {
        let v = DecoderVocabulary {
            keywords: vec!["a".into(), "b".into()],
            interpro: vec![("IPR000001".into(), "Kringle".into())],
        };
        let mut c = FunctionDecoderConfig::v0();
        let e = v.check(&c).unwrap_err().to_string();
        assert!(e.contains("58641") && e.contains("2 keywords"), "{e}");
        c.keyword_vocabulary_size = 2;
        c.num_interpro_classes = 1;
        v.check(&c).unwrap();
    }

    #[test]
    fn random_hyperplanes_are_unit_rows_and_seeded() {
        let h = random_hyperplanes(3, 50).unwrap();
        for row in h.values().chunks(50) {
            let n: f64 = row.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-12);
        }
        assert_eq!(h, random_hyperplanes(3, 50).unwrap());
        assert_ne!(h, random_hyperplanes(4, 50).unwrap());
    }
}
