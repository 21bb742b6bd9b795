//! What `lineage` reads of a model: its matrices grouped by layer, their
//! roles found from shapes rather than names (a renamed tensor or a
//! relabelled architecture hides nothing), its vocabulary as the bytes each
//! token stands for, and a few metadata facts for the triage.
//!
//! Rows are dequantized one at a time as the statistics ask for them: the
//! embedding rows of the tokens both models share, a sample of each
//! matrix's rows, never a whole model in f32.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use suanli_formats::safetensors::SafetensorsModel;
use suanli_formats::GgufFile;
use suanli_kernels::{Blob, DType, QMatrix};
use suanli_tokenizer::Tokenizer;

use super::LineageError;

/// One matrix (or a stack of expert matrices) of a model: `experts ×
/// rows × cols`, rows `cols` long, as the file stores it.
pub struct Mat {
    pub name: String,
    pub rows: usize,
    pub cols: usize,
    /// 1 for a plain matrix; the expert count of a 3-D expert stack.
    pub experts: usize,
    parts: Vec<QMatrix>,
}

impl Mat {
    /// Dequantizes row `r` of expert `e` into `out` (`cols` values).
    pub fn row(&self, e: usize, r: usize, out: &mut [f32]) {
        self.parts[e].dequantize_row(r, &mut out[..self.cols]);
    }

    /// Rows `rows` of expert `e`, `cols` values each, one after another.
    pub fn rows(&self, e: usize, rows: &[usize]) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() * self.cols];
        for (&r, o) in rows.iter().zip(out.chunks_exact_mut(self.cols)) {
            self.row(e, r, o);
        }
        out
    }

    fn new(
        name: &str,
        dtype: DType,
        shape_outer_first: &[usize],
        data: Blob,
    ) -> Result<Mat, LineageError> {
        let (experts, rows, cols) = match *shape_outer_first {
            [r, c] => (1, r, c),
            [e, r, c] => (e, r, c),
            _ => unreachable!("only 2-D and 3-D tensors are kept"),
        };
        let bad = |why: String| LineageError::Tensor {
            name: name.to_string(),
            why,
        };
        let rb = dtype
            .row_bytes(cols)
            .ok_or_else(|| bad(format!("rows of {cols} do not fit {dtype:?} blocks")))?;
        let per = rows * rb;
        let parts = (0..experts)
            .map(|e| {
                let blob = data
                    .slice(e * per, per)
                    .ok_or_else(|| bad("data shorter than its shape".into()))?;
                QMatrix::new(dtype, rows, cols, blob).map_err(|e| bad(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Mat {
            name: name.to_string(),
            rows,
            cols,
            experts,
            parts,
        })
    }
}

/// A matrix's role in a layer, as its shape tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads the residual stream: `rows × d` (Q, K, V, gate, up).
    Q,
    K,
    V,
    Gate,
    Up,
    /// Writes the residual stream: `d × cols` (O, down).
    O,
    Down,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Q => "attn_q",
            Role::K => "attn_k",
            Role::V => "attn_v",
            Role::O => "attn_o",
            Role::Gate => "ffn_gate",
            Role::Up => "ffn_up",
            Role::Down => "ffn_down",
        }
    }

    /// Whether the hidden dimensions are the matrix's columns (its input).
    pub fn reads_residual(self) -> bool {
        !matches!(self, Role::O | Role::Down)
    }

    pub fn is_attention(self) -> bool {
        matches!(self, Role::Q | Role::K | Role::V | Role::O)
    }
}

/// One layer's matrices by role (a role the shapes could not settle is
/// left out; experts are kept apart).
#[derive(Default)]
pub struct LayerMats {
    pub index: usize,
    pub roles: BTreeMap<Role, usize>,
    /// Expert stacks reading the residual stream, and writing it.
    pub expert_in: Vec<usize>,
    pub expert_out: Vec<usize>,
}

/// A model as `lineage` sees it.
pub struct Model {
    pub path: PathBuf,
    pub arch: String,
    pub format: &'static str,
    pub mats: Vec<Mat>,
    /// The token embedding (or output) matrix: `n_vocab × d`.
    pub embedding: usize,
    pub d: usize,
    pub layers: Vec<LayerMats>,
    /// Each token id's bytes (control tokens by their text).
    pub vocab: Vec<Vec<u8>>,
    pub parameters: u64,
}

