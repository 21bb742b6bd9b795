//! Debug aid: which summation order reproduces a dumped llama.cpp matmul.
//! Usage: order_probe MODEL TENSOR IN.bin OUT.bin
use suanli_formats::GgufFile;
use suanli_kernels::{DType, QMatrix};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let f = GgufFile::open(&a[1])?;
    let t = f.tensor(&a[2]).unwrap();
    let (cols, rows) = (t.shape[0] as usize, t.shape[1] as usize);
    let m = QMatrix::new(t.dtype.unwrap(), rows, cols, f.tensor_data(t)?)?;
    let rd = |p: &str| -> Vec<f32> {
        std::fs::read(p)
            .unwrap()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    };
    let x = rd(&a[3]);
    let want = rd(&a[4]);
    let n = x.len() / cols;
    let vt = m.dtype.traits().vec_dot_type;
    let xrb = vt.row_bytes(cols).unwrap();
    let mut xq = vec![0u8; xrb * n];
    for (xr, q) in x.chunks_exact(cols).zip(xq.chunks_exact_mut(xrb)) {
        (vt.traits().from_float.unwrap())(xr, q);
    }
    let mut orders: Vec<(&str, suanli_kernels::dtype::VecDot)> =
        vec![("lanes", m.dtype.traits().vec_dot.unwrap())];
    if let Some(f) = suanli_kernels::quants::kquants::tiled_vec_dot(m.dtype) {
        orders.push(("tiled", f));
    }
    if m.dtype == DType::Q4_K {
        orders.push((
            "interleaved",
            suanli_kernels::quants::kquants::vec_dot_q4_k_q8_k_interleaved,
        ));
        orders.push((
            "interleaved_gemm",
            suanli_kernels::quants::kquants::vec_dot_q4_k_q8_k_interleaved_gemm,
        ));
    }
    for (name, f) in orders {
        let mut bad = 0;
        for ti in 0..n {
            for r in 0..rows {
                let v = f(cols, m.row(r), &xq[ti * xrb..(ti + 1) * xrb]);
                if v != want[ti * rows + r] {
                    bad += 1;
                }
            }
        }
        println!("{name}: {bad} of {} differ", n * rows);
    }
    Ok(())
}
