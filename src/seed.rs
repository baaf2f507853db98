//! Seeds derived from a study's one seed, so every trial and purpose gets its own stream.

/// Mixes the study seed with a salt (a trial number, a purpose) into an independent seed.
pub fn derive_seed(seed: u64, salt: u64) -> u64 {
    // SplitMix64 finaliser: consecutive salts give unrelated seeds.
    let mut z = seed
        ^ salt
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
