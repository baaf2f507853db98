//! What the operating system says about this process's memory and the machine's (Linux `/proc`).
//!
//! Every reading is `None` where `/proc` does not answer (other systems), and callers then
//! simply do without it.

/// A field of a `/proc` status file given in kB, in bytes.
fn kb_field(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// This process's resident memory now, in bytes.
pub fn resident_bytes() -> Option<u64> {
    kb_field("/proc/self/status", "VmRSS:")
}

/// This process's peak resident memory so far, in bytes.
pub fn peak_resident_bytes() -> Option<u64> {
    kb_field("/proc/self/status", "VmHWM:")
}

/// Memory the machine can give to new work without swapping, in bytes.
pub fn available_bytes() -> Option<u64> {
    kb_field("/proc/meminfo", "MemAvailable:")
}

/// Hands the memory that freed allocations left in the allocator's free lists back to the system.
///
/// glibc keeps freed memory in per-thread arenas for reuse; between trials of different shapes
/// it fragments, so resident memory creeps up although nothing is alive (measured: 20 MB after
/// 10 short CNN trials, 34 MB after 200). Called between trials, resident memory then follows
/// what is alive. A no-op where the allocator is not glibc's.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the memory that training frees in the allocator's free lists, for its next step, until
/// [`release_free_memory`] hands it back between trials.
///
/// By default glibc serves every allocation past 128 kB (a threshold it raises as such blocks
/// are freed) with fresh pages from the system and gives the top of its heap back once 256 kB
/// or more lie free there, so a step whose buffers change hands (between the op scratch pool and
/// dfdx's cache) touches new pages, each a page fault and a page of zeros: a 64-channel digits
/// CNN took 65,000 page faults over 20 epochs (155,000 with evaluation chunks of 64 samples),
/// and 26,000 with these settings. Blocks up to 32 MB (glibc's most) now come from the heap, and
/// nothing is trimmed on its own. Set once per process; a no-op where the allocator is not
/// glibc's.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only sets the allocator's own parameters; it has no preconditions.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        });
    }
}

/// Bytes for people: `64 kB`, `512 MB`, `1.42 GB`.
pub fn human_bytes(bytes: u64) -> String {
    const MB: f64 = 1024.0 * 1024.0;
    let mb = bytes as f64 / MB;
    if bytes < 1024 * 1024 {
        format!("{:.0} kB", bytes as f64 / 1024.0)
    } else if mb >= 1024.0 {
        format!("{:.2} GB", mb / 1024.0)
    } else {
        format!("{mb:.0} MB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_plausible_on_linux() {
        if std::path::Path::new("/proc/self/status").exists() {
            let rss = resident_bytes().expect("VmRSS");
            let peak = peak_resident_bytes().expect("VmHWM");
            assert!(rss > 0 && peak >= rss);
            assert!(available_bytes().expect("MemAvailable") > 0);
        }
    }

    /// Minor page faults of this thread so far.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn thread_faults() -> i64 {
        // SAFETY: getrusage writes one plain struct, zeroed here first.
        unsafe {
            let mut u: libc::rusage = std::mem::zeroed();
            assert_eq!(libc::getrusage(libc::RUSAGE_THREAD, &mut u), 0);
            u.ru_minflt
        }
    }

    /// A training step's pattern: several megabyte buffers allocated, written, and all freed,
    /// again and again. Once warm, the blocks come back from the free lists, not as new pages
    /// (with glibc's defaults each round trimmed the heap and faulted its pages in again).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_buffers_come_back_without_page_faults() {
        keep_freed_memory();
        let round = |r: usize| {
            let bufs: Vec<Vec<f32>> = (0..6)
                .map(|i| vec![r as f32; 400_000 + ((i + r) % 6) * 50_000])
                .collect();
            bufs.iter().map(|b| b[b.len() - 1]).sum::<f32>()
        };
        for r in 0..5 {
            round(r);
        }
        let before = thread_faults();
        for r in 0..40 {
            round(r);
        }
        let faults = thread_faults() - before;
        // Every page new would be about 94,000 faults (40 rounds of 9.6 MB); glibc's defaults gave
        // 121,800.
        assert!(faults < 500, "{faults} page faults");
    }

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(64 * 1024), "64 kB");
        assert_eq!(human_bytes(512 * 1024 * 1024), "512 MB");
        assert_eq!(human_bytes(3 * 1024 * 1024 * 1024 / 2), "1.50 GB");
    }
}
