//! Weight memory in transparent huge pages.
//!
//! Decoding streams every weight once a token, so the rate at which a core
//! can walk memory bounds it. With 4 KiB pages that walk takes a TLB miss
//! (and the hardware prefetchers a restart) every 4 KiB; with 2 MiB pages
//! it takes one every 2 MiB. On this project's Zen 4 a plain read loop goes
//! from 28.8 to 33 GB/s on one core, and from ~55 to ~63 GB/s on two in
//! the VM's fast-bandwidth state, when its buffer is advised huge.
//!
//! Linux backs anonymous memory with huge pages only where the process
//! asks (`transparent_hugepage=madvise`, the common default), and only for
//! 2 MiB-aligned ranges a mapping covers whole. So weights that are
//! repacked at load go into [`HugeBuf`]s: ranges bump-allocated from
//! 2 MiB-aligned mappings of at least 64 MiB advised `MADV_HUGEPAGE`, one
//! after another, so that many small matrices share huge pages too. Pages
//! become resident only as they are written; what a mapping holds beyond
//! its last range costs at most the rest of one huge page. A mapping is
//! unmapped when the last range in it is dropped.
//!
//! Elsewhere (other systems, or a failed mapping) there is no `HugeBuf`
//! and callers keep their ordinary buffers.

use std::sync::{Arc, Mutex, Weak};

use crate::matmul::{Blob, Storage};

/// The huge page size these mappings are aligned to.
const HUGE: usize = 2 << 20;
/// The smallest mapping made; a larger range gets a mapping of its own
/// size (rounded up to huge pages).
const CHUNK: usize = 64 << 20;
/// Every range starts on a cache line.
const ALIGN: usize = 64;

