//! deploy/: the Kubernetes manifests validated against Kubernetes' own
//! schemas and the InferencePool's (tests/deploy/validate.py). Python needs
//! `kubernetes-validate`, `jsonschema` and `pyyaml`; when the system Python
//! lacks them, a virtual environment under the target directory gets them
//! from the package registry once.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    let ok = |py: &Path| {
        Command::new(py)
            .args(["-c", "import kubernetes_validate, jsonschema, yaml"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let system = PathBuf::from("python3");
    if ok(&system) {
        return system;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("deploy-venv");
    let py = venv.join("bin/python");
    if !ok(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "python3 -m venv failed: this test needs Python 3");
        let installed = Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "kubernetes-validate",
                "jsonschema",
                "pyyaml",
            ])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "pip install kubernetes-validate jsonschema pyyaml failed"
        );
    }
    assert!(
        ok(&py),
        "the virtual environment cannot import its packages"
    );
    py
}

#[test]
fn manifests_validate_and_fit_together() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(python())
        .arg(root.join("tests/deploy/validate.py"))
        .arg(&root)
        .output()
        .expect("running python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("deploy: ok"),
        "{text}"
    );
}
