//! Early stopping on validation loss: stop after `patience` epochs without improvement.

/// What the last epoch meant for early stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new best validation loss: keep these weights.
    Improved,
    /// No improvement, but patience is not used up.
    Wait,
    /// Patience is used up: stop (the best epoch is the one to retrain for).
    Stop,
}

#[derive(Clone, Debug)]
pub struct EarlyStopping {
    patience: usize,
    /// Relative improvement needed to count as better (guards against float noise).
    min_delta: f64,
    best: f64,
    best_epoch: usize,
    bad_epochs: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize) -> Self {
        EarlyStopping {
            patience: patience.max(1),
            min_delta: 1e-4,
            best: f64::INFINITY,
            best_epoch: 0,
            bad_epochs: 0,
        }
    }

    /// Records the validation loss of `epoch` (counted from 1).
    pub fn update(&mut self, epoch: usize, loss: f64) -> Verdict {
        if loss < self.best - self.min_delta * self.best.abs().min(1e12) {
            self.best = loss;
            self.best_epoch = epoch;
            self.bad_epochs = 0;
            Verdict::Improved
        } else {
            self.bad_epochs += 1;
            if self.bad_epochs >= self.patience {
                Verdict::Stop
            } else {
                Verdict::Wait
            }
        }
    }

    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }

    pub fn best_loss(&self) -> f64 {
        self.best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stop_when_no_improvement_for_patience_epochs() {
        let mut es = EarlyStopping::new(3);
        let losses = [1.0, 0.8, 0.7, 0.71, 0.72, 0.70, 0.9];
        let verdicts: Vec<Verdict> = losses
            .iter()
            .enumerate()
            .map(|(i, l)| es.update(i + 1, *l))
            .collect();
        use Verdict::*;
        assert_eq!(
            verdicts[..6],
            [Improved, Improved, Improved, Wait, Wait, Stop]
        );
        assert_eq!(es.best_epoch(), 3);
        assert!((es.best_loss() - 0.7).abs() < 1e-12);
    }

    #[test]
    fn improvement_resets_patience() {
        let mut es = EarlyStopping::new(2);
        assert_eq!(es.update(1, 1.0), Verdict::Improved);
        assert_eq!(es.update(2, 1.1), Verdict::Wait);
        assert_eq!(es.update(3, 0.5), Verdict::Improved);
        assert_eq!(es.update(4, 0.6), Verdict::Wait);
        assert_eq!(es.update(5, 0.6), Verdict::Stop);
    }
}
