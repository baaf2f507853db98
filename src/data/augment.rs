//! Random image augmentation applied per sample to a training batch: pad-and-crop shifts, horizontal flips, Gaussian noise.

use rand::Rng;
use rand_distr::StandardNormal;

use super::dataset::InputShape;
use super::error::DataError;

/// Augmentation settings; the default does nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Largest random shift in pixels, in each direction, with zero padding (pad-and-crop).
    pub shift: usize,
    /// Mirror left-right with probability 1/2.
    pub hflip: bool,
    /// Standard deviation of added Gaussian noise (0 = none).
    pub noise_std: f32,
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && !self.hflip && self.noise_std == 0.0
    }

    /// Rejects a negative or non-finite noise level.
    pub fn validate(&self) -> Result<(), DataError> {
        if !self.noise_std.is_finite() || self.noise_std < 0.0 {
            return Err(DataError::BadAugment {
                reason: format!("noise_std must be finite and >= 0, got {}", self.noise_std),
            });
        }
        Ok(())
    }

    /// Augments each sample of `batch` (consecutive CHW samples of `shape`) independently.
    pub fn apply_batch(&self, batch: &mut [f32], shape: InputShape, rng: &mut impl Rng) {
        let len = shape.len();
        if self.is_identity() || len == 0 {
            return;
        }
        let mut scratch = vec![0f32; len];
        for x in batch.chunks_exact_mut(len) {
            self.apply_sample(x, shape, &mut scratch, rng);
        }
    }

    fn apply_sample(
        &self,
        x: &mut [f32],
        shape: InputShape,
        scratch: &mut [f32],
        rng: &mut impl Rng,
    ) {
        let (h, w) = (shape.height as isize, shape.width as isize);
        // Shifts larger than the image would only blank it.
        let max_dy = (self.shift as isize).min(h - 1).max(0);
        let max_dx = (self.shift as isize).min(w - 1).max(0);
        let dy = if max_dy > 0 {
            rng.gen_range(-max_dy..=max_dy)
        } else {
            0
        };
        let dx = if max_dx > 0 {
            rng.gen_range(-max_dx..=max_dx)
        } else {
            0
        };
        let flip = self.hflip && rng.gen_bool(0.5);
        if dy != 0 || dx != 0 || flip {
            for c in 0..shape.channels {
                let plane = c * shape.height * shape.width;
                for y in 0..h {
                    for xx in 0..w {
                        // Output pixel (y, xx) reads source (y - dy, sx - dx), sx being the mirrored column.
                        let sx = if flip { w - 1 - xx } else { xx };
                        let (sy, sx) = (y - dy, sx - dx);
                        let out = plane + (y * w + xx) as usize;
                        scratch[out] = if (0..h).contains(&sy) && (0..w).contains(&sx) {
                            x[plane + (sy * w + sx) as usize]
                        } else {
                            0.0
                        };
                    }
                }
            }
            x.copy_from_slice(scratch);
        }
        if self.noise_std > 0.0 && self.noise_std.is_finite() {
            for v in x.iter_mut() {
                let z: f32 = rng.sample(StandardNormal);
                *v += self.noise_std * z;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_flip_mirrors_each_row() {
        let aug = Augment {
            hflip: true,
            ..Augment::default()
        };
        let shape = InputShape::new(1, 2, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let original = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut seen_flip = false;
        for _ in 0..20 {
            let mut x = original;
            aug.apply_batch(&mut x, shape, &mut rng);
            if x != original {
                assert_eq!(x, [3.0, 2.0, 1.0, 6.0, 5.0, 4.0]);
                seen_flip = true;
            }
        }
        assert!(seen_flip);
    }

    #[test]
    fn a_shift_moves_pixels_and_pads_with_zeros() {
        let aug = Augment {
            shift: 1,
            ..Augment::default()
        };
        let shape = InputShape::new(1, 3, 3);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..20 {
            let mut x = [0.0; 9];
            x[4] = 1.0;
            aug.apply_batch(&mut x, shape, &mut rng);
            // The single bright centre pixel lands somewhere, never lost for a 1-pixel shift.
            assert_eq!(x.iter().sum::<f32>(), 1.0);
        }
    }
}
