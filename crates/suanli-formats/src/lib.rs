//! suanli-formats: model files.
//!
//! - [`gguf`]: GGUF v2/v3 reader (memory-mapped, zero-copy tensor views, every
//!   metadata type, `general.alignment`) and [`gguf::GgufWriter`].
//! - [`safetensors`]: single-file and sharded safetensors, plus the Hugging
//!   Face `config.json` next to them.
//!
//! Every error names the file and, where it applies, the key or tensor and the
//! byte offset at which reading failed. No input can make these readers panic.

pub mod gguf;
pub mod safetensors;
mod value;

pub use gguf::{GgufFile, GgufWriter, TensorInfo};
pub use value::{Value, ValueType};

use std::path::PathBuf;

/// Everything that can go wrong reading or writing a model file.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic {magic:02x?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, magic: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (2 and 3 are)")]
    BadVersion { path: PathBuf, version: u32 },
    #[error(
        "{path}: truncated at byte offset {offset} while reading {what} (file is {len} bytes)"
    )]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: String,
        len: u64,
    },
    #[error("{path}: malformed {what} at byte offset {offset}: {why}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        what: String,
        why: String,
    },
    #[error("{path}: tensor '{name}': {why}")]
    Tensor {
        path: PathBuf,
        name: String,
        why: String,
    },
    #[error("{path}: metadata key '{key}': {why}")]
    Key {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("{path}: {why}")]
    Other { path: PathBuf, why: String },
}

pub type Result<T> = std::result::Result<T, FormatError>;

/// A read-only file mapping as [`suanli_kernels::matmul::Storage`] for
/// zero-copy tensors, with the file it maps (small scattered reads go
/// through the file instead of the mapping).
pub struct Mapped {
    map: memmap2::Mmap,
    file: std::fs::File,
}

impl Mapped {
    /// Maps all of `file`, read-only.
    pub fn new(file: std::fs::File) -> std::io::Result<Self> {
        // SAFETY: the mapping is read-only; a file changed under us by
        // another process is outside what we can defend against, as for
        // every mmap reader.
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        Ok(Mapped { map, file })
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

impl suanli_kernels::matmul::Storage for Mapped {
    fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// A positioned read of the file (`pread`): the bytes come from the
    /// page cache without a page of the mapping being faulted in.
    fn read_at(&self, off: usize, dst: &mut [u8]) -> bool {
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(dst, off as u64).is_ok()
        }
        #[cfg(not(unix))]
        {
            let _ = (off, dst, &self.file);
            false
        }
    }

    /// Drops the whole pages inside the range from memory (they would be
    /// read from the file again if touched).
    fn release(&self, off: usize, len: usize) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let base = self.map.as_ptr() as usize;
            let start = (base + off).next_multiple_of(PAGE) - base;
            let end = (base + off + len) / PAGE * PAGE - base;
            if end > start {
                // SAFETY: a read-only file mapping: dropped pages are read
                // back from the file unchanged on the next access, so no
                // reference into the mapping sees different bytes.
                let _ = unsafe {
                    self.map.unchecked_advise_range(
                        memmap2::UncheckedAdvice::DontNeed,
                        start,
                        end - start,
                    )
                };
            }
        }
    }

    /// No read-around on faults in the range (`MADV_RANDOM`).
    fn random_access(&self, off: usize, len: usize) {
        #[cfg(unix)]
        {
            const PAGE: usize = 4096;
            let base = self.map.as_ptr() as usize;
            let start = (base + off) / PAGE * PAGE - base;
            let end = (base + off + len).next_multiple_of(PAGE) - base;
            let _ = self.map.advise_range(
                memmap2::Advice::Random,
                start,
                (end - start).min(self.map.len() - start),
            );
        }
    }
}
