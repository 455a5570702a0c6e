//! Batch normalization with PyTorch's semantics, which burn's `BatchNorm` does not have: the
//! running variance is updated with the *unbiased* batch variance, `num_batches_tracked` counts
//! batches, `momentum: None` means a cumulative average, and the running statistics are updated
//! in f64, as PyTorch's CPU kernel does, before rounding to the parameter dtype.

use burn::module::{Module, Param};
use burn::tensor::{DType, Tensor};

use super::qat::{read_param, write_param};
use super::tensor_util::{channel_shape, host_tensor, host_values};
use crate::error::{QatError, Result};
use crate::ops::{BnApplyParams, BnPreValues, bn_batch_stats, bn_train_apply, lane_sum};
use crate::parallel::collective;
use crate::state_dict::{StateDict, StateReader, TensorValue, Values, join};

/// `BatchNorm{1,2,3}d(num_features, eps, momentum, affine=True, track_running_stats=True)`.
#[derive(Module, Debug)]
pub struct BatchNorm {
    /// gamma.
    pub weight: Param<Tensor<1>>,
    /// beta.
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    running_mean: Vec<f64>,
    #[module(skip)]
    running_var: Vec<f64>,
    #[module(skip)]
    num_batches_tracked: i64,
    #[module(skip)]
    pub eps: f64,
    /// `None`: the cumulative moving average (`1 / num_batches_tracked`).
    #[module(skip)]
    pub momentum: Option<f64>,
    /// Batch statistics (and running-statistic updates) when true; running statistics when false.
    #[module(skip)]
    pub training: bool,
    /// PyTorch's `freeze_bn`: running statistics until unfrozen, whatever the module's mode.
    #[module(skip)]
    frozen: bool,
    /// Round running statistics to f32 after each update, as an f32 PyTorch module stores them.
    #[module(skip)]
    f32_state: bool,
    /// Training forward on the fused batch-norm ops (`crate::ops::bn_train_apply`) rather than
    /// composed stock ops (the reference path, kept for testing).
    #[module(skip)]
    fused: bool,
}

impl BatchNorm {
    /// gamma = 1, beta = 0, running mean 0, running variance 1, in training mode.
    pub fn new(num_features: usize, eps: f64, momentum: Option<f64>, device: &burn::tensor::Device) -> Result<Self> {
        if num_features == 0 {
            return Err(QatError::invalid("num_features", "BatchNorm num_features must be positive"));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return Err(QatError::invalid("eps", format!("BatchNorm eps {eps} must be finite and positive")));
        }
        if let Some(m) = momentum
            && !(0.0..=1.0).contains(&m)
        {
            return Err(QatError::invalid(
                "momentum",
                format!("BatchNorm momentum {m} must be in [0, 1] (or None for a cumulative average)"),
            ));
        }
        Ok(Self {
            weight: Param::from_tensor(Tensor::ones([num_features], device)),
            bias: Param::from_tensor(Tensor::zeros([num_features], device)),
            running_mean: vec![0.0; num_features],
            running_var: vec![1.0; num_features],
            num_batches_tracked: 0,
            eps,
            momentum,
            training: true,
            frozen: false,
            f32_state: true,
            fused: true,
        })
    }

    /// PyTorch `freeze_bn_stats`: normalize with the running statistics and stop updating them
    /// (gamma and beta keep training), until [`unfreeze_stats`](Self::unfreeze_stats).
    pub fn freeze_stats(&mut self) {
        self.frozen = true;
        self.training = false;
    }

    /// PyTorch `update_bn_stats`: batch statistics again, even in eval mode.
    pub fn unfreeze_stats(&mut self) {
        self.frozen = false;
        self.training = true;
    }

    /// Runs the training forward on the fused ops (the default) or, when `false`, on the
    /// composed reference implementation. Both compute PyTorch's batch norm; they differ only
    /// in summation order (the fused ops accumulate statistics in f64, as PyTorch's CPU kernel).
    pub fn use_fused_kernels(&mut self, on: bool) {
        self.fused = on;
    }

    pub fn uses_fused_kernels(&self) -> bool {
        self.fused
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Follows a module's train/eval mode unless frozen (PyTorch's `train()` override).
    pub fn follow_mode(&mut self, training: bool) {
        if !self.frozen {
            self.training = training;
        }
    }

    pub fn num_features(&self) -> usize {
        self.running_mean.len()
    }

    pub fn running_mean(&self) -> &[f64] {
        &self.running_mean
    }

