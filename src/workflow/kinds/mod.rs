//! One file per layer kind: what the kind does at each stage of the whole-model road. The
//! int8 stage ([`super::int8_layer::Int8Op`]) lives here for every kind.

mod activation;
mod batch_norm;
mod conv;
mod flatten;
mod float;
mod linear;
mod pooling;
mod stubs;
