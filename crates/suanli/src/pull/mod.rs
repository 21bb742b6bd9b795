//! `suanli pull hf://ORG/REPO[:QUANT]`, `hf://ORG/REPO/FILE.gguf`, and
//! `ms://…` the same way: models from the Hugging Face Hub and from
//! ModelScope, through each hub's documented HTTP API, into caches laid out
//! as the hubs' own clients lay them out (so `huggingface_hub`,
//! `transformers` and `modelscope` find the files, and suanli finds
//! theirs):
//!
//! - Hugging Face: `$HF_HOME/hub` (default `~/.cache/huggingface/hub`),
//!   `models--ORG--REPO/blobs/ETAG`, `snapshots/COMMIT/PATH` linking to
//!   the blob, `refs/main` holding the commit; `HF_ENDPOINT`, `HF_TOKEN`.
//! - ModelScope: `$MODELSCOPE_CACHE` (default `~/.cache/modelscope/hub`),
//!   `models/ORG/REPO/PATH`; `MODELSCOPE_ENDPOINT`, `MODELSCOPE_API_TOKEN`.
//!
//! A GGUF repository gives the files of the quantization asked (all
//! shards of a split file); a safetensors repository its config,
//! tokenizer files and weights. Downloads resume ([`download`]).

pub mod download;

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("'{0}': not a hub reference (hf://ORG/REPO[:QUANT], hf://ORG/REPO/FILE.gguf, ms://ORG/REPO…)")]
    Spec(String),
    #[error("{url}: {why}")]
    Http { url: String, why: String },
    #[error("{url}: unauthorized ({hint})")]
    Unauthorized { url: String, hint: &'static str },
    #[error("{url}: not found (no such repository, revision or file)")]
    NotFound { url: String },
    #[error("{url}: interrupted at {have} bytes ({why}); the partial file {part} resumes on the next pull")]
    Interrupted {
        url: String,
        have: u64,
        why: String,
        part: PathBuf,
    },
    #[error("{url}: sha256 {got}, the hub says {want}; the download was removed")]
    Checksum {
        url: String,
        want: String,
        got: String,
    },
    #[error("{repo}: {why}")]
    Select { repo: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hub {
    HuggingFace,
    ModelScope,
}

/// A parsed reference: hub, `ORG/REPO`, and a file or a quantization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub hub: Hub,
    pub repo: String,
    pub file: Option<String>,
    pub quant: Option<String>,
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec, PullError> {
        let (hub, rest) = if let Some(r) = s.strip_prefix("hf://") {
            (Hub::HuggingFace, r)
        } else if let Some(r) = s.strip_prefix("ms://") {
            (Hub::ModelScope, r)
        } else {
            return Err(PullError::Spec(s.into()));
        };
        let parts: Vec<&str> = rest.splitn(3, '/').collect();
        if parts.len() < 2 || parts[0].is_empty() || parts[1].is_empty() {
            return Err(PullError::Spec(s.into()));
        }
        let (name, quant) = match parts[1].split_once(':') {
            Some((n, q)) if !q.is_empty() => (n, Some(q.to_string())),
            _ => (parts[1], None),
        };
        let file = parts
            .get(2)
            .filter(|f| !f.is_empty())
            .map(|f| f.to_string());
        if file.is_some() && quant.is_some() {
            return Err(PullError::Spec(s.into()));
        }
        Ok(Spec {
            hub,
            repo: format!("{}/{name}", parts[0]),
            file,
            quant,
        })
    }
}

/// `true` for a string `pull` takes.
pub fn is_hub_ref(s: &str) -> bool {
    s.starts_with("hf://") || s.starts_with("ms://")
}

/// One file of a repository listing.
#[derive(Debug, Clone)]
struct RepoFile {
    path: String,
    size: Option<u64>,
    sha256: Option<String>,
    /// The blob name in the Hugging Face cache (the ETag: sha256 for LFS
    /// files, the git object id otherwise).
    blob: String,
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
        .trim_end_matches('/')
        .to_string()
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Which files of `files` to fetch for `spec`.
fn select(spec: &Spec, files: &[RepoFile]) -> Result<Vec<RepoFile>, PullError> {
    let err = |why: String| PullError::Select {
        repo: spec.repo.clone(),
        why,
    };
    if let Some(f) = &spec.file {
        return files
            .iter()
            .find(|x| &x.path == f)
            .cloned()
            .map(|x| vec![x])
            .ok_or_else(|| err(format!("no file {f}")));
    }
    let ggufs: Vec<&RepoFile> = files.iter().filter(|f| f.path.ends_with(".gguf")).collect();
    let has_st = files.iter().any(|f| f.path.ends_with(".safetensors"));
    let quant_of = |p: &str| -> String {
        let stem = p.rsplit('/').next().unwrap_or(p).trim_end_matches(".gguf");
        let stem = stem.split("-0000").next().unwrap_or(stem);
        stem.rsplit(['-', '.', '_'])
            .take(3)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("_")
            .to_ascii_uppercase()
    };
    let pick = |q: &str| -> Vec<RepoFile> {
        let q = q.to_ascii_uppercase();
        ggufs
            .iter()
            .filter(|f| {
                let name = f.path.to_ascii_uppercase();
                let qs = quant_of(&f.path);
                qs.ends_with(&q)
                    && (name.contains(&format!("-{q}"))
                        || name.contains(&format!(".{q}"))
                        || name.contains(&format!("_{q}")))
            })
            .map(|f| (*f).clone())
            .collect()
    };
    if let Some(q) = &spec.quant {
        let got = pick(q);
        if got.is_empty() {
            let mut have: Vec<String> = ggufs.iter().map(|f| f.path.clone()).collect();
            have.sort();
            return Err(err(format!(
                "no GGUF file at quantization {q} (GGUF files: {})",
                if have.is_empty() {
                    "none".into()
                } else {
                    have.join(", ")
                }
            )));
        }
        return Ok(got);
    }
    if has_st {
        let wanted = |p: &str| {
            let n = p.rsplit('/').next().unwrap_or(p);
            !p.contains('/')
                && (n.ends_with(".safetensors")
                    || n == "model.safetensors.index.json"
                    || n == "config.json"
                    || n == "generation_config.json"
                    || n.starts_with("tokenizer")
                    || n == "special_tokens_map.json"
                    || n == "vocab.json"
                    || n == "merges.txt"
                    || n == "chat_template.jinja")
        };
        return Ok(files.iter().filter(|f| wanted(&f.path)).cloned().collect());
    }
    for q in ["Q4_K_M", "Q8_0"] {
        let got = pick(q);
        if !got.is_empty() {
            return Ok(got);
        }
    }
    match ggufs.as_slice() {
        [] => Err(err("neither GGUF nor safetensors files".into())),
        [one] => Ok(vec![(*one).clone()]),
        _ => Err(err(format!(
            "several GGUF files: name one with :QUANT ({})",
            ggufs
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Pulls `spec` and returns the local path to load: the (first) GGUF
/// file, or the snapshot directory of a safetensors repository.
pub fn pull(spec: &str) -> Result<PathBuf, PullError> {
    let spec = Spec::parse(spec)?;
    match spec.hub {
        Hub::HuggingFace => pull_hf(&spec),
        Hub::ModelScope => pull_ms(&spec),
    }
}

fn mkdirs(p: &Path) -> Result<(), PullError> {
    std::fs::create_dir_all(p).map_err(|e| PullError::Io {
        path: p.to_path_buf(),
        source: e,
    })
}

fn pull_hf(spec: &Spec) -> Result<PathBuf, PullError> {
    let ep = env_or("HF_ENDPOINT", "https://huggingface.co");
    let token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
    let http = download::Http::new(token);
    let info = http.json(&format!("{ep}/api/models/{}/revision/main", spec.repo))?;
    let commit = info["sha"].as_str().unwrap_or("main").to_string();
    let tree = http.json(&format!(
        "{ep}/api/models/{}/tree/{commit}?recursive=true",
        spec.repo
    ))?;
    let files: Vec<RepoFile> = tree
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|f| f["type"] == "file")
        .filter_map(|f| {
            let path = f["path"].as_str()?.to_string();
            let sha256 = f["lfs"]["oid"].as_str().map(str::to_string);
            let size = f["lfs"]["size"].as_u64().or(f["size"].as_u64());
            let blob = sha256.clone().or(f["oid"].as_str().map(str::to_string))?;
            Some(RepoFile {
                path,
                size,
                sha256,
                blob,
            })
        })
        .collect();
    let chosen = select(spec, &files)?;
    let cache = std::env::var_os("HF_HUB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("HF_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| home().join(".cache/huggingface"))
                .join("hub")
        });
    let root = cache.join(format!("models--{}", spec.repo.replace('/', "--")));
    let (blobs, snap) = (root.join("blobs"), root.join("snapshots").join(&commit));
    mkdirs(&blobs)?;
    mkdirs(&root.join("refs"))?;
    std::fs::write(root.join("refs/main"), &commit).map_err(|e| PullError::Io {
        path: root.join("refs/main"),
        source: e,
    })?;
    for f in &chosen {
        let blob = blobs.join(&f.blob);
        if !blob.exists() {
            let url = format!("{ep}/{}/resolve/{commit}/{}", spec.repo, f.path);
            http.file(&url, &blob, f.size, f.sha256.as_deref(), &f.path)?;
        }
        let link = snap.join(&f.path);
        if let Some(dir) = link.parent() {
            mkdirs(dir)?;
        }
        if !link.exists() {
            let depth = f.path.matches('/').count() + 2;
            let target = PathBuf::from("../".repeat(depth))
                .join("blobs")
                .join(&f.blob);
            link_or_copy(&target, &blob, &link)?;
        }
    }
    Ok(result_path(&snap, &chosen))
}

fn pull_ms(spec: &Spec) -> Result<PathBuf, PullError> {
    let ep = env_or("MODELSCOPE_ENDPOINT", "https://www.modelscope.cn");
    let token = std::env::var("MODELSCOPE_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let http = download::Http::new(token);
    let list = http.json(&format!(
        "{ep}/api/v1/models/{}/repo/files?Revision=master&Recursive=true",
        spec.repo
    ))?;
    let files: Vec<RepoFile> = list["Data"]["Files"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|f| f["Type"] != "tree")
        .filter_map(|f| {
            let path = f["Path"].as_str()?.to_string();
            Some(RepoFile {
                blob: path.clone(),
                size: f["Size"].as_u64(),
                sha256: f["Sha256"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                path,
            })
        })
        .collect();
    let chosen = select(spec, &files)?;
    let cache = std::env::var_os("MODELSCOPE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".cache/modelscope/hub"));
    let dir = cache.join("models").join(&spec.repo);
    for f in &chosen {
        let dest = dir.join(&f.path);
        if let Some(p) = dest.parent() {
            mkdirs(p)?;
        }
        if !dest.exists() {
            let url = format!(
                "{ep}/api/v1/models/{}/repo?Revision=master&FilePath={}",
                spec.repo, f.path
            );
            http.file(&url, &dest, f.size, f.sha256.as_deref(), &f.path)?;
        }
    }
    Ok(result_path(&dir, &chosen))
}

/// The first GGUF file (shard 1 of a split one), or the directory.
fn result_path(dir: &Path, chosen: &[RepoFile]) -> PathBuf {
    let mut ggufs: Vec<&RepoFile> = chosen
        .iter()
        .filter(|f| f.path.ends_with(".gguf"))
        .collect();
    ggufs.sort_by(|a, b| a.path.cmp(&b.path));
    match ggufs.first() {
        Some(f) => dir.join(&f.path),
        None => dir.to_path_buf(),
    }
}

fn link_or_copy(target: &Path, blob: &Path, link: &Path) -> Result<(), PullError> {
    #[cfg(unix)]
    if std::os::unix::fs::symlink(target, link).is_ok() {
        return Ok(());
    }
    let _ = target;
    std::fs::copy(blob, link)
        .map(|_| ())
        .map_err(|e| PullError::Io {
            path: link.to_path_buf(),
            source: e,
        })
}

/// The repository listing of a test or a caller, for [`select`]'s rules.
pub fn select_paths(spec: &Spec, paths: &[&str]) -> Result<Vec<String>, PullError> {
    let files: Vec<RepoFile> = paths
        .iter()
        .map(|p| RepoFile {
            path: p.to_string(),
            size: None,
            sha256: None,
            blob: p.to_string(),
        })
        .collect();
    Ok(select(spec, &files)?.into_iter().map(|f| f.path).collect())
}
