//! Integration tests of the forward kernels, one binary: fast kernels against their f64
//! reference twins, numerical edge cases, mathematical properties, and every error.

mod common;
mod errors;
mod half;
mod numerics;
mod properties;
mod reference_match;
