//! GGUF: the file format of ggml / llama.cpp.
//!
//! Layout (little-endian; spec: ggml/docs/gguf.md):
//! ```text
//! magic "GGUF" | version:u32 | n_tensors:u64 | n_kv:u64
//! n_kv × (key:string, type:u32, value)
//! n_tensors × (name:string, n_dims:u32, dims:u64[n_dims], type:u32, offset:u64)
//! padding to `general.alignment` (default 32)
//! tensor data; each tensor at data_start + offset (offset aligned)
//! ```
//! Strings are `len:u64` + UTF-8 bytes; arrays are `type:u32, n:u64, values`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use suanli_kernels::{Blob, DType};

use crate::value::{Value, ValueType};
use crate::{FormatError, Result};

const MAGIC: &[u8; 4] = b"GGUF";
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Sanity bound on a metadata string or array length, to refuse absurd
/// lengths from corrupt files before allocating for them.
const MAX_LEN: u64 = 1 << 32;

/// Where one tensor lies in the file.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost first (`ne[0]` is the row length).
    pub shape: Vec<u64>,
    /// The raw `ggml_type` id.
    pub ggml_type: u32,
    /// `None` for types suanli does not implement (IQ formats…).
    pub dtype: Option<DType>,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Bytes of data, when the type is known.
    pub size: Option<u64>,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.shape.iter().product()
    }

    pub fn type_name(&self) -> String {
        match self.dtype {
            Some(d) => d.traits().name.to_string(),
            None => format!("type#{}", self.ggml_type),
        }
    }
}

/// An open, memory-mapped GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    /// Tensors in file order.
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    pub data_offset: u64,
    map: Arc<crate::Mapped>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let end = (self.pos as u64)
            .checked_add(n)
            .filter(|&e| e <= self.b.len() as u64);
        match end {
            Some(e) => {
                let s = &self.b[self.pos..e as usize];
                self.pos = e as usize;
                Ok(s)
            }
            None => Err(FormatError::Truncated {
                path: self.path.to_path_buf(),
                offset: self.pos as u64,
                what: what(),
                len: self.b.len() as u64,
            }),
        }
    }

    fn arr<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    fn malformed(&self, offset: usize, what: String, why: impl Into<String>) -> FormatError {
        FormatError::Malformed {
            path: self.path.to_path_buf(),
            offset: offset as u64,
            what,
            why: why.into(),
        }
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n > MAX_LEN {
            return Err(self.malformed(at, what(), format!("string length {n} is implausible")));
        }
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|e| self.malformed(at, what(), format!("invalid UTF-8: {e}")))
    }

    fn value(&mut self, ty: ValueType, what: &dyn Fn() -> String) -> Result<Value> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.arr::<1>(what)?[0]),
            ValueType::I8 => Value::I8(self.arr::<1>(what)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.arr(what)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.arr(what)?)),
            ValueType::U32 => Value::U32(self.u32(what)?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.arr(what)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.arr(what)?)),
            ValueType::Bool => {
                let at = self.pos;
                match self.arr::<1>(what)?[0] {
                    0 => Value::Bool(false),
                    1 => Value::Bool(true),
                    b => return Err(self.malformed(at, what(), format!("bool byte {b}"))),
                }
            }
            ValueType::String => Value::String(self.string(what)?),
            ValueType::U64 => Value::U64(self.u64(what)?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.arr(what)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.arr(what)?)),
            ValueType::Array => {
                let at = self.pos;
                let et = self.u32(what)?;
                let et = ValueType::from_id(et).ok_or_else(|| {
                    self.malformed(at, what(), format!("unknown array element type {et}"))
                })?;
                let at = self.pos;
                let n = self.u64(what)?;
                // Each element takes at least one byte: a count beyond the file is corrupt.
                if n > (self.b.len() - self.pos) as u64 {
                    return Err(self.malformed(
                        at,
                        what(),
                        format!("array of {n} elements exceeds the file"),
                    ));
                }
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(et, what)?);
                }
                Value::Array(et, v)
            }
        })
    }
}