/// One anonymous mapping: `len` bytes at `base`, 2 MiB-aligned.
struct Chunk {
    base: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: a `Chunk` only owns its mapping; every access goes through the
// disjoint `HugeBuf` ranges handed out below.
unsafe impl Send for Chunk {}
// SAFETY: as above; `Chunk` itself never reads or writes the memory.
unsafe impl Sync for Chunk {}

impl Chunk {
    /// A 2 MiB-aligned mapping of `len` bytes (a multiple of 2 MiB)
    /// advised huge, or `None` when the system gives none.
    #[cfg(target_os = "linux")]
    fn map(len: usize) -> Option<Chunk> {
        let over = len.checked_add(HUGE)?;
        // SAFETY: an anonymous private mapping at an address of the
        // kernel's choosing touches no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                over,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return None;
        }
        let addr = p as usize;
        let head = addr.next_multiple_of(HUGE) - addr;
        let tail = over - head - len;
        // SAFETY: the head and tail trimmed off lie inside the mapping just
        // made, and nothing refers to them; the range kept is `len` bytes
        // from a 2 MiB boundary. Failures only leave a few pages mapped.
        unsafe {
            if head > 0 {
                libc::munmap(p, head);
            }
            let base = p.cast::<u8>().add(head);
            if tail > 0 {
                libc::munmap(base.add(len).cast(), tail);
            }
            // Advice only: without THP the pages are ordinary ones.
            libc::madvise(base.cast(), len, libc::MADV_HUGEPAGE);
            Some(Chunk {
                base: std::ptr::NonNull::new(base)?,
                len,
            })
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn map(_len: usize) -> Option<Chunk> {
        None
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        #[cfg(target_os = "linux")]
        // SAFETY: the mapping was made by `Chunk::map` with this base and
        // length, and no `HugeBuf` into it is left (each holds the `Arc`).
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// The mapping ranges are cut from, and how much of it is taken. Held
/// weakly: once every range in it is dropped (a model let go), the mapping
/// goes, and the next range starts a new one.
static CURSOR: Mutex<Option<(Weak<Chunk>, usize)>> = Mutex::new(None);

/// `len` bytes of huge-page-advised memory (zeroed), its own until
/// dropped.
pub(crate) struct HugeBuf {
    chunk: Arc<Chunk>,
    off: usize,
    len: usize,
}

impl HugeBuf {
    /// A new range of `len` bytes, or `None` where huge-page memory cannot
    /// be had (callers then use an ordinary buffer).
    pub(crate) fn new(len: usize) -> Option<HugeBuf> {
        if len == 0 {
            return None;
        }
        let mut cursor = CURSOR.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((chunk, used)) = cursor
            .as_ref()
            .and_then(|(w, used)| Some((w.upgrade()?, *used)))
        {
            let off = used.next_multiple_of(ALIGN);
            if off.checked_add(len).is_some_and(|end| end <= chunk.len) {
                *cursor = Some((Arc::downgrade(&chunk), off + len));
                return Some(HugeBuf { chunk, off, len });
            }
        }
        let size = len.checked_next_multiple_of(HUGE)?.max(CHUNK);
        let chunk = Arc::new(Chunk::map(size)?);
        *cursor = Some((Arc::downgrade(&chunk), len));
        Some(HugeBuf { chunk, off: 0, len })
    }

    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `off..off + len` lies in the chunk's mapping, which the
        // `Arc` keeps alive; no other `HugeBuf` overlaps it, and `&mut self`
        // makes this the only reference into it.
        unsafe { std::slice::from_raw_parts_mut(self.chunk.base.as_ptr().add(self.off), self.len) }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: as in `as_mut_slice`; `&self` allows only shared reads.
        unsafe { std::slice::from_raw_parts(self.chunk.base.as_ptr().add(self.off), self.len) }
    }
}

impl Storage for HugeBuf {
    fn bytes(&self) -> &[u8] {
        self.as_slice()
    }
}

/// `pack(rows' bytes, rows)` over `data` (`rows` rows) a few MB of whole
/// `group`s of rows at a time, each source range let go once packed: the
/// new layout costs little more resident memory than the matrix did
/// (a mapped file drops the pages; the output's pages are touched only as
/// they are written). The result is in huge-page memory where it can be.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn repack_streaming(
    data: &Blob,
    rows: usize,
    group: usize,
    pack: impl Fn(&[u8], usize) -> Vec<u8>,
) -> Blob {
    const PIECE: usize = 4 << 20;
    let rb = data.len() / rows.max(1);
    let step = (PIECE / rb.max(1) / group).max(1) * group;
    // Into a `HugeBuf` where there is one and the layout's size holds,
    // else into a vector.
    let mut huge: Option<(HugeBuf, usize)> = None;
    let mut out = Vec::new();
    for r0 in (0..rows).step_by(step) {
        let r1 = (r0 + step).min(rows);
        let src = &data.bytes()[r0 * rb..r1 * rb];
        let packed = pack(src, r1 - r0);
        if r0 == 0 {
            // The layout's size, from the first chunk's (whole groups).
            let size = packed.len() / (r1 - r0) * rows;
            match HugeBuf::new(size) {
                Some(buf) => huge = Some((buf, 0)),
                None => out.reserve_exact(size),
            }
        }
        let spill = match &mut huge {
            Some((buf, at)) => match buf.as_mut_slice().get_mut(*at..*at + packed.len()) {
                Some(dst) => {
                    dst.copy_from_slice(&packed);
                    *at += packed.len();
                    None
                }
                None => Some(buf.as_slice()[..*at].to_vec()),
            },
            None => None,
        };
        if let Some(v) = spill {
            // Not the size the first chunk promised: go on in a vector.
            huge = None;
            out = v;
        }
        if huge.is_none() {
            out.extend_from_slice(&packed);
        }
        data.release_range(r0 * rb, src.len());
    }
    match huge {
        Some((buf, at)) if at == buf.as_slice().len() => Blob::whole(Arc::new(buf)),
        Some((buf, at)) => Blob::from_vec(buf.as_slice()[..at].to_vec()),
        None => Blob::from_vec(out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn no_huge_memory_elsewhere() {
        assert!(HugeBuf::new(4096).is_none());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn ranges_are_disjoint_aligned_and_hold_their_bytes() {
        let sizes = [1usize, 100, 4096, 3 << 20, 70 << 20, 5];
        let mut bufs: Vec<HugeBuf> = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let Some(mut b) = HugeBuf::new(n) else {
                panic!("no anonymous mapping of {n} bytes");
            };
            assert_eq!(b.as_slice().len(), n);
            assert!(
                b.as_slice().iter().all(|&x| x == 0),
                "fresh memory is zeroed"
            );
            assert_eq!(b.as_slice().as_ptr() as usize % ALIGN, 0);
            b.as_mut_slice().fill(i as u8 + 1);
            bufs.push(b);
        }
        for (i, b) in bufs.iter().enumerate() {
            assert!(
                b.as_slice().iter().all(|&x| x == i as u8 + 1),
                "range {i} kept"
            );
        }
        let mut spans: Vec<(usize, usize)> = bufs
            .iter()
            .map(|b| (b.as_slice().as_ptr() as usize, b.len))
            .collect();
        spans.sort();
        for w in spans.windows(2) {
            assert!(w[0].0 + w[0].1 <= w[1].0, "ranges overlap: {w:?}");
        }
        // The large range got a mapping of its own, from a huge page.
        let big = bufs
            .iter()
            .find(|b| b.len == 70 << 20)
            .map(|b| b.as_slice().as_ptr());
        assert_eq!(big.map(|p| p as usize % HUGE), Some(0));
    }

    #[test]
    fn empty_range_is_none() {
        assert!(HugeBuf::new(0).is_none());
    }

    /// A stand-in layout: each row's bytes reversed, with `extra` bytes
    /// more in pieces from row `from` on (a layout that breaks the size
    /// the first piece promised).
    fn repacked(src: &[u8], rows: usize, r0: usize, from: usize, extra: usize) -> Vec<u8> {
        let rb = src.len() / rows;
        let mut v: Vec<u8> = src
            .chunks(rb)
            .flat_map(|r| r.iter().rev().copied())
            .collect();
        if r0 >= from {
            v.resize(v.len() + extra, 0xee);
        }
        v
    }

    #[test]
    fn repack_streaming_writes_every_piece_in_order() {
        // 40 rows of 300 KiB: pieces of 13 rows (the 4 MiB step), so three
        // whole pieces and a short one.
        let (rows, rb) = (40usize, 300usize << 10);
        let src: Vec<u8> = (0..rows * rb).map(|i| (i * 7 / 3) as u8).collect();
        let data = Blob::from_vec(src.clone());
        let want = repacked(&src, rows, 0, usize::MAX, 0);
        let step = (4usize << 20) / rb;
        let at = std::cell::Cell::new(0);
        let pack = |s: &[u8], n: usize| {
            let r0 = at.replace(at.get() + n);
            repacked(s, n, r0, usize::MAX, 0)
        };
        let blob = repack_streaming(&data, rows, 1, pack);
        assert_eq!(blob.bytes(), &want[..]);
        // A layout that grows after the first piece, or shrinks: still
        // every byte, in order (the huge range is left for a vector).
        for (from, extra) in [(step, 5usize), (2 * step, 1 << 20)] {
            let mut want = Vec::new();
            for r0 in (0..rows).step_by(step) {
                let r1 = (r0 + step).min(rows);
                want.extend(repacked(&src[r0 * rb..r1 * rb], r1 - r0, r0, from, extra));
            }
            at.set(0);
            let pack = |s: &[u8], n: usize| {
                let r0 = at.replace(at.get() + n);
                repacked(s, n, r0, from, extra)
            };
            let blob = repack_streaming(&data, rows, 1, pack);
            assert_eq!(blob.len(), want.len());
            assert!(blob.bytes() == &want[..], "grown layout from row {from}");
        }
        at.set(0);
        let short = |s: &[u8], n: usize| {
            let r0 = at.replace(at.get() + n);
            let drop = if r0 >= step { n } else { 0 };
            s[..s.len() - drop].to_vec()
        };
        let blob = repack_streaming(&data, rows, 1, short);
        assert_eq!(blob.len(), rows * rb - (rows - step));
        assert_eq!(blob.bytes()[..step * rb], src[..step * rb]);
    }
}
