//! safetensors checkpoints: one file or shards listed by
//! `model.safetensors.index.json`, memory-mapped and zero-copy.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
}

fn shard_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|source| FormatError::Io {
            path: index.clone(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| FormatError::Other {
            path: index.clone(),
            why: format!("invalid JSON: {e}"),
        })?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| FormatError::Key {
                path: index.clone(),
                key: "weight_map".into(),
                why: "missing or not an object".into(),
            })?;
        let mut files: Vec<PathBuf> = map
            .values()
            .filter_map(|f| f.as_str())
            .map(|f| dir.join(f))
            .collect();
        files.sort();
        files.dedup();
        return Ok(files);
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
    let map = Arc::new(crate::Mapped::new(file).map_err(io)?);
    let st = safetensors::SafeTensors::deserialize(&map).map_err(|e| FormatError::Other {
        path: path.to_path_buf(),
        why: format!("invalid safetensors file: {e}"),
    })?;
    let base = map.as_ptr() as usize;
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
        let off = view.data().as_ptr() as usize - base;
        let owner: Arc<dyn suanli_kernels::matmul::Storage> = map.clone();
        let data = Blob::new(owner, off, view.data().len()).ok_or_else(|| FormatError::Tensor {
            path: path.to_path_buf(),
            name: name.clone(),
            why: "data out of the file".into(),
        })?;
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