impl GgufFile {
    /// Open and parse `path`; tensor data stays in the mapping.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let map = crate::Mapped::new(file).map_err(io)?;
        Self::parse(path, Arc::new(map))
    }

    fn parse(path: &Path, map: Arc<crate::Mapped>) -> Result<Self> {
        let b: &[u8] = &map;
        let mut c = Cursor { b, pos: 0, path };
        let magic: [u8; 4] = c.arr(&|| "magic".into())?;
        if &magic != MAGIC {
            return Err(FormatError::BadMagic {
                path: path.to_path_buf(),
                magic,
            });
        }
        let version = c.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            return Err(FormatError::BadVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let n_tensors = c.u64(&|| "tensor count".into())?;
        let n_kv = c.u64(&|| "metadata count".into())?;
        if n_tensors > b.len() as u64 || n_kv > b.len() as u64 {
            return Err(c.malformed(
                8,
                "header".into(),
                format!("{n_tensors} tensors / {n_kv} keys exceed the file"),
            ));
        }
        let mut metadata = BTreeMap::new();
        for i in 0..n_kv {
            let key = c.string(&|| format!("metadata key #{i}"))?;
            let at = c.pos;
            let what = || format!("value of metadata key '{key}'");
            let ty = c.u32(&what)?;
            let ty = ValueType::from_id(ty)
                .ok_or_else(|| c.malformed(at, what(), format!("unknown value type {ty}")))?;
            let v = c.value(ty, &what)?;
            metadata.insert(key, v);
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() => a,
                _ => {
                    return Err(FormatError::Key {
                        path: path.to_path_buf(),
                        key: "general.alignment".into(),
                        why: format!("must be a power of two, got {}", v.summary()),
                    })
                }
            },
        };
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let name = c.string(&|| format!("name of tensor #{i}"))?;
            let what = || format!("info of tensor '{name}'");
            let at = c.pos;
            let nd = c.u32(&what)?;
            if nd == 0 || nd > 4 {
                return Err(c.malformed(at, what(), format!("{nd} dimensions (1 to 4 allowed)")));
            }
            let mut shape = Vec::with_capacity(nd as usize);
            for _ in 0..nd {
                shape.push(c.u64(&what)?);
            }
            let ggml_type = c.u32(&what)?;
            let at = c.pos;
            let offset = c.u64(&what)?;
            if offset % alignment != 0 {
                return Err(c.malformed(
                    at,
                    what(),
                    format!("data offset {offset} not aligned to {alignment}"),
                ));
            }
            raw.push((name, shape, ggml_type, offset));
        }
        let data_offset = (c.pos as u64).div_ceil(alignment) * alignment;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, shape, ggml_type, rel) in raw {
            let terr = |why: String| FormatError::Tensor {
                path: path.to_path_buf(),
                name: name.clone(),
                why,
            };
            let n = shape
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d))
                .ok_or_else(|| terr(format!("shape {shape:?} overflows")))?;
            let dtype = DType::from_ggml_id(ggml_type);
            let size = match dtype {
                Some(d) => {
                    if shape[0] % d.block_size() as u64 != 0 {
                        return Err(terr(format!(
                            "row length {} is not a multiple of the {} block size {}",
                            shape[0],
                            d.traits().name,
                            d.block_size()
                        )));
                    }
                    Some(n / d.block_size() as u64 * d.block_bytes() as u64)
                }
                None => None,
            };
            let offset = data_offset
                .checked_add(rel)
                .ok_or_else(|| terr(format!("offset {rel} overflows")))?;
            if let Some(s) = size {
                let end = offset
                    .checked_add(s)
                    .ok_or_else(|| terr("size overflows".into()))?;
                if end > b.len() as u64 {
                    return Err(FormatError::Truncated {
                        path: path.to_path_buf(),
                        offset: b.len() as u64,
                        what: format!("data of tensor '{name}' (bytes {offset}..{end})"),
                        len: b.len() as u64,
                    });
                }
            }
            tensors.push(TensorInfo {
                name,
                shape,
                ggml_type,
                dtype,
                offset,
                size,
            });
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            map,
        })
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The bytes of a tensor, zero-copy, as a [`Blob`] sharing the mapping.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<Blob> {
        let size = t.size.ok_or_else(|| FormatError::Tensor {
            path: self.path.clone(),
            name: t.name.clone(),
            why: format!("tensor type {} is not supported", t.type_name()),
        })?;
        let owner: Arc<dyn suanli_kernels::matmul::Storage> = self.map.clone();
        Blob::new(owner, t.offset as usize, size as usize).ok_or_else(|| FormatError::Tensor {
            path: self.path.clone(),
            name: t.name.clone(),
            why: "data out of the file".into(),
        })
    }

    /// Total bytes of tensor data.
    pub fn data_bytes(&self) -> u64 {
        self.tensors.iter().filter_map(|t| t.size).sum()
    }
}

