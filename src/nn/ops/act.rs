//! An activation as its own op, for where no layer before it can apply it (after a residual sum,
//! a pooling or a concatenation): the SIMD `tanh` and logistic of `math`, one buffer each way.

use dfdx::shapes::HasShape;
use dfdx::tensor::{Cpu, PutTape, Tape};

use super::{make_output, release_grad, take_grad, take_input};
use super::{Activations, Epilogue, Kept, OpError};

/// `act(x)`, element by element.
pub fn try_activation<T: Tape<f32, Cpu>>(
    x: Activations<T>,
    act: Epilogue,
) -> Result<Activations<T>, OpError> {
    let (n, f) = *x.shape();
    let mut input = take_input(x)?;
    let dev = input.tensor.device().clone();
    if !T::OWNS_TAPE {
        act.apply(&mut input.data);
        return Ok(make_output::<T>(&dev, input.data, n, f)?.put_tape(input.tape));
    }
    // The derivative is a function of the output, of which the backward pass keeps what it
    // reads (`Kept`); the tensor takes the buffer over, the output's gradient is kept in exchange.
    let kept = Kept::apply(Some(act), &mut input.data, false);
    let y = make_output::<T>(&dev, input.data, n, f)?;
    let mut tape = input.tape;
    let x_ghost = input.tensor.ghost();
    let y_ghost = y.ghost();
    tape.add_backward_op(move |grads| {
        let mut gy = take_grad!(grads, &y_ghost);
        kept.grad_in_place(&mut gy);
        let gx = grads.get_or_alloc_mut(&x_ghost)?;
        gx.iter_mut().zip(&gy).for_each(|(g, d)| *g += d);
        kept.give();
        release_grad(gy);
        Ok(())
    });
    Ok(y.put_tape(tape))
}
