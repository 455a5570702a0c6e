//! `torch.ao.nn.intrinsic`: fused modules. [`qat`] holds the fused QAT modules.

pub mod qat;