/// Builds a GGUF v3 file: metadata, then tensors, each aligned.
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    tensors: Vec<(String, Vec<u64>, DType, Vec<u8>)>,
    alignment: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    pub fn new() -> Self {
        GgufWriter {
            metadata: Vec::new(),
            tensors: Vec::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    pub fn add(&mut self, key: impl Into<String>, v: Value) -> &mut Self {
        let key = key.into();
        if key == "general.alignment" {
            if let Some(a) = v.as_u64() {
                self.alignment = a;
            }
        }
        self.metadata.push((key, v));
        self
    }

    /// Add a tensor; `shape` innermost first, `data` already in `dtype`'s layout.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        shape: &[u64],
        dtype: DType,
        data: Vec<u8>,
    ) -> &mut Self {
        self.tensors
            .push((name.into(), shape.to_vec(), dtype, data));
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut o = Vec::new();
        o.extend_from_slice(MAGIC);
        o.extend_from_slice(&3u32.to_le_bytes());
        o.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        o.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut o, k);
            o.extend_from_slice(&(v.value_type() as u32).to_le_bytes());
            put_value(&mut o, v);
        }
        let mut rel = 0u64;
        let mut offsets = Vec::new();
        for (name, shape, dtype, data) in &self.tensors {
            put_str(&mut o, name);
            o.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for d in shape {
                o.extend_from_slice(&d.to_le_bytes());
            }
            o.extend_from_slice(&dtype.ggml_id().to_le_bytes());
            o.extend_from_slice(&rel.to_le_bytes());
            offsets.push(rel);
            rel = (rel + data.len() as u64).div_ceil(self.alignment) * self.alignment;
        }
        let pad = |o: &mut Vec<u8>, a: u64| {
            o.resize((o.len() as u64).div_ceil(a) as usize * a as usize, 0)
        };
        pad(&mut o, self.alignment);
        for (_, _, _, data) in &self.tensors {
            o.extend_from_slice(data);
            pad(&mut o, self.alignment);
        }
        o
    }

    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let io = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = File::create(path).map_err(io)?;
        f.write_all(&self.to_bytes()).map_err(io)
    }
}

fn put_str(o: &mut Vec<u8>, s: &str) {
    o.extend_from_slice(&(s.len() as u64).to_le_bytes());
    o.extend_from_slice(s.as_bytes());
}

fn put_value(o: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => o.push(*x),
        Value::I8(x) => o.push(*x as u8),
        Value::U16(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => o.push(*x as u8),
        Value::String(s) => put_str(o, s),
        Value::Array(t, items) => {
            o.extend_from_slice(&(*t as u32).to_le_bytes());
            o.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for i in items {
                put_value(o, i);
            }
        }
        Value::U64(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => o.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => o.extend_from_slice(&x.to_le_bytes()),
    }
}
