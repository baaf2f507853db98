//! Random search: every active parameter drawn independently from its distribution.

use super::{sample_uniform, sample_with, Observation, Sampler};
use crate::space::{Config, SearchSpace};
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSampler;

impl Sampler for RandomSampler {
    fn name(&self) -> &'static str {
        "random"
    }

    fn suggest(&mut self, space: &SearchSpace, _: &[Observation], rng: &mut ChaCha8Rng) -> Config {
        sample_with(space, |i, _| sample_uniform(&space.params[i].dist, rng))
    }
}
