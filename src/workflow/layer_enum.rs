//! What the stages of the layer table share: the enum a stage is (one variant per layer kind,
//! dispatching through the stage's trait, [`super::float_layer::FloatOp`] or
//! [`super::qat_layer::QatOp`]), and the kinds every stage lists alike.

/// Declares the enum `$name` with one variant per kind, `kind()`, and `op()` / `op_mut()`
/// giving the layer as its kind's `$stage` trait object.
macro_rules! layer_enum {
    (
        $(#[$meta:meta])* $name:ident: $stage:ident {
            $($(#[doc = $doc:literal])* $variant:ident($ty:ty)),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Module, Debug)]
        pub enum $name {
            $($(#[doc = $doc])* $variant($ty),)*
        }

        impl $name {
            /// The kind's name in messages and reports.
            pub fn kind(&self) -> &'static str {
                self.op().kind()
            }

            /// The layer as its kind's stage of the road.
            pub(crate) fn op(&self) -> &dyn $stage {
                match self { $(Self::$variant(m) => m,)* }
            }

            pub(crate) fn op_mut(&mut self) -> &mut dyn $stage {
                match self { $(Self::$variant(m) => m,)* }
            }
        }
    };
}

pub(crate) use layer_enum;

/// Calls `$table!` with the kinds that are one and the same module at every stage (nothing to
/// fuse, observe or quantize: ReLU, ReLU6, the poolings, flatten), then with `$kinds`, the
/// stage's own. So each stage's table lists only what changes between stages.
macro_rules! with_unweighted_kinds {
    ($table:ident! { $($kinds:tt)* }) => {
        $table! {
            Relu(crate::workflow::layers::Relu),
            Relu6(crate::workflow::layers::Relu6),
            MaxPool2d(crate::workflow::pooling::MaxPool2d),
            AvgPool2d(crate::workflow::pooling::AvgPool2d),
            GlobalAvgPool2d(crate::workflow::pooling::GlobalAvgPool2d),
            Flatten(crate::workflow::layers::Flatten),
            $($kinds)*
        }
    };
}

pub(crate) use with_unweighted_kinds;
