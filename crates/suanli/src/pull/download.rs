//! One file over HTTP into place: resumed from a partial download with a
//! `Range` request, redirects followed (without the token, as hubs' CDNs
//! want), the sha256 checked where the hub gives one, a progress bar.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::PullError;

pub struct Http {
    agent: ureq::Agent,
    /// `Authorization: Bearer …` for the hub's own host.
    pub token: Option<String>,
}

impl Http {
    pub fn new(token: Option<String>) -> Http {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(10)
            .timeout_connect(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Http { agent, token }
    }

    fn get(
        &self,
        url: &str,
        range_from: u64,
    ) -> Result<ureq::http::Response<ureq::Body>, PullError> {
        let mut req = self.agent.get(url);
        if let Some(t) = &self.token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        if range_from > 0 {
            req = req.header("Range", &format!("bytes={range_from}-"));
        }
        req.call().map_err(|e| PullError::Http {
            url: url.to_string(),
            why: e.to_string(),
        })
    }

    /// A JSON document (a hub's file list).
    pub fn json(&self, url: &str) -> Result<serde_json::Value, PullError> {
        let mut r = self.get(url, 0)?;
        status(url, r.status().as_u16(), self.token.is_some())?;
        let text = r.body_mut().read_to_string().map_err(|e| PullError::Http {
            url: url.to_string(),
            why: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| PullError::Http {
            url: url.to_string(),
            why: format!("not JSON: {e}"),
        })
    }

    /// `url` into `dest` (through `dest.incomplete`, resumed if it is
    /// there), `size` bytes where known, checked against `sha256` where
    /// given. A download that ends short is left to resume on the next
    /// run, never moved into place.
    pub fn file(
        &self,
        url: &str,
        dest: &Path,
        size: Option<u64>,
        sha256: Option<&str>,
        label: &str,
    ) -> Result<(), PullError> {
        let part = PathBuf::from(format!("{}.incomplete", dest.display()));
        let io = |e: std::io::Error| PullError::Io {
            path: part.clone(),
            source: e,
        };
        let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if size.is_some_and(|s| have > s) {
            std::fs::remove_file(&part).map_err(io)?;
            have = 0;
        }
        let pb = indicatif::ProgressBar::new(size.unwrap_or(0));
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        pb.set_message(label.to_string());
        pb.set_position(have);
        if size != Some(have) || have == 0 {
            let mut r = self.get(url, have)?;
            let code = r.status().as_u16();
            if code == 416 && size == Some(have) {
                // Already whole.
            } else {
                status(url, code, self.token.is_some())?;
                // A server that ignores the range sends the whole file.
                let resumed = code == 206;
                let mut f = if resumed {
                    OpenOptions::new().append(true).open(&part).map_err(io)?
                } else {
                    have = 0;
                    File::create(&part).map_err(io)?
                };
                pb.set_position(have);
                let mut body = r.body_mut().as_reader();
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = match body.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) => {
                            pb.abandon();
                            return Err(PullError::Interrupted {
                                url: url.to_string(),
                                have,
                                why: e.to_string(),
                                part: part.clone(),
                            });
                        }
                    };
                    f.write_all(&buf[..n]).map_err(io)?;
                    have += n as u64;
                    pb.set_position(have);
                }
                f.flush().map_err(io)?;
            }
        }
        pb.finish_and_clear();
        if let Some(s) = size {
            if have != s {
                return Err(PullError::Interrupted {
                    url: url.to_string(),
                    have,
                    why: format!("the body ended at {have} of {s} bytes"),
                    part,
                });
            }
        }
        if let Some(want) = sha256 {
            let got = sha256_of(&part).map_err(io)?;
            if !got.eq_ignore_ascii_case(want) {
                std::fs::remove_file(&part).map_err(io)?;
                return Err(PullError::Checksum {
                    url: url.to_string(),
                    want: want.to_string(),
                    got,
                });
            }
        }
        std::fs::rename(&part, dest).map_err(|e| PullError::Io {
            path: dest.to_path_buf(),
            source: e,
        })
    }
}

fn sha256_of(p: &Path) -> std::io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A hub's status as an error naming the URL (and, for 401/403, the
/// token to set).
pub fn status(url: &str, code: u16, has_token: bool) -> Result<(), PullError> {
    match code {
        200..=299 => Ok(()),
        401 | 403 => Err(PullError::Unauthorized {
            url: url.to_string(),
            hint: if has_token {
                "the token given has no access to it"
            } else {
                "a gated or private repository: set HF_TOKEN (or MODELSCOPE_API_TOKEN)"
            },
        }),
        404 => Err(PullError::NotFound {
            url: url.to_string(),
        }),
        c => Err(PullError::Http {
            url: url.to_string(),
            why: format!("status {c}"),
        }),
    }
}