impl Model {
    pub fn open(path: &Path) -> Result<Model, LineageError> {
        let (arch, format, raw, tok, parameters) =
            if path.is_dir() || path.extension().is_some_and(|e| e == "safetensors") {
                open_safetensors(path)?
            } else {
                open_gguf(path)?
            };
        let vocab = (0..tok.n_vocab() as u32)
            .map(|id| tok.token_bytes(id, true).unwrap_or_default())
            .collect::<Vec<_>>();
        Model::from_parts(path, arch, format, raw, vocab, parameters)
    }

    /// A model from its 2-D and 3-D tensors (name, dtype, shape outermost
    /// first, bytes) and vocabulary.
    pub fn from_parts(
        path: &Path,
        arch: String,
        format: &'static str,
        raw: Vec<(String, DType, Vec<usize>, Blob)>,
        vocab: Vec<Vec<u8>>,
        parameters: u64,
    ) -> Result<Model, LineageError> {
        let mats = raw
            .into_iter()
            .map(|(n, t, s, b)| Mat::new(&n, t, &s, b))
            .collect::<Result<Vec<_>, _>>()?;
        let missing = |what: &str| LineageError::Missing {
            path: path.to_path_buf(),
            what: what.to_string(),
        };
        // The embedding: a matrix outside the layers with as many rows as
        // the vocabulary has tokens (padded tables a little more).
        let nv = vocab.len();
        let embedding = (0..mats.len())
            .filter(|&i| layer_of(&mats[i].name).is_none() && mats[i].experts == 1)
            .filter(|&i| mats[i].rows >= nv && mats[i].rows <= nv + nv / 8 + 1024)
            // Two (an untied output matrix): the one named like an input
            // table first — either serves, both rows are per token.
            .min_by_key(|&i| (!mats[i].name.contains("emb"), i))
            .ok_or_else(|| missing(&format!("a {nv}-row embedding matrix")))?;
        let d = mats[embedding].cols;
        let mut by_layer: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, m) in mats.iter().enumerate() {
            if let Some(l) = layer_of(&m.name) {
                by_layer.entry(l).or_default().push(i);
            }
        }
        let layers: Vec<LayerMats> = by_layer
            .into_iter()
            .map(|(index, ids)| classify(&mats, index, &ids, d))
            .filter(|l| !l.roles.is_empty() || !l.expert_in.is_empty())
            .collect();
        if !layers.iter().any(|l| l.roles.contains_key(&Role::Q)) {
            return Err(missing(
                "attention matrices (no layer has a d-wide query matrix)",
            ));
        }
        Ok(Model {
            path: path.to_path_buf(),
            arch,
            format,
            mats,
            embedding,
            d,
            layers,
            vocab,
            parameters,
        })
    }

    pub fn mat(&self, layer: &LayerMats, role: Role) -> Option<&Mat> {
        layer.roles.get(&role).map(|&i| &self.mats[i])
    }
}

/// The layer number in a tensor name: its first all-digit dotted part
/// (`blk.3.attn_q.weight`, `model.layers.3.mlp.up_proj.weight`).
pub fn layer_of(name: &str) -> Option<usize> {
    name.split(['.', '/', '_'])
        .find(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse().ok())
}

