use crate::qconfig::QConfig;

/// Which qconfig each layer gets: a default, and overrides by layer path (`"conv1"`,
/// `"block1.conv_a"`). The longest matching prefix wins, so an override on a residual block
/// applies to the layers inside it (PyTorch's qconfig propagation). `None` leaves a layer in
/// float.
#[derive(Clone, Debug)]
pub struct QConfigMap {
    default: Option<QConfig>,
    overrides: Vec<(String, Option<QConfig>)>,
}

impl QConfigMap {
    pub fn new(default: Option<QConfig>) -> Self {
        Self { default, overrides: Vec::new() }
    }

    /// Overrides the qconfig of `path` and everything under it.
    pub fn with(mut self, path: &str, qconfig: Option<QConfig>) -> Self {
        self.overrides.push((path.to_string(), qconfig));
        self
    }

    /// The overridden paths that name no layer of `model`: a misspelt name would otherwise
    /// leave its layer at the default qconfig without a word.
    pub fn unmatched_paths(&self, model: &super::FloatModel) -> Vec<String> {
        let paths = model.layer_paths();
        self.overrides.iter().map(|(p, _)| p).filter(|p| !paths.iter().any(|(path, _)| path == *p)).cloned().collect()
    }

    pub fn get(&self, path: &str) -> Option<&QConfig> {
        let matches = |prefix: &str| path == prefix || path.starts_with(&format!("{prefix}."));
        self.overrides
            .iter()
            .filter(|(p, _)| matches(p))
            .max_by_key(|(p, _)| p.len())
            .map(|(_, q)| q.as_ref())
            .unwrap_or(self.default.as_ref())
    }
}

impl From<QConfig> for QConfigMap {
    fn from(q: QConfig) -> Self {
        Self::new(Some(q))
    }
}