    pub fn running_var(&self) -> &[f64] {
        &self.running_var
    }

    pub fn num_batches_tracked(&self) -> i64 {
        self.num_batches_tracked
    }

    /// Sets the running statistics (values are rounded to the state dtype).
    pub fn set_running_stats(&mut self, mean: Vec<f64>, var: Vec<f64>) -> Result<()> {
        let c = self.num_features();
        if mean.len() != c || var.len() != c {
            return Err(QatError::shape(
                "BatchNorm running stats",
                format!("{c} values each"),
                format!("{} and {}", mean.len(), var.len()),
            ));
        }
        if var.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || mean.iter().any(|m| !m.is_finite()) {
            return Err(QatError::NonFinite { context: "BatchNorm".into(), what: "a running statistic (or a negative variance)".into() });
        }
        self.running_mean = mean.into_iter().map(|v| self.round(v)).collect();
        self.running_var = var.into_iter().map(|v| self.round(v)).collect();
        Ok(())
    }

    /// PyTorch `reset_running_stats`: mean 0, variance 1, count 0.
    pub fn reset_running_stats(&mut self) {
        let c = self.num_features();
        self.running_mean = vec![0.0; c];
        self.running_var = vec![1.0; c];
        self.num_batches_tracked = 0;
    }

    fn round(&self, v: f64) -> f64 {
        if self.f32_state { v as f32 as f64 } else { v }
    }

    /// `sqrt(running_var + eps)` per channel, in the parameter dtype as PyTorch computes it.
    pub(crate) fn running_std(&self) -> Vec<f64> {
        self.running_var
            .iter()
            .map(|&v| if self.f32_state { (v as f32 + self.eps as f32).sqrt() as f64 } else { (v + self.eps).sqrt() })
            .collect()
    }

    /// Normalizes `[N, C, ...]` input: with batch statistics (updating the running ones) when
    /// training, else with the running statistics.
    pub fn forward<const D: usize>(&mut self, x: Tensor<D>, layer: &str) -> Result<Tensor<D>> {
        let dims = x.dims();
        let c = self.num_features();
        if D < 2 || dims[1] != c {
            return Err(QatError::shape(layer, format!("input [N, {c}, ...]"), format!("{dims:?}")));
        }
        if !self.training {
            return Ok(self.forward_eval(x));
        }
        if self.fused_train_applies(&x, &[]) {
            return self.forward_train_fused(x, None, None, false, layer);
        }
        self.forward_train(x, layer)
    }

    /// Whether [`forward_train_fused`](Self::forward_train_fused) takes `x` (and the
    /// pre-transform tensors `extra`): training with the fused ops on, f32 or f64 data on the
    /// Flex CPU backend (the fused ops are CPU kernels), every tensor in one dtype, outside
    /// data-parallel training (SyncBN runs on the composed ops).
    pub(crate) fn fused_train_applies<const D: usize>(&self, x: &Tensor<D>, extra: &[&Tensor<1>]) -> bool {
        let dtype = x.dtype();
        self.training
            && self.fused
            && crate::ops::on_flex(x)
            && collective::current().is_none()
            && D >= 2
            && matches!(dtype, DType::F32 | DType::F64)
            && self.weight.val().dtype() == dtype
            && self.bias.val().dtype() == dtype
            && extra.iter().all(|t| t.dtype() == dtype)
    }

    /// The training forward on the fused ops: `y = z / div + add` per channel (the approximate
    /// BN fold's pre-transform; either step optional), batch statistics of `y` in f64 (which also
    /// update the running ones), then `max?(gamma * (y - mean) / sqrt(var + eps) + beta, 0)`.
    pub(crate) fn forward_train_fused<const D: usize>(
        &mut self,
        z: Tensor<D>,
        div: Option<Tensor<1>>,
        add: Option<Tensor<1>>,
        relu: bool,
        layer: &str,
    ) -> Result<Tensor<D>> {
        let dims = z.dims();
        let c = self.num_features();
        if D < 2 || dims[1] != c {
            return Err(QatError::shape(layer, format!("input [N, {c}, ...]"), format!("{dims:?}")));
        }
        let per_channel = dims.iter().product::<usize>() / c;
        if per_channel <= 1 {
            return Err(QatError::SingleValuePerChannel { layer: layer.to_string(), shape: dims.to_vec() });
        }
        let pre = BnPreValues { div: div.as_ref().map(host_values), add: add.as_ref().map(host_values) };
        let stats = bn_batch_stats(&z, pre);
        self.update_from_batch_stats(&stats, per_channel);
        let count = per_channel as f64;
        let params = BnApplyParams {
            has_div: div.is_some(),
            has_add: add.is_some(),
            relu,
            mean: stats.iter().map(|s| s.0).collect(),
            invstd: stats.iter().map(|s| 1.0 / (s.1 / count + self.eps).sqrt()).collect(),
        };
        let unused = || self.weight.val().detach();
        let div = div.unwrap_or_else(unused);
        let add = add.unwrap_or_else(unused);
        Ok(bn_train_apply(z, div, add, self.weight.val(), self.bias.val(), params))
    }