/// The roles of one layer's matrices from their shapes: those reading the
/// `d`-wide residual stream (`rows × d`) and those writing it (`d × cols`).
/// The widest readers that come as a pair are gate and up, the writer as
/// wide is down; the reader as tall as the other writer is the query, the
/// two left K and V. Where shapes tie (gate and up, K and V, or every
/// attention matrix of a multi-head layer) the names' usual letters break
/// the tie, then the file's order: a swap there moves one role's score to
/// another's, which the statistics see as a role mismatch, not as
/// independence.
fn classify(mats: &[Mat], index: usize, ids: &[usize], d: usize) -> LayerMats {
    let mut l = LayerMats {
        index,
        ..Default::default()
    };
    let (mut readers, mut writers) = (Vec::new(), Vec::new());
    for &i in ids {
        let m = &mats[i];
        if m.experts > 1 {
            if m.cols == d {
                l.expert_in.push(i);
            } else if m.rows == d {
                l.expert_out.push(i);
            }
            continue;
        }
        // A square `d × d` matrix both reads and writes the residual (a
        // query or an output of a layer whose heads span `d`): a reader
        // until the output is picked.
        if m.cols == d && m.rows > 1 {
            readers.push(i);
        } else if m.rows == d && m.cols > 1 {
            writers.push(i);
        }
    }
    let hint = |i: usize, keys: &[&str]| {
        let n = mats[i].name.to_ascii_lowercase();
        keys.iter().any(|k| n.contains(k))
    };
    // The feed-forward: the widest readers (ff > every attention width in
    // the families read), the writer of that width.
    let widest = readers.iter().map(|&i| mats[i].rows).max().unwrap_or(0);
    let mut ffn: Vec<usize> = readers
        .iter()
        .copied()
        .filter(|&i| mats[i].rows == widest)
        .collect();
    // (A pair without a writer of its width is not one: in a layer whose
    // FFN is all experts, the widest readers are a square query and
    // output.)
    let down = writers.iter().copied().find(|&i| mats[i].cols == widest);
    if let (2, Some(w)) = (ffn.len(), down) {
        ffn.sort_by_key(|&i| (!hint(i, &["gate", "w1", "ffn_gate"]), i));
        l.roles.insert(Role::Gate, ffn[0]);
        l.roles.insert(Role::Up, ffn[1]);
        readers.retain(|i| !ffn.contains(i));
        l.roles.insert(Role::Down, w);
        writers.retain(|&i| i != w);
    }
    // Attention: the output — the writer left, or where heads span `d` a
    // square reader (by the usual letters, else the last) — then the query
    // as tall as the output is wide, then K and V.
    let out_names = [
        "o_proj",
        "attn_output",
        "attn_out",
        "wo.",
        "out_proj",
        "dense",
    ];
    let o = writers.first().copied().or_else(|| {
        let mut sq: Vec<usize> = readers
            .iter()
            .copied()
            .filter(|&i| mats[i].rows == d)
            .collect();
        sq.sort_by_key(|&i| (hint(i, &out_names), i));
        sq.last().copied()
    });
    if let Some(o) = o {
        readers.retain(|&i| i != o);
        let width = mats[o].cols;
        l.roles.insert(Role::O, o);
        let mut q: Vec<usize> = readers
            .iter()
            .copied()
            .filter(|&i| mats[i].rows == width)
            .collect();
        q.sort_by_key(|&i| (!hint(i, &["q_proj", "attn_q", "wq", "query"]), i));
        if let Some(&qi) = q.first() {
            l.roles.insert(Role::Q, qi);
            readers.retain(|&i| i != qi);
        }
        readers.sort_by_key(|&i| (!hint(i, &["k_proj", "attn_k", "wk", "key"]), i));
        if readers.len() == 2 && mats[readers[0]].rows == mats[readers[1]].rows {
            l.roles.insert(Role::K, readers[0]);
            l.roles.insert(Role::V, readers[1]);
        }
    }
    l
}

type Raw = Vec<(String, DType, Vec<usize>, Blob)>;

fn open_gguf(path: &Path) -> Result<(String, &'static str, Raw, Tokenizer, u64), LineageError> {
    let file = GgufFile::open(path).map_err(|e| LineageError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let tok = Tokenizer::from_gguf(&file).map_err(|e| LineageError::Read {
        path: path.to_path_buf(),
        why: format!("its vocabulary: {e}"),
    })?;
    let arch = file
        .get("general.architecture")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string();
    let mut raw = Vec::new();
    let mut parameters = 0u64;
    for t in &file.tensors {
        parameters += t.n_elements();
        let dims = t.shape.iter().filter(|&&s| s > 1).count();
        let (Some(dtype), 2..=3) = (t.dtype, t.shape.len()) else {
            continue;
        };
        if dims < 2 {
            continue;
        }
        let shape: Vec<usize> = t.shape.iter().rev().map(|&s| s as usize).collect();
        let data = file.tensor_data(t).map_err(|e| LineageError::Read {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
        raw.push((t.name.clone(), dtype, shape, data));
    }
    Ok((arch, "gguf", raw, tok, parameters))
}

fn open_safetensors(
    path: &Path,
) -> Result<(String, &'static str, Raw, Tokenizer, u64), LineageError> {
    let st = SafetensorsModel::open(path).map_err(|e| LineageError::Read {
        path: path.to_path_buf(),
        why: e.to_string(),
    })?;
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    };
    let tok = Tokenizer::from_hf(&dir).map_err(|e| LineageError::Read {
        path: dir.join("tokenizer.json"),
        why: format!("its vocabulary: {e}"),
    })?;
    let arch = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v.get("model_type")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "?".into());
    let mut raw = Vec::new();
    let mut parameters = 0u64;
    for (name, t) in &st.tensors {
        parameters += t.shape.iter().product::<usize>() as u64;
        if !(2..=3).contains(&t.shape.len()) || t.shape.iter().filter(|&&s| s > 1).count() < 2 {
            continue;
        }
        raw.push((name.clone(), t.dtype, t.shape.clone(), t.data.clone()));
    }
    Ok((arch, "safetensors", raw, tok, parameters))
}
