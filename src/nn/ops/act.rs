//! An activation as its own op, for where no layer before it can apply it (after a residual sum,
//! a pooling or a concatenation): the SIMD `tanh` and logistic of `math`, one buffer each way.

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape};

use super::scratch::{give_f32, take_f32};
use super::{put_grad, take_grad, take_input, try_device_tensor, Activations, Epilogue, OpError};

/// `act(x)`, element by element.
pub fn try_activation<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    act: Epilogue,
) -> Result<Activations<T>, OpError> {
    let (n, f) = *x.shape();
    let mut input = take_input(x)?;
    act.apply(&mut input.data);
    let dev = input.tensor.device().clone();
    let y = try_device_tensor(&dev, &input.data, n, f)?;
    if !T::OWNS_TAPE {
        give_f32(input.data);
        return Ok(y.put_tape(input.tape));
    }
    // The derivative is a function of the output, which is all the backward pass keeps.
    let saved_y = input.data;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    tape.add_backward_op(move |grads| {
        let gy = take_grad!(grads, &y_ghost);
        let mut gz = take_f32(gy.len());
        act.backward(&saved_y, &gy, &mut gz);
        let gx = grads.get_or_alloc_mut(&x_ghost)?;
        gx.iter_mut().zip(&gz).for_each(|(g, d)| *g += d);
        give_f32(gz);
        give_f32(saved_y);
        put_grad!(grads, &y_ghost, gy);
        Ok(())
    });
    Ok(y.put_tape(tape))
}