    fn forward_eval<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let c = self.num_features();
        let shape = channel_shape::<D>(c);
        let mean: Tensor<D> = host_tensor(self.running_mean.clone(), shape, &x);
        let std: Tensor<D> = host_tensor(self.running_std(), shape, &x);
        let (gamma, beta) = (self.weight.val().reshape(shape), self.bias.val().reshape(shape));
        // A reshaped parameter is not a leaf, so ask the parameter itself.
        if !self.weight.val().is_require_grad() {
            // out = x * alpha + (beta - mean * alpha), alpha = gamma / std: PyTorch's CPU form
            // without its FMAs.
            let alpha = gamma / std;
            let shift = beta - mean * alpha.clone();
            return x * alpha + shift;
        }
        // The same output, bit for bit, with gamma's gradient routed through x - mean as
        // PyTorch forms it: sum(g * (x - mean)) / std. Through `x * alpha - mean * alpha` it
        // would be (sum(g * x) - mean * sum(g)) / std, which cancels when |mean| / std is large
        // (1e-3 relative error at 1e4). The added terms are exactly 0: `p - detach(p)`.
        let (gamma_value, beta_value) = (gamma.clone().detach(), beta.clone().detach());
        let alpha = gamma_value / std.clone();
        let shift = beta_value - mean.clone() * alpha.clone();
        let value = x.clone() * alpha + shift;
        let gamma_path = (gamma.clone() - gamma.detach()) * ((x - mean) / std);
        value + gamma_path + (beta.clone() - beta.detach())
    }

    fn forward_train<const D: usize>(&mut self, x: Tensor<D>, layer: &str) -> Result<Tensor<D>> {
        let dims = x.dims();
        let c = self.num_features();
        let per_channel = dims.iter().product::<usize>() / c;
        if per_channel <= 1 {
            return Err(QatError::SingleValuePerChannel { layer: layer.to_string(), shape: dims.to_vec() });
        }
        if collective::current().is_some() {
            return self.forward_train_synced(x, per_channel);
        }
        self.update_running_stats(&x, per_channel);

        let shape = channel_shape::<D>(c);
        let flat = x.clone().swap_dims(0, 1).reshape([c, per_channel]);
        let mean = flat.clone().mean_dim(1);
        let var = (flat - mean.clone()).powi_scalar(2).mean_dim(1);
        let inv_std = (var + self.eps).sqrt().recip().reshape(shape);
        let alpha = self.weight.val().reshape(shape) * inv_std;
        let shift = self.bias.val().reshape(shape) - mean.reshape(shape) * alpha.clone();
        Ok(x * alpha + shift)
    }

    /// SyncBN, in data-parallel training: the batch statistics of the whole batch, every
    /// replica's share of it (sums, sums of squared deviations and counts gathered from all of
    /// them, in rank order, so every replica computes the same bits). The gathered sums stay on
    /// the autodiff graph, so the gradient reaching each replica's input includes what it owes
    /// the other replicas' outputs through the shared mean and variance, as on one device.
    fn forward_train_synced<const D: usize>(&mut self, x: Tensor<D>, per_channel: usize) -> Result<Tensor<D>> {
        let c = self.num_features();
        let device = x.device();
        let sum_over_replicas = |local: Tensor<1>| -> Result<Tensor<1>> {
            let parts = collective::all_gather(local)?;
            Ok(parts.into_iter().map(|p| p.to_device(&device)).reduce(|a, b| a + b).expect("one replica at least"))
        };
        let count: usize = collective::all_gather(per_channel)?.iter().sum();
        let flat = x.clone().swap_dims(0, 1).reshape([c, per_channel]);
        let mean = sum_over_replicas(flat.clone().sum_dim(1).reshape([c]))? / count as f64;
        let deviations = sum_over_replicas((flat - mean.clone().reshape([c, 1])).powi_scalar(2).sum_dim(1).reshape([c]))?;
        let stats: Vec<(f64, f64)> =
            host_values(&mean.clone().detach()).into_iter().zip(host_values(&deviations.clone().detach())).collect();
        self.update_from_batch_stats(&stats, count);

        let shape = channel_shape::<D>(c);
        let inv_std = (deviations / count as f64 + self.eps).sqrt().recip().reshape(shape);
        let alpha = self.weight.val().reshape(shape) * inv_std;
        let shift = self.bias.val().reshape(shape) - mean.reshape(shape) * alpha.clone();
        Ok(x * alpha + shift)
    }

    /// The running-statistics update, on the host in f64 as PyTorch's CPU kernel computes it:
    /// `running = (1 - m) * running + m * batch`, with the unbiased batch variance.
    pub(crate) fn update_running_stats<const D: usize>(&mut self, x: &Tensor<D>, per_channel: usize) {
        let c = self.num_features();
        let values = host_values(&x.clone().detach().swap_dims(0, 1).reshape([c, per_channel]));
        let stats: Vec<(f64, f64)> = values
            .chunks(per_channel)
            .map(|row| {
                // Summed as the fused kernels sum, so both paths give the same statistics.
                let mean = lane_sum(row.iter().copied()) / per_channel as f64;
                (mean, lane_sum(row.iter().map(|v| (v - mean) * (v - mean))))
            })
            .collect();
        self.update_from_batch_stats(&stats, per_channel);
    }

    /// The running-statistics update from per-channel `(mean, sum of squared deviations)`.
    fn update_from_batch_stats(&mut self, stats: &[(f64, f64)], per_channel: usize) {
        self.num_batches_tracked += 1;
        let m = self.momentum.unwrap_or(1.0 / self.num_batches_tracked as f64);
        for (ch, &(mean, var_sum)) in stats.iter().enumerate() {
            let unbiased = var_sum / (per_channel - 1) as f64;
            self.running_mean[ch] = self.round(m * mean + (1.0 - m) * self.running_mean[ch]);
            self.running_var[ch] = self.round(m * unbiased + (1.0 - m) * self.running_var[ch]);
        }
    }

    pub(crate) fn write_state(&self, prefix: &str, out: &mut StateDict) {
        write_param(&self.weight, join(prefix, "weight"), out);
        write_param(&self.bias, join(prefix, "bias"), out);
        let stat = |v: &[f64]| {
            if self.f32_state {
                TensorValue::f32_vec(v.iter().map(|&x| x as f32).collect())
            } else {
                TensorValue { shape: vec![v.len()], values: Values::F64(v.to_vec()) }
            }
        };
        out.insert(join(prefix, "running_mean"), stat(&self.running_mean));
        out.insert(join(prefix, "running_var"), stat(&self.running_var));
        out.insert(join(prefix, "num_batches_tracked"), TensorValue::i64_scalar(self.num_batches_tracked));
    }

    /// Reads `weight, bias, running_mean, running_var, num_batches_tracked` under `names`
    /// (PyTorch v2 `bn.*` names, or the v1 names at the module root).
    pub(crate) fn read_state(&mut self, names: [String; 5], reader: &mut StateReader<'_>) {
        let c = self.num_features();
        let shape: &[usize] = &[c];
        let [w, b, rm, rv, nbt] = names;
        read_param(&mut self.weight, &w, reader);
        read_param(&mut self.bias, &b, reader);
        let mean = reader.float(&rm, Some(shape));
        let var = reader.float(&rv, Some(shape));
        if let (Some((_, mean, mean_f64)), Some((_, var, _))) = (mean, var) {
            if var.iter().any(|v| !(v.is_finite() && *v >= 0.0)) || mean.iter().any(|m| !m.is_finite()) {
                reader.problem(format!("{rv}/{rm}: running statistics must be finite with a non-negative variance"));
            } else {
                self.running_mean = mean;
                self.running_var = var;
                self.f32_state = !mean_f64;
            }
        }
        if let Some((_, n)) = reader.int(&nbt, Some(&[])) {
            self.num_batches_tracked = n[0];
        }
    }
}

/// The five BN keys under a prefix, in PyTorch's v2 layout.
pub(crate) fn bn_keys(prefix: &str) -> [String; 5] {
    ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"].map(|k| join(prefix, k))
}
