//! Rows of a mapped file read out through the file (`pread`) equal the
//! mapping's own bytes, for an embedding table that is only looked up.

use std::sync::Arc;

use suanli_formats::Mapped;
use suanli_kernels::{Blob, DType, QMatrix};

#[test]
fn rows_read_from_the_file_equal_the_mapped_rows() {
    let (rows, cols, off) = (37usize, 64usize, 100usize);
    let rb = DType::Q8_0.row_bytes(cols).expect("row bytes");
    // Q8_0 blocks: an f16 scale (0.01) then 32 bytes of quants.
    let mut bytes = vec![0xabu8; off];
    for i in 0..rows * rb / 34 {
        bytes.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        bytes.extend((0..32).map(|j| ((i * 31 + j * 7) % 251) as u8));
    }
    let path = std::env::temp_dir().join(format!("suanli-mapped-{}.bin", std::process::id()));
    std::fs::write(&path, &bytes).expect("write");
    let map = Mapped::new(std::fs::File::open(&path).expect("open")).expect("map");
    std::fs::remove_file(&path).expect("remove");
    let blob = Blob::new(Arc::new(map), off, rows * rb).expect("in range");
    let mut dst = vec![0u8; 8];
    assert!(
        blob.read_at(rows * rb - 8, &mut dst),
        "the last bytes of the view"
    );
    assert_eq!(dst, bytes[off + rows * rb - 8..off + rows * rb]);
    assert!(!blob.read_at(rows * rb - 7, &mut dst), "past the view");
    let m = QMatrix::new(DType::Q8_0, rows, cols, blob).expect("matrix");
    for r in 0..rows {
        let (mut a, mut b) = (vec![f32::NAN; cols], vec![0f32; cols]);
        assert!(m.lookup_row(r, &mut a), "row {r} read from the file");
        m.dequantize_row(r, &mut b);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "row {r}");
        assert!(a.iter().any(|&v| v != 0.0));
    }
    let mut out = vec![0f32; cols];
    assert!(!m.lookup_row(rows, &mut out), "a row past the table");
    // Memory that is not a file cannot be read out; the caller falls back.
    let owned = QMatrix::new(
        DType::Q8_0,
        rows,
        cols,
        Blob::from_vec(bytes[off..].to_vec()),
    )
    .expect("matrix");
    assert!(!owned.lookup_row(0, &mut out));
}
