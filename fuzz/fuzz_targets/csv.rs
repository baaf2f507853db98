//! Fuzz target: CSV bytes load (as inferred, as classification, as regression) without
//! panicking, and every error names the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nas::data::{parse_csv_bytes, LoadOptions, Task};
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("d/fuzz.csv");
    for task in [None, Some(Task::Classification), Some(Task::Regression)] {
        let opts = LoadOptions {
            task,
            ..LoadOptions::default()
        };
        match parse_csv_bytes(data, path, &opts) {
            Ok(ds) => assert_eq!(ds.features.len(), ds.len() * ds.n_features()),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains("fuzz.csv"), "the error names no file: {msg}");
            }
        }
    }
});
