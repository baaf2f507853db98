//! Fuzz target: a search-space file (RON bytes) is parsed and validated without panicking, every
//! error points at `FILE:LINE:COL`, and an accepted space decodes its corner configurations.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nas::space::{Config, Distribution, ParamValue, SearchSpace, SpaceError};

const FILE: &str = "fuzz.ron";

/// The configuration taking every active parameter at its lowest (or highest) value.
fn corner(space: &SearchSpace, high: bool) -> Config {
    let mut config = Config::new();
    for p in &space.params {
        if !p.is_active(&config) {
            continue;
        }
        let v = match &p.dist {
            Distribution::Int { low, high: h, .. } => ParamValue::Int(if high { *h } else { *low }),
            Distribution::Float { low, high: h, .. } => {
                ParamValue::Float(if high { *h } else { *low })
            }
            Distribution::Categorical { choices } => {
                ParamValue::Cat(if high { choices.len() - 1 } else { 0 })
            }
        };
        config.insert(p.name.clone(), v);
    }
    config
}

fuzz_target!(|data: &[u8]| {
    match SearchSpace::from_bytes_named(data, "fuzz", FILE) {
        Ok(space) => {
            let _ = space.max_epochs();
            for p in &space.params {
                let _ = p.dist.cardinality();
            }
            for high in [false, true] {
                let config = corner(&space, high);
                // What the validator accepted, the sampler may draw: it must decode.
                assert_eq!(space.validate_config(&config), Ok(()));
                let _ = space.decode(&config).summary(64, 10);
            }
        }
        Err(SpaceError::Invalid {
            file, line, col, ..
        }) => {
            assert_eq!(file, FILE);
            assert!(line >= 1 && col >= 1, "position {line}:{col}");
        }
        Err(e) => panic!("not a positioned error: {e}"),
    }
});
