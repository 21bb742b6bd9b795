//! deploy/: the Kubernetes manifests validated against Kubernetes' own
//! schemas and the InferencePool's (tests/deploy/validate.py). Python needs
//! `kubernetes-validate`, `jsonschema` and `pyyaml`; when the system Python
//! lacks them, a virtual environment under the target directory gets them
//! from the package registry once.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

fn python() -> PathBuf {
    common::python_with(
        "deploy-venv",
        "kubernetes_validate, jsonschema, yaml",
        &["kubernetes-validate", "jsonschema", "pyyaml"],
    )
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
