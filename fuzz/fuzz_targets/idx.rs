//! Fuzz target: a pair of IDX files (features, labels/targets) loads without panicking or
//! allocating more than the input holds, and every error names one of the files.
//!
//! Input layout: a big-endian u32 `n`, then `n` bytes of the features file (fewer when the input
//! is shorter), then the labels/targets file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nas::data::{parse_idx_bytes, LoadOptions, Task};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let cut = (u32::from_be_bytes(*len) as usize).min(rest.len());
    let (features, targets) = rest.split_at(cut);
    let (fp, tp) = (Path::new("d/features.idx"), Path::new("d/targets.idx"));
    for task in [None, Some(Task::Classification), Some(Task::Regression)] {
        let opts = LoadOptions {
            task,
            ..LoadOptions::default()
        };
        if let Err(e) = parse_idx_bytes(features, fp, targets, tp, &opts) {
            let msg = e.to_string();
            assert!(msg.contains(".idx"), "the error names no file: {msg}");
        }
    }
});
