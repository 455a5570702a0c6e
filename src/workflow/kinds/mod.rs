//! One file per layer kind: what the kind does at each stage of the whole-model road, the
//! float stage ([`super::float_layer::FloatOp`]), the QAT stage ([`super::qat_layer::QatOp`])
//! and the int8 stage ([`super::int8_layer::Int8Op`]).

/// A stage's `kind` and `forward` for a module whose own forward takes and gives tensors of rank
/// `$rank`: the float and QAT stages of every conv and linear kind.
macro_rules! tensor_op_head {
    ($ty:ty, $kind:expr, $rank:tt) => {
        fn kind(&self) -> &'static str {
            $kind
        }

        fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
            Value::from_tensor(<$ty>::forward(self, x.tensor::<$rank>(path)?)?)
        }
    };
}

/// A stage's `kind` and `forward` for a layer whose forward `$forward` takes float and
/// quantized values alike (`m` the layer, `x` the value, `p` the path): the float and QAT
/// stages of every kind without weights.
macro_rules! value_op_head {
    ($kind:expr, |$m:ident, $x:ident, $p:ident| $forward:expr) => {
        fn kind(&self) -> &'static str {
            $kind
        }

        fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
            let ($m, $x, $p) = (&*self, x, path);
            $forward
        }
    };
}

/// The QAT stage of a conv or linear module (fused or not): its float forward on tensors of
/// rank `$rank`, its deployment arithmetic `$exact` (given the module `m`, input `x`, input grid `g`
/// and path `p`), conversion into the int8 `$int8` module, its output fake quant under
/// `self$(.$field)`, its deployed weight from `$weight`, and whether its BN is frozen.
macro_rules! weighted_qat_op {
    (
        $ty:ty, $kind:expr, rank: $rank:tt => $int8:ident, inner: [$($field:ident)?],
        exact: |$m:ident, $x:ident, $g:ident, $p:ident| $exact:expr, weight: $weight:path $(, bn_frozen: |$b:ident| $frozen:expr)?
    ) => {
        impl QatOp for $ty {
            tensor_op_head!($ty, $kind, $rank);

            fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
                let ($m, $x, $g, $p) = (self, x.tensor::<$rank>(path)?, need_grid(grid, path)?, path);
                let (t, output) = $exact?;
                Ok((Value::from_tensor(t)?, Some(output)))
            }

            $crate::workflow::qat_layer::own_module_ops!();

            $(fn is_bn_frozen(&self) -> bool {
                let $b = self;
                $frozen
            })?

            fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
                Ok(Int8Layer::$int8(self.to_quantized(need_input(input, path)?, path)?))
            }

            fn take_output_fake_quant(&mut self) -> Option<FakeQuantize> {
                self$(.$field)?.activation_post_process.take()
            }

            fn deployed_weight(&self) -> Option<DeployedWeight<'_>> {
                Some($weight(&self$(.$field)?))
            }
        }
    };
}

/// The float stage of a conv or linear module (fused or not): tensors of rank `$rank` through
/// its own forward, its weight (`self$(.$w)`) and batch norm (`self.$bn`) under the keys PyTorch's
/// fused containers give them, and `prepare` building the QAT module `$prepare` from the
/// module `m` and qconfig `q`.
macro_rules! float_weighted_op {
    (
        $ty:ty, $kind:expr, rank: $rank:tt, weight: [$($w:ident)?] at $wkey:literal,
        bn: [$($bn:ident at $bkey:literal)?], absorbs_bn: $absorbs:literal, prepare: |$m:ident, $q:ident| $prepare:expr
    ) => {
        impl FloatOp for $ty {
            tensor_op_head!($ty, $kind, $rank);

            fn set_training(&mut self, _training: bool) {
                $(self.$bn.training = _training;)?
            }

            fn has_weight(&self) -> bool {
                true
            }

            fn absorbs_next_batch_norm(&self) -> bool {
                $absorbs
            }

            fn write_state(&self, prefix: &str, out: &mut StateDict) {
                self$(.$w)?.write_weights(&join(prefix, $wkey), out);
                $(self.$bn.write_state(&join(prefix, $bkey), out);)?
            }

            fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                self$(.$w)?.read_weights(&join(prefix, $wkey), reader);
                $(self.$bn.read_state(bn_keys(&join(prefix, $bkey)), reader);)?
            }
        }

        impl PrepareQat for $ty {
            fn prepare(self, $q: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
                let $m = self;
                Ok($prepare)
            }
        }
    };
}

