//! What several test binaries share: a Python that can import the packages
//! a test drives (the system one, else a virtual environment under the
//! target directory that gets them from the package registry once).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A Python importing `modules`, with `packages` installed if needed into
/// the virtual environment `venv` (a directory name).
pub fn python_with(venv: &str, modules: &str, packages: &[&str]) -> PathBuf {
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if ok(&system) {
        return system;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(venv);
    let py = venv.join("bin/python");
    if !ok(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "python3 -m venv failed: these tests need Python 3");
        let installed = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet"])
            .args(packages)
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "pip install {packages:?} failed");
    }
    assert!(ok(&py), "the virtual environment cannot import {modules}");
    py
}
