//! The base model's log-probabilities on disk, in llama.cpp's format (what
//! `llama-perplexity --kl-divergence-base FILE` writes and `--kl-divergence`
//! reads), so the files of either tool serve the other. Little-endian:
//!
//! ```text
//! "_logits_"                  8 bytes
//! n_ctx, n_vocab, n_chunk     i32 each
//! tokens                      i32 × n_chunk·n_ctx (the text's, as tokenized: no BOS put in)
//! per chunk, per scored token u16 × row_len(n_vocab) (rows::nll_quantized)
//! ```
//!
//! A chunk scores `n_ctx − 1 − n_ctx/2` tokens; a row is two f32s (scale and
//! floor) and one 16-bit log-probability per token — half the bytes of f32
//! logits. The reader checks the length the header implies against the
//! file's before anything is read, so a truncated or foreign file is an
//! error naming it, never a short read halfway through a run.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::rows::row_len;
use super::{Layout, PerplexityError, Result};

pub const MAGIC: &[u8; 8] = b"_logits_";

/// Bytes before the rows: magic, three counts, the tokens.
fn head_bytes(n_ctx: usize, n_chunk: usize) -> u64 {
    8 + 12 + 4 * (n_ctx as u64) * (n_chunk as u64)
}

/// Bytes of one chunk's rows.
fn chunk_bytes(n_ctx: usize, n_vocab: usize) -> u64 {
    let scored = (n_ctx - 1 - n_ctx / 2) as u64;
    scored * row_len(n_vocab) as u64 * 2
}

fn bad(path: &Path, why: impl Into<String>) -> PerplexityError {
    PerplexityError::LogitsFile {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PerplexityError + '_ {
    move |err| PerplexityError::Io {
        path: path.to_path_buf(),
        err,
    }
}

/// Writes a base file: the header when created, then each chunk's rows in
/// order. It goes to `FILE.part` and takes its name when [`Self::finish`]
/// has written every chunk; a writer dropped unfinished (a failed run)
/// removes its part, so no file is left that looks whole.
pub struct Writer {
    out: Option<BufWriter<File>>,
    part: PathBuf,
    path: PathBuf,
    left: usize,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

impl Writer {
    pub fn create(path: &Path, layout: &Layout, n_vocab: usize, tokens: &[u32]) -> Result<Self> {
        let mut part = path.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&part).map_err(io(&part))?);
        let n = layout.n_ctx * layout.n_chunk;
        let count = |v: usize| {
            i32::try_from(v).map_err(|_| bad(path, format!("{v} does not fit the header's i32")))
        };
        let mut head = MAGIC.to_vec();
        for v in [layout.n_ctx, n_vocab, layout.n_chunk] {
            head.extend(count(v)?.to_le_bytes());
        }
        let tokens = tokens
            .get(..n)
            .ok_or_else(|| bad(path, format!("{} tokens for {n} positions", tokens.len())))?;
        for &t in tokens {
            head.extend((t as i32).to_le_bytes());
        }
        out.write_all(&head).map_err(io(&part))?;
        Ok(Writer {
            out: Some(out),
            part,
            path: path.to_path_buf(),
            left: layout.n_chunk,
        })
    }

    /// One chunk's rows, in token order.
    pub fn write_chunk(&mut self, rows: &[u16]) -> Result<()> {
        let mut bytes = Vec::with_capacity(rows.len() * 2);
        for &v in rows {
            bytes.extend(v.to_le_bytes());
        }
        if let Some(out) = self.out.as_mut() {
            out.write_all(&bytes).map_err(io(&self.part))?;
        }
        self.left = self.left.saturating_sub(1);
        Ok(())
    }

    /// Flushes and gives the file its name (an error if chunks are missing).
    pub fn finish(mut self) -> Result<()> {
        if self.left > 0 {
            return Err(bad(
                &self.part,
                format!("{} chunks never written", self.left),
            ));
        }
        let Some(out) = self.out.take() else {
            return Err(bad(&self.part, "already finished"));
        };
        let file = out
            .into_inner()
            .map_err(|e| io(&self.part)(e.into_error()))?;
        file.sync_all().map_err(io(&self.part))?;
        std::fs::rename(&self.part, &self.path).map_err(io(&self.path))
    }
}

/// A base file opened for reading: its header checked, its tokens read,
/// its rows read a chunk at a time.
pub struct Reader {
    input: BufReader<File>,
    pub path: PathBuf,
    pub n_ctx: usize,
    pub n_vocab: usize,
    pub n_chunk: usize,
    /// The text's tokens, `n_chunk · n_ctx` of them.
    pub tokens: Vec<u32>,
    bytes: Vec<u8>,
}

