//! A comparison as text, as JSON, and as a heatmap of layer similarity.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde_json::{json, Value};

use super::{Comparison, Summary};

fn p_text(log10_p: f64) -> String {
    if log10_p > -4.0 {
        format!("{:.4}", 10f64.powf(log10_p))
    } else {
        format!("1e{:.0}", log10_p.floor())
    }
}

fn summary_line(s: &Summary) -> String {
    let experts = match s.experts {
        0 => String::new(),
        n => format!(", {n} experts"),
    };
    format!(
        "{} ({} {}, {} layers, hidden {}, vocabulary {}, {:.2}B parameters{experts})",
        s.path.display(),
        s.arch,
        s.format,
        s.layers,
        s.d,
        s.vocab,
        s.parameters as f64 / 1e9
    )
}

/// The human-readable report.
pub fn text(c: &Comparison) -> String {
    let mut o = String::new();
    let al = &c.alignment;
    let _ = writeln!(o, "A: {}", summary_line(&c.a));
    let _ = writeln!(o, "B: {}", summary_line(&c.b));
    let _ = writeln!(
        o,
        "triage: {} tokens shared by their bytes ({:.0}% of A's vocabulary); architecture {}; \
         hidden size {} — a shared tokenizer or architecture is not evidence of shared weights",
        c.shared_tokens,
        100.0 * c.shared_tokens as f64 / c.a.vocab.max(1) as f64,
        if c.a.arch == c.b.arch {
            "the same"
        } else {
            "different"
        },
        if c.a.d == c.b.d {
            "the same"
        } else {
            "different"
        },
    );
    match (&al.rotation, al.rotation_quality) {
        (Some(_), Some(q)) => {
            let _ = writeln!(
                o,
                "alignment: rotated residual stream (held-out correlation {q:.3}; a signed \
                 permutation reaches {:.3})",
                al.perm_quality
            );
        }
        _ => {
            let _ = writeln!(
                o,
                "alignment: signed permutation, held-out correlation {:.3} ({:.0}% of dimensions \
                 in place, {} signs flipped, scale {:.3})",
                al.perm_quality,
                100.0 * al.identity_fraction(),
                al.sign_flips(),
                al.scale
            );
        }
    }
    let _ = writeln!(o, "layer A → B    CKA      z   neurons agree   log10 p");
    for l in &c.layers {
        let neurons = match (l.neurons, l.experts) {
            (Some((k, m)), Some((ea, eb))) => format!("{k:>4}/{m:<4} e{ea}→e{eb}"),
            (Some((k, m)), None) => format!("{k:>4}/{m:<4}"),
            _ => "      -".into(),
        };
        let _ = writeln!(
            o,
            "{:>5} → {:<5} {:>6.3} {:>7.1}   {neurons:<14} {:>8.1}",
            l.a, l.b, l.cka, l.z, l.log10_p
        );
    }
    let block = match (c.block.first(), c.block.last()) {
        (Some(&f), Some(&l)) => format!(
            "{} of A's {} layers matched in order, A {}–{} → B {}–{}",
            c.block.len(),
            c.layers.len(),
            c.layers[f].a,
            c.layers[l].a,
            c.layers[f].b,
            c.layers[l].b
        ),
        _ => "no layers matched".to_string(),
    };
    let _ = writeln!(
        o,
        "verdict: {} (combined p = {}; {block})",
        c.verdict.name(),
        p_text(c.log10_p)
    );
    o
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "path": s.path.display().to_string(),
        "architecture": s.arch,
        "format": s.format,
        "layers": s.layers,
        "hidden": s.d,
        "vocabulary": s.vocab,
        "parameters": s.parameters,
        "experts": s.experts,
    })
}

pub fn json(c: &Comparison) -> Value {
    let al = &c.alignment;
    json!({
        "a": summary_json(&c.a),
        "b": summary_json(&c.b),
        "verdict": c.verdict.name(),
        "p_value": 10f64.powf(c.log10_p),
        "log10_p": c.log10_p,
        "shared_tokens": c.shared_tokens,
        "transforms": {
            "kind": if al.rotation.is_some() { "rotation" } else { "signed_permutation" },
            "alignment_correlation": al.perm_quality,
            "rotation_correlation": al.rotation_quality,
            "identity_fraction": al.identity_fraction(),
            "sign_flips": al.sign_flips(),
            "scale": al.scale,
            "permutation": al.perm,
        },
        "matched_in_order": c.block.iter().map(|&k| json!([c.layers[k].a, c.layers[k].b])).collect::<Vec<_>>(),
        "layers": c.layers.iter().map(|l| json!({
            "a": l.a,
            "b": l.b,
            "cka": l.cka,
            "z": l.z,
            "neurons_agree": l.neurons.map(|n| n.0),
            "neurons_tested": l.neurons.map(|n| n.1),
            "experts": l.experts.map(|(a, b)| json!([a, b])),
            "log10_p_weights": l.log10_p_weights,
            "log10_p_neurons": l.log10_p_neurons,
            "log10_p": l.log10_p,
        })).collect::<Vec<_>>(),
        "similarity": c.similarity,
    })
}

/// The layer-by-layer similarity (mean CKA) as a heatmap: A's layers down,
/// B's across, each matched pair outlined, a colour bar on the right.
pub fn plot(c: &Comparison, path: &Path) -> Result<(), String> {
    let (na, nb) = (c.similarity.len(), c.similarity.first().map_or(0, Vec::len));
    if na == 0 || nb == 0 {
        return Err("no layers to plot".into());
    }
    let cell = (640 / na.max(nb)).clamp(4, 32) as i32;
    let (w, h) = (nb as i32 * cell + 80, na as i32 * cell + 20);
    let root = BitMapBackend::new(path, (w as u32, h as u32)).into_drawing_area();
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let colour = |v: f64| {
        let t = v.clamp(0.0, 1.0);
        // Dark blue (0) through teal to yellow (1).
        let r = (255.0 * (1.5 * t - 0.5).clamp(0.0, 1.0)) as u8;
        let g = (255.0 * t.powf(0.7)) as u8;
        let b = (255.0 * (0.6 - 0.6 * t).max(0.0) + 60.0 * (1.0 - t)) as u8;
        RGBColor(r, g, b)
    };
    for (i, row) in c.similarity.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (x, y) = (10 + j as i32 * cell, 10 + i as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell, y + cell)],
                colour(v).filled(),
            ))
            .map_err(e)?;
        }
    }
    for (i, l) in c.layers.iter().enumerate() {
        if let Some(j) = (0..nb).max_by(|&x, &y| c.similarity[i][x].total_cmp(&c.similarity[i][y]))
        {
            let _ = l;
            let (x, y) = (10 + j as i32 * cell, 10 + i as i32 * cell);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell - 1, y + cell - 1)],
                RED.stroke_width(1),
            ))
            .map_err(e)?;
        }
    }
    let bar_x = 20 + nb as i32 * cell;
    let bar_h = na as i32 * cell;
    for k in 0..bar_h {
        let v = 1.0 - k as f64 / bar_h.max(1) as f64;
        root.draw(&Rectangle::new(
            [(bar_x, 10 + k), (bar_x + 20, 11 + k)],
            colour(v).filled(),
        ))
        .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}
