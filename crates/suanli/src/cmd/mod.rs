//! The subcommands, and what they share: finding and loading a model.

pub mod bench;
pub mod chat;
pub mod eval;
pub mod inspect;
pub mod lineage;
pub mod perplexity;
pub mod plan;
pub mod pull;
pub mod run;
pub mod serve;
pub mod spec;
pub mod tokenize;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use suanli::hub;
use suanli_formats::GgufFile;
use suanli_models::loader::{GgufSource, HfSource};
use suanli_models::{KvDtype, Model};
use suanli_tokenizer::{ChatMessage, ChatTemplate, Tokenizer};

/// A path, or a name from the hub's catalog (fetched on first use).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    if suanli::pull::is_hub_ref(spec) {
        return Ok(suanli::pull::pull(spec)?);
    }
    if hub::find(spec).is_some() {
        return Ok(hub::resolve(spec, &mut |m| eprintln!("{m}"))?);
    }
    bail!(
        "model '{spec}' not found: not a file or directory, and not a known model name ({})",
        hub::CATALOG
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Use `threads` worker threads for every parallel kernel.
pub fn set_threads(threads: Option<usize>) -> Result<usize> {
    let n = threads.filter(|&t| t > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("starting the thread pool")?;
    Ok(suanli_kernels::pool::set_threads(n))
}

pub struct Loaded {
    pub model: Box<dyn Model>,
    pub tokenizer: Tokenizer,
    pub path: PathBuf,
    /// KV precision: f16 as llama.cpp for quantized files, f32 for f32 checkpoints.
    pub kv_dtype: KvDtype,
}

/// Fault in a mapped file's pages with a progress bar on stderr, so the
/// first token's timing is not a disk read.
fn prefault(path: &Path, bytes: &[&[u8]]) {
    let total: usize = bytes.iter().map(|b| b.len()).sum();
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("loading {msg} [{bar:30}] {bytes}/{total_bytes}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(
        path.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let mut sink = 0u8;
    for b in bytes {
        for chunk in b.chunks(1 << 20) {
            for i in (0..chunk.len()).step_by(4096) {
                sink ^= chunk[i];
            }
            pb.inc(chunk.len() as u64);
        }
    }
    std::hint::black_box(sink);
    pb.finish_and_clear();
}

pub fn load(spec: &str) -> Result<Loaded> {
    let path = resolve_model(spec)?;
    let t0 = Instant::now();
    let (model, tokenizer, kv_dtype) = if path.is_dir() {
        let src = HfSource::open(&path)?;
        let tok = Tokenizer::from_hf(&path)
            .with_context(|| format!("loading the tokenizer of {}", path.display()))?;
        let model = suanli_models::load_source(&src)?;
        let f32_weights = src_is_f32(&src);
        (
            model,
            tok,
            if f32_weights {
                KvDtype::F32
            } else {
                KvDtype::F16
            },
        )
    } else {
        let file = GgufFile::open(&path)?;
        let tok = Tokenizer::from_gguf(&file)?;
        // An embedding table separate from the output is read a row per
        // token: leave its pages to be faulted on use (as llama.cpp's mmap
        // does) rather than make all of it resident.
        let untied = file.tensors.iter().any(|t| t.name == "output.weight");
        let datas: Vec<_> = file
            .tensors
            .iter()
            .filter(|t| !(untied && t.name == "token_embd.weight"))
            .filter_map(|t| file.tensor_data(t).ok())
            .collect();
        prefault(&path, &datas.iter().map(|d| d.bytes()).collect::<Vec<_>>());
        let src = GgufSource::new(file)?;
        (suanli_models::load_source(&src)?, tok, KvDtype::F16)
    };
    // Parsing the metadata and building the tokenizer left tens of MB of
    // small freed blocks in the heap; give their pages back. From now on
    // keep freed blocks instead: a forward pass allocates and frees
    // activation buffers of megabytes layer after layer, which glibc would
    // serve by fresh `mmap`s (or trim from the heap) and hand back, paying
    // page faults and the zeroing of new pages every layer — 12% of
    // Qwen2.5-0.5B pp512. Set after loading, so load's temporaries (repack
    // chunks) are still returned and peak memory stays as it was.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim returns free heap memory to the OS; mallopt only
    // tunes glibc's allocator.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
    if tokenizer.n_vocab() > model.config().n_vocab + 1024 {
        bail!(
            "{}: tokenizer has {} tokens but the model's embedding has {} rows",
            path.display(),
            tokenizer.n_vocab(),
            model.config().n_vocab
        );
    }
    eprintln!(
        "loaded {} ({}, {} layers) in {:.2}s",
        path.display(),
        model.config().arch,
        model.config().n_layer,
        t0.elapsed().as_secs_f64()
    );
    Ok(Loaded {
        model,
        tokenizer,
        path,
        kv_dtype,
    })
}

impl Loaded {
    /// Use `kv` for the KV cache (when given), if the model's heads allow it.
    pub fn set_kv_type(&mut self, kv: Option<KvDtype>) -> Result<()> {
        let Some(kv) = kv else { return Ok(()) };
        let c = self.model.config();
        if kv == KvDtype::Q8_0
            && (!c.head_dim.is_multiple_of(32) || !c.head_dim_v.is_multiple_of(32))
        {
            bail!(
                "a q8_0 KV cache needs head dimensions in multiples of 32; {} has {} and {}",
                self.path.display(),
                c.head_dim,
                c.head_dim_v
            );
        }
        self.kv_dtype = kv;
        Ok(())
    }
}

fn src_is_f32(src: &HfSource) -> bool {
    use suanli_models::WeightSource;
    src.get("token_embd.weight")
        .is_some_and(|w| w.dtype == suanli_kernels::DType::F32)
}

/// The chat template of a model, or a built-in one for models without.
pub fn chat_template(l: &Loaded) -> Result<ChatTemplate> {
    let tok = &l.tokenizer;
    let text = |id: Option<u32>| id.and_then(|i| tok.token_text(i)).unwrap_or_default();
    let source = match &tok.chat_template {
        Some(t) => t.clone(),
        None => match l.model.config().arch.as_str() {
            "gemma3" => suanli_tokenizer::template::GEMMA.to_string(),
            _ => suanli_tokenizer::template::CHATML.to_string(),
        },
    };
    Ok(ChatTemplate::new(&source, &text(tok.bos), &text(tok.eos))?)
}

/// Render `messages` and tokenize the result as llama.cpp does: special
/// tokens parsed, BOS added per the model, not twice.
pub fn chat_tokens(l: &Loaded, tmpl: &ChatTemplate, messages: &[ChatMessage]) -> Result<Vec<u32>> {
    Ok(l.tokenizer
        .apply_chat_template(tmpl, messages, None, None)?
        .1)
}
