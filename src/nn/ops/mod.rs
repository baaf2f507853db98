//! TEMPORARY STUB until the ops branch lands.
#![allow(unused_variables)]
use dfdx::prelude::*;
type M<T> = Tensor<(usize, usize), f32, Cpu, T>;
type V = Tensor<(usize,), f32, Cpu>;
#[derive(Clone, Copy, Debug)]
pub struct Conv2dGeom { pub in_c: usize, pub in_h: usize, pub in_w: usize, pub out_c: usize, pub kh: usize, pub kw: usize, pub stride_h: usize, pub stride_w: usize, pub pad_h: usize, pub pad_w: usize, pub groups: usize }
impl Conv2dGeom { pub fn out_h(&self) -> usize { (self.in_h + 2 * self.pad_h - self.kh) / self.stride_h + 1 } pub fn out_w(&self) -> usize { (self.in_w + 2 * self.pad_w - self.kw) / self.stride_w + 1 } pub fn check(&self) -> Result<(), String> { Ok(()) } }
#[derive(Clone, Copy, Debug)]
pub enum PoolKind { Max, Avg }
#[derive(Clone, Copy, Debug)]
pub struct Pool2dGeom { pub c: usize, pub h: usize, pub w: usize, pub kh: usize, pub kw: usize, pub stride_h: usize, pub stride_w: usize, pub pad_h: usize, pub pad_w: usize }
impl Pool2dGeom { pub fn out_h(&self) -> usize { (self.h + 2 * self.pad_h - self.kh) / self.stride_h + 1 } pub fn out_w(&self) -> usize { (self.w + 2 * self.pad_w - self.kw) / self.stride_w + 1 } pub fn check(&self) -> Result<(), String> { Ok(()) } }
#[derive(Clone, Debug)]
pub struct BatchNormState { pub running_mean: Vec<f32>, pub running_var: Vec<f32>, pub momentum: f32, pub eps: f32 }
impl BatchNormState { pub fn new(c: usize) -> Self { Self { running_mean: vec![0.0; c], running_var: vec![1.0; c], momentum: 0.1, eps: 1e-5 } } }
pub fn conv2d<T: Tape<f32, Cpu>>(x: M<T>, w: &M<NoneTape>, b: Option<&V>, g: &Conv2dGeom) -> M<T> { todo!() }
pub fn pool2d<T: Tape<f32, Cpu>>(x: M<T>, k: PoolKind, g: &Pool2dGeom) -> M<T> { todo!() }
pub fn global_avg_pool<T: Tape<f32, Cpu>>(x: M<T>, c: usize, hw: usize) -> M<T> { todo!() }
pub fn batch_norm<T: Tape<f32, Cpu>>(x: M<T>, g: &V, b: &V, c: usize, hw: usize, s: &mut BatchNormState, training: bool) -> M<T> { todo!() }
