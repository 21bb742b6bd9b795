//! safetensors checkpoints: one file or shards listed by
//! `model.safetensors.index.json`, memory-mapped and zero-copy.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use suanli_kernels::matmul::Storage;
use suanli_kernels::{Blob, DType};

use crate::{FormatError, Result};

/// One tensor of a safetensors checkpoint.
#[derive(Debug, Clone)]
pub struct StTensor {
    /// Shape, outermost first (PyTorch order).
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub data: Blob,
    pub file: PathBuf,
}

/// All tensors of a checkpoint directory (or a single file), by name.
#[derive(Debug)]
pub struct SafetensorsModel {
    pub tensors: BTreeMap<String, StTensor>,
}

impl SafetensorsModel {
    /// Open `path`: a `.safetensors` file, or a directory with either
    /// `model.safetensors.index.json` (sharded) or `*.safetensors` files.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let files = if path.is_dir() {
            shard_files(path)?
        } else {
            vec![path.to_path_buf()]
        };
        let mut tensors = BTreeMap::new();
        for f in files {
            open_file(&f, &mut tensors)?;
        }
        Ok(SafetensorsModel { tensors })
    }

    /// One safetensors file held in memory; `path` only names it in
    /// messages and in each tensor's `file`. The same checks as
    /// [`Self::open`]: every tensor's data lies inside `bytes` and is as
    /// long as its shape and dtype say.
    pub fn from_bytes(bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<Self> {
        let owner: Arc<dyn Storage> = Arc::new(bytes);
        let mut tensors = BTreeMap::new();
        read_tensors(path.as_ref(), owner, &mut tensors)?;
        Ok(SafetensorsModel { tensors })
    }
}

/// The shard file names `model.safetensors.index.json` lists (its
/// `weight_map` values), sorted and without repeats. `index` only names
/// the file in messages. A name must stay inside the checkpoint's
/// directory: an absolute path or one with `..` is an error.
pub fn index_shards(text: &str, index: &Path) -> Result<Vec<String>> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| FormatError::Other {
        path: index.to_path_buf(),
        why: format!("invalid JSON: {e}"),
    })?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| FormatError::Key {
            path: index.to_path_buf(),
            key: "weight_map".into(),
            why: "missing or not an object".into(),
        })?;
    let mut files = Vec::new();
    for (tensor, f) in map {
        let Some(f) = f.as_str() else { continue };
        let inside = !f.is_empty()
            && Path::new(f)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !inside {
            return Err(FormatError::Key {
                path: index.to_path_buf(),
                key: format!("weight_map.{tensor}"),
                why: format!("shard {f:?} is not a file name inside the checkpoint's directory"),
            });
        }
        files.push(f.to_string());
    }
    files.sort();
    files.dedup();
    Ok(files)
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| FormatError::Io {
            path: index.clone(),
            source,
        })?;
        return Ok(index_shards(&text, &index)?
            .into_iter()
            .map(|f| dir.join(f))
            .collect());
    }
    let rd = std::fs::read_dir(dir).map_err(|source| FormatError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(FormatError::Other {
            path: dir.to_path_buf(),
            why: "no *.safetensors files in this directory".into(),
        });
    }
    Ok(files)
}

fn open_file(path: &Path, out: &mut BTreeMap<String, StTensor>) -> Result<()> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let map: Arc<dyn Storage> = Arc::new(crate::Mapped::new(file).map_err(io)?);
    read_tensors(path, map, out)
}

