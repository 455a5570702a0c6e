//! The input a reference model is built for: image channels and size, and the class count.

use crate::error::{QatError, Result};

/// What a model's first layer reads (`[N, channels, height, width]`) and its head writes
/// (`[N, classes]`). The models size their first convolution and their flatten width from it,
/// so the same architecture serves MNIST and CIFAR-10.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub classes: usize,
}

impl InputShape {
    /// 28x28 grayscale digits, 10 classes.
    pub const MNIST: Self = Self { channels: 1, height: 28, width: 28, classes: 10 };
    /// 32x32 RGB images, 10 classes.
    pub const CIFAR10: Self = Self { channels: 3, height: 32, width: 32, classes: 10 };

    /// Every field must be positive: a zero would build empty weights, not a model.
    pub(crate) fn validate(&self, model: &str) -> Result<()> {
        if self.channels == 0 || self.height == 0 || self.width == 0 || self.classes == 0 {
            let field = [("channels", self.channels), ("height", self.height), ("width", self.width)]
                .into_iter()
                .find_map(|(name, value)| (value == 0).then_some(name))
                .unwrap_or("classes");
            return Err(QatError::invalid(field, format!("{model}: every field of {self:?} must be positive")));
        }
        Ok(())
    }

    /// Height and width after `pools` 2x2 max pools of stride 2 (each floors the size in half),
    /// an error naming the model when either reaches zero.
    pub(crate) fn pooled(&self, pools: u32, model: &str) -> Result<(usize, usize)> {
        self.validate(model)?;
        let (h, w) = (self.height >> pools, self.width >> pools);
        if h == 0 || w == 0 {
            let min = 1usize << pools;
            return Err(QatError::invalid(
                if h == 0 { "height" } else { "width" },
                format!(
                    "{model}: a {}x{} input pools to nothing after {pools} 2x2 poolings; height and width must be at least {min}",
                    self.height, self.width
                ),
            ));
        }
        Ok((h, w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_sizes_floor_and_reject_zero() {
        assert_eq!(InputShape::MNIST.pooled(2, "m").unwrap(), (7, 7));
        assert_eq!(InputShape::CIFAR10.pooled(2, "m").unwrap(), (8, 8));
        let tiny = InputShape { height: 3, ..InputShape::MNIST };
        assert!(matches!(
            tiny.pooled(2, "lenet"),
            Err(QatError::InvalidConfig { field, reason }) if field == "height" && reason.contains("lenet") && reason.contains("at least 4")
        ));
        let empty = InputShape { classes: 0, ..InputShape::MNIST };
        assert!(matches!(empty.validate("m"), Err(QatError::InvalidConfig { field, .. }) if field == "classes"));
    }
}