impl Reader {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(io(path))?;
        let len = file.metadata().map_err(io(path))?.len();
        let mut input = BufReader::with_capacity(1 << 20, file);
        if len < 20 {
            return Err(bad(
                path,
                format!("{len} bytes: too short to be a logits file (a 20-byte header at least)"),
            ));
        }
        let mut head = [0u8; 20];
        input.read_exact(&mut head).map_err(io(path))?;
        if &head[..8] != MAGIC {
            return Err(bad(
                path,
                "not a logits file: it does not start with `_logits_` (write one with --save-logits)",
            ));
        }
        let field = |i: usize| i32::from_le_bytes([head[i], head[i + 1], head[i + 2], head[i + 3]]);
        let (n_ctx, n_vocab, n_chunk) = (field(8), field(12), field(16));
        if n_ctx < 4 || n_vocab < 1 || n_chunk < 1 {
            return Err(bad(
                path,
                format!(
                    "header says a context of {n_ctx}, a vocabulary of {n_vocab} and {n_chunk} chunks: not a logits file"
                ),
            ));
        }
        let (n_ctx, n_vocab, n_chunk) = (n_ctx as usize, n_vocab as usize, n_chunk as usize);
        let want = head_bytes(n_ctx, n_chunk) + n_chunk as u64 * chunk_bytes(n_ctx, n_vocab);
        if want != len {
            return Err(bad(
                path,
                format!(
                    "{len} bytes, but its header (context {n_ctx}, vocabulary {n_vocab}, {n_chunk} chunks) makes {want}: {}",
                    match len < want {
                        true => "truncated",
                        false => "trailing bytes; not one whole logits file",
                    }
                ),
            ));
        }
        let mut raw = vec![0u8; 4 * n_ctx * n_chunk];
        input.read_exact(&mut raw).map_err(io(path))?;
        let mut tokens = Vec::with_capacity(raw.len() / 4);
        for (i, b) in raw.chunks_exact(4).enumerate() {
            let t = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if t < 0 || t as usize >= n_vocab {
                return Err(bad(
                    path,
                    format!("token {i} is {t}, outside its vocabulary of {n_vocab}"),
                ));
            }
            tokens.push(t as u32);
        }
        Ok(Reader {
            input,
            path: path.to_path_buf(),
            n_ctx,
            n_vocab,
            n_chunk,
            tokens,
            bytes: Vec::new(),
        })
    }

    /// The next chunk's rows into `rows` (resized to
    /// `scored · row_len(n_vocab)`).
    pub fn read_chunk(&mut self, rows: &mut Vec<u16>) -> Result<()> {
        let n = chunk_bytes(self.n_ctx, self.n_vocab) as usize;
        self.bytes.resize(n, 0);
        self.input
            .read_exact(&mut self.bytes)
            .map_err(io(&self.path))?;
        rows.clear();
        rows.extend(
            self.bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]])),
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two chunks of 8, scored from position 4.
    const LAYOUT: Layout = Layout {
        n_ctx: 8,
        n_chunk: 2,
        first: 4,
    };

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("suanli-logits-{}-{name}", std::process::id()))
    }

    #[test]
    fn what_is_written_reads_back() {
        let p = tmp("roundtrip");
        let layout = LAYOUT;
        let tokens: Vec<u32> = (0..20).collect();
        let mut w = Writer::create(&p, &layout, 21, &tokens).expect("create");
        let rows: Vec<u16> = (0..3 * row_len(21)).map(|i| i as u16).collect();
        w.write_chunk(&rows).expect("write");
        w.write_chunk(&rows).expect("write");
        w.finish().expect("finish");
        let mut r = Reader::open(&p).expect("open");
        assert_eq!((r.n_ctx, r.n_vocab, r.n_chunk), (8, 21, 2));
        assert_eq!(r.tokens, tokens[..16]);
        let mut back = Vec::new();
        r.read_chunk(&mut back).expect("read");
        assert_eq!(back, rows);
        let _ = std::fs::remove_file(&p);
    }

    #[test]
    fn an_unfinished_file_is_not_left_behind() {
        let p = tmp("unfinished");
        let layout = LAYOUT;
        let tokens: Vec<u32> = (0..16).collect();
        let mut w = Writer::create(&p, &layout, 21, &tokens).expect("create");
        w.write_chunk(&vec![0; 3 * row_len(21)]).expect("write");
        assert!(w.finish().is_err(), "a chunk is missing");
        let w = Writer::create(&p, &layout, 21, &tokens).expect("create");
        drop(w);
        let part = PathBuf::from(format!("{}.part", p.display()));
        assert!(!p.exists() && !part.exists());
    }

    #[test]
    fn a_short_or_foreign_file_is_an_error_naming_it() {
        let p = tmp("bad");
        for (bytes, needle) in [
            (b"_logits".to_vec(), "too short"),
            (b"GGUF and some more bytes!".to_vec(), "not a logits file"),
            (
                [
                    &MAGIC[..],
                    &8i32.to_le_bytes(),
                    &21i32.to_le_bytes(),
                    &2i32.to_le_bytes(),
                ]
                .concat(),
                "truncated",
            ),
        ] {
            std::fs::write(&p, bytes).expect("write");
            let e = Reader::open(&p)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains(needle) && e.contains(&p.display().to_string()),
                "{e}"
            );
        }
        let _ = std::fs::remove_file(&p);
        let e = Reader::open(&p)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&p.display().to_string()), "{e}");
    }
}