/// The tensors of the safetensors file in `owner`, as views of it.
fn read_tensors(
    path: &Path,
    owner: Arc<dyn Storage>,
    out: &mut BTreeMap<String, StTensor>,
) -> Result<()> {
    let bytes = owner.bytes();
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| FormatError::Other {
        path: path.to_path_buf(),
        why: format!("invalid safetensors file: {e}"),
    })?;
    let base = bytes.as_ptr() as usize;
    for (name, view) in st.tensors() {
        let dtype = match view.dtype() {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            other => {
                return Err(FormatError::Tensor {
                    path: path.to_path_buf(),
                    name,
                    why: format!("dtype {other:?} is not supported (F32, F16, BF16 are)"),
                })
            }
        };
        let bad = |why: &str| FormatError::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            why: why.into(),
        };
        // The safetensors crate checks these; a view that disagreed would
        // read past its tensor, so check again rather than trust it.
        let elems = view
            .shape()
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| bad("shape overflows"))?;
        // F32, F16 and BF16 have one element a block.
        if elems.checked_mul(dtype.block_bytes()) != Some(view.data().len()) {
            return Err(bad("data length differs from shape and dtype"));
        }
        let off = (view.data().as_ptr() as usize)
            .checked_sub(base)
            .ok_or_else(|| bad("data out of the file"))?;
        let data = Blob::new(owner.clone(), off, view.data().len())
            .ok_or_else(|| bad("data out of the file"))?;
        out.insert(
            name,
            StTensor {
                shape: view.shape().to_vec(),
                dtype,
                data,
                file: path.to_path_buf(),
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tensors: &[(&str, Vec<usize>, Vec<u8>)]) -> Vec<u8> {
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(n, shape, data)| {
                let v = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    shape.clone(),
                    data,
                )
                .ok()
                .unwrap_or_else(|| panic!("view {n}"));
                (n.to_string(), v)
            })
            .collect();
        safetensors::serialize(views, None).unwrap_or_default()
    }

    #[test]
    fn from_bytes_reads_tensors_inside_the_buffer() {
        let bytes = file(&[("a", vec![2, 3], vec![1; 24]), ("b", vec![4], vec![2; 16])]);
        let len = bytes.len();
        let m = SafetensorsModel::from_bytes(bytes, "mem.safetensors").expect("parse");
        let a = &m.tensors["a"];
        assert_eq!(
            (a.shape.clone(), a.dtype, a.data.len()),
            (vec![2, 3], DType::F32, 24)
        );
        assert!(a.data.bytes().iter().all(|&b| b == 1));
        assert!(m.tensors["b"].data.bytes().iter().all(|&b| b == 2));
        // Every truncation is an error naming the file, never a panic.
        let full = file(&[("a", vec![2, 3], vec![1; 24])]);
        for cut in 0..full.len() {
            let e = SafetensorsModel::from_bytes(full[..cut].to_vec(), "cut.safetensors")
                .err()
                .unwrap_or_else(|| panic!("cut to {cut} of {len} bytes was accepted"));
            assert!(e.to_string().contains("cut.safetensors"), "{e}");
        }
    }

    #[test]
    fn from_bytes_refuses_a_header_that_lies_about_the_data() {
        // A hand-written header whose offsets reach past the file.
        let header = br#"{"a":{"dtype":"F32","shape":[1000000],"data_offsets":[0,4000000]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 16]);
        assert!(SafetensorsModel::from_bytes(bytes, "lie.safetensors").is_err());
        // A shape that disagrees with its offsets.
        let header = br#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header);
        bytes.extend_from_slice(&[0; 8]);
        assert!(SafetensorsModel::from_bytes(bytes, "lie.safetensors").is_err());
    }

    #[test]
    fn index_shards_stay_inside_the_directory() {
        let idx = Path::new("model.safetensors.index.json");
        let ok = r#"{"metadata": {}, "weight_map": {"a": "model-2.safetensors",
            "b": "model-1.safetensors", "c": "model-2.safetensors", "d": 5}}"#;
        assert_eq!(
            index_shards(ok, idx).expect("index"),
            vec!["model-1.safetensors", "model-2.safetensors"]
        );
        for bad in ["../secret", "/etc/passwd", "", "a/../../b", "./x"] {
            let text = serde_json::json!({"weight_map": {"t": bad}}).to_string();
            let e = index_shards(&text, idx).err();
            assert!(e.is_some(), "{bad:?} was accepted");
        }
        assert!(index_shards("{}", idx).is_err());
        assert!(index_shards("[", idx).is_err());
    }
}
