//! Trainable parameters whose values live in our own memory: the ops read them without a copy,
//! their backward passes share them, and the optimiser updates them in place; a dfdx tensor of
//! the same shape only names the parameter's gradient in a `Gradients` store.
//!
//! dfdx lends no borrow of a tensor's buffer, so reading a parameter held in a tensor costs a
//! copy on every forward pass (a 784x256 weight: 800 kB a step) and updating it goes through
//! dfdx's own optimiser kernels.

use std::sync::Arc;

use dfdx::shapes::{HasShape, Shape};
use dfdx::tensor::{Cpu, Tensor};

use super::param_values;

/// A parameter as the ops read it: the tensor its gradient is stored under (which also gives its
/// shape), and its values.
pub trait ParamRef<S: Shape> {
    /// The tensor the gradient is stored under; its own values are not read.
    fn key(&self) -> &Tensor<S, f32, Cpu>;
    /// The values, shared where the parameter holds them ([`Param`]), else copied out.
    fn values(&self) -> Arc<Vec<f32>>;
}

/// A plain tensor is its own key and holds its own values (the ops' tests pass tensors).
impl<S: Shape> ParamRef<S> for Tensor<S, f32, Cpu> {
    fn key(&self) -> &Tensor<S, f32, Cpu> {
        self
    }

    fn values(&self) -> Arc<Vec<f32>> {
        Arc::new(param_values(self))
    }
}

/// A trainable parameter: its values, and a tensor of its shape that names its gradient.
///
/// The key tensor keeps the values it was made from and is never written again: only
/// [`Param::values`] and [`Param::values_mut`] see the parameter as it trains.
#[derive(Clone, Debug)]
pub struct Param<S: Shape> {
    key: Tensor<S, f32, Cpu>,
    values: Arc<Vec<f32>>,
}

impl<S: Shape> Param<S> {
    /// A parameter with the values of `t`, which becomes its key.
    pub fn new(t: Tensor<S, f32, Cpu>) -> Self {
        let values = Arc::new(param_values(&t));
        Param { key: t, values }
    }

    /// The tensor its gradient is stored under.
    pub fn key(&self) -> &Tensor<S, f32, Cpu> {
        &self.key
    }

    pub fn shape(&self) -> &S {
        self.key.shape()
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values to change in place. A backward pass still holding them (one that was never
    /// run) makes this a copy, so what it reads stays as it was.
    pub fn values_mut(&mut self) -> &mut [f32] {
        Arc::make_mut(&mut self.values).as_mut_slice()
    }
}

impl<S: Shape> ParamRef<S> for Param<S> {
    fn key(&self) -> &Tensor<S, f32, Cpu> {
        &self.key
    }

    fn values(&self) -> Arc<Vec<f32>> {
        Arc::clone(&self.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dfdx::tensor::TensorFromVec;

    /// Values shared with a pending backward pass are copied before they change; once that pass
    /// is gone they change in place.
    #[test]
    fn values_change_without_touching_a_reader() {
        let dev = Cpu::default();
        let mut p = Param::new(dev.tensor_from_vec(vec![1.0, 2.0], (2,)));
        let reader = ParamRef::values(&p);
        p.values_mut()[0] = 5.0;
        assert_eq!(*reader, vec![1.0, 2.0]);
        assert_eq!(p.values(), &[5.0, 2.0]);
        drop(reader);
        let before = p.values().as_ptr();
        p.values_mut()[1] = 7.0;
        assert_eq!(p.values().as_ptr(), before, "changed in place");
        assert_eq!(
            p.key().as_vec(),
            vec![1.0, 2.0],
            "the key keeps its first values"
        );
    }
}
