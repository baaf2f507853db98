//! The sum of two activations of one shape (a residual block's body and shortcut) as one op,
//! whose backward pass adds the output's gradient to both inputs' in one vectorised pass each
//! (dfdx's generic binary kernels index every value through its strides: 3.3% of a 64-channel
//! digits ResNet's step, forward and backward).

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape, Tensor};

use super::scratch::{give_f32, take_f32};
use super::{make_output, release_grad, take_grad, take_input, Activations, OpError};

/// `a + b`, element by element; the tape of `a` carries on.
pub fn try_add<T: Tape<f32, Cpu>>(
    a: Activations<T>,
    b: &Tensor<(usize, usize), f32, Cpu>,
) -> Result<Activations<T>, OpError> {
    let (n, f) = *a.shape();
    if *b.shape() != (n, f) {
        return Err(OpError::InputWidth {
            got: b.shape().0 * b.shape().1,
            expected: n * f,
            what: format!("a sum with {n} x {f} values"),
        });
    }
    let mut input = take_input(a)?;
    let mut other = take_f32(n * f);
    b.copy_into(&mut other);
    input.data.iter_mut().zip(&other).for_each(|(x, y)| *x += y);
    give_f32(other);
    let dev = input.tensor.device().clone();
    let y = make_output::<T>(&dev, input.data, n, f)?;
    let mut tape = input.tape;
    let a_ghost = input.tensor.ghost();
    let b_ghost = b.ghost();
    let y_ghost = y.ghost();
    tape.add_backward_op(move |grads| {
        let gy = take_grad!(grads, &y_ghost);
        for g in [&a_ghost, &b_ghost] {
            let gx = grads.get_or_alloc_mut(g)?;
            gx.iter_mut().zip(&gy).for_each(|(g, d)| *g += d);
        }
        release_grad(gy);
        Ok(())
    });
    Ok(y.put_tape(tape))
}
