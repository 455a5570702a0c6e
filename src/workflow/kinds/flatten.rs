//! Flatten: images to features, the grid unchanged.

use crate::error::Result;
use crate::nn::quantized::ActivationQParams;
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{Flatten, Value};
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp};

unweighted_kind!(Flatten, "Flatten", file: "Flatten", Flatten, forward: |m, x, p| Flatten::forward(m, x, p),
    exact: |m, x, g, p| Ok((Flatten::forward(m, x, p)?, g)), export: |_m, g, p, c| g.flatten(p, c));