/// Every stage of a layer without weights, which `prepare` and `convert` keep as it is (the
/// `$variant` of each stage's enum): `forward` on float and quantized values alike (`m` the
/// layer, `x` the value, `p` the path), `exact` its deployment arithmetic given the input grid
/// `g`, its int8-file entry: `save` and `load` (from the entry `e` at path `p`), none for a
/// unit struct, and its ONNX nodes: `export` given the layer, the graph `g`, the path and the
/// current tensor `c`.
macro_rules! unweighted_kind {
    (
        $ty:ty, $kind:literal, file: $file_kind:literal, $variant:ident,
        forward: |$m:ident, $x:ident, $p:ident| $forward:expr,
        exact: |$em:ident, $ex:ident, $g:ident, $ep:ident| $exact:expr,
        export: |$xm:ident, $xg:ident, $xp:ident, $xc:ident| $export:expr
    ) => {
        unweighted_kind!($ty, $kind, file: $file_kind, $variant, forward: |$m, $x, $p| $forward,
            exact: |$em, $ex, $g, $ep| $exact, save: |_m| serde_json::json!({}), load: |_e, _p| Ok(Self),
            export: |$xm, $xg, $xp, $xc| $export);
    };
    (
        $ty:ty, $kind:literal, file: $file_kind:literal, $variant:ident,
        forward: |$m:ident, $x:ident, $p:ident| $forward:expr,
        exact: |$em:ident, $ex:ident, $g:ident, $ep:ident| $exact:expr,
        save: |$sm:ident| $save:expr, load: |$e:ident, $lp:ident| $load:expr,
        export: |$xm:ident, $xg:ident, $xp:ident, $xc:ident| $export:expr
    ) => {
        impl FloatOp for $ty {
            value_op_head!($kind, |$m, $x, $p| $forward);
        }

        impl PrepareQat for $ty {
            fn prepare(self, _: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
                Ok(QatLayer::$variant(self))
            }
        }

        impl QatOp for $ty {
            value_op_head!($kind, |$m, $x, $p| $forward);

            fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
                let ($em, $ex, $g, $ep) = (self, x, grid, path);
                $exact
            }

            fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
                Ok(Int8Layer::$variant(self.clone()))
            }
        }

        impl Int8Op for $ty {
            const KIND: &'static str = $file_kind;

            fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
                let ($m, $x, $p) = (self, x, path);
                $forward
            }

            fn save(&self, _: &str, _: &mut StateDict) -> Result<serde_json::Value> {
                let $sm = self;
                Ok($save)
            }

            fn load(entry: &serde_json::Value, path: &str, _: &mut StateReader<'_>) -> Result<Self> {
                let ($e, $lp) = (entry, path);
                $load
            }

            fn export(&self, graph: &mut crate::qdq::QdqGraph, path: &str, cur: crate::qdq::Wire) -> Result<crate::qdq::Wire> {
                let ($xm, $xg, $xp, $xc) = (self, graph, path, cur);
                $export
            }
        }
    };
}

/// The int8 stage of a layer that requantizes onto its own output grid (`input` in, `output`
/// out, under `self$(.$grids)?`): its forward on the quantized input (`m` the module, `x` the
/// input, `run` the engine), its int8-file entry written by `$save` and read by `$load`, and its
/// ONNX nodes, emitted by the graph's `$export` emitter.
macro_rules! int8_requantizing_op {
    (
        $ty:ty, $kind:literal, grids: [$($grids:ident)?], forward: |$m:ident, $x:ident, $run:ident| $forward:expr,
        save: $save:path, load: $load:path, export: $export:ident
    ) => {
        impl Int8Op for $ty {
            const KIND: &'static str = $kind;

            fn forward(&self, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value> {
                let ($m, $x, $run) = (self, x.quantized(path)?, run);
                Ok(Value::Quantized($forward?))
            }

            fn output_qparams(&self) -> Option<ActivationQParams> {
                Some(self$(.$grids)?.output)
            }

            fn saturate_at_full_range(&mut self) {
                self$(.$grids)?.input = self$(.$grids)?.input.full_range();
                self$(.$grids)?.output = self$(.$grids)?.output.full_range();
            }

            fn save(&self, path: &str, out: &mut StateDict) -> Result<serde_json::Value> {
                $save(self, path, out)
            }

            fn load(entry: &serde_json::Value, path: &str, reader: &mut StateReader<'_>) -> Result<Self> {
                $load(entry, path, reader)
            }

            fn export(&self, graph: &mut crate::qdq::QdqGraph, path: &str, cur: crate::qdq::Wire) -> Result<crate::qdq::Wire> {
                graph.$export(self, path, cur)
            }
        }
    };
}

mod activation;
mod batch_norm;
mod conv;
mod flatten;
mod float;
mod linear;
mod pooling;
mod stubs;

/// The float values of a parameter, as the int8 side quantizes them.
fn f32_values<const D: usize>(t: &burn::tensor::Tensor<D>) -> Vec<f32> {
    crate::nn::tensor_util::host_values(t).into_iter().map(|v| v as f32).collect()
}
