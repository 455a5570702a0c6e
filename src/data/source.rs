//! Which dataset to train on, as a user writes it on the command line: `mnist:DIR`,
//! `cifar10:DIR`, or a bare `DIR` (MNIST, as before the prefixes existed).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::{Dataset, default_mnist_dir, load_cifar10, load_mnist};
use crate::error::{QatError, Result};

/// A dataset format and the folder it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// MNIST-format IDX files (MNIST, Fashion-MNIST), read by [`load_mnist`].
    Mnist(PathBuf),
    /// The binary version of CIFAR-10, read by [`load_cifar10`].
    Cifar10(PathBuf),
}

/// The accepted forms, for the error messages.
const FORMS: &str = "mnist:DIR, cifar10:DIR, or a bare DIR holding MNIST files";

impl DataSource {
    /// Parses `mnist:DIR`, `cifar10:DIR` or a bare `DIR` (meaning MNIST).
    ///
    /// Only the text before the first `:` is a prefix, so the folder itself may contain `:`
    /// (`cifar10:/data/a:b`). Prefixes ignore case, `-` and `_` (`CIFAR-10:` works). A string
    /// whose part before the first `:` is not a plain word (it holds `/`, `.`, ...) or that names
    /// an existing path is a bare folder, so `./runs:2/mnist` stays an MNIST folder as it always
    /// was; any other unknown word before a `:` is an error rather than a folder that will not be
    /// found, because it is almost always a misspelt prefix.
    pub fn parse(spec: &str) -> Result<Self> {
        if spec.is_empty() {
            return Err(QatError::invalid("--data", format!("empty data source; expected {FORMS}")));
        }
        let Some((prefix, dir)) = spec.split_once(':') else {
            return Ok(Self::Mnist(PathBuf::from(spec)));
        };
        let word: String = prefix.chars().filter(|c| !matches!(c, '-' | '_')).collect::<String>().to_ascii_lowercase();
        let make = match word.as_str() {
            "mnist" => Self::Mnist,
            "cifar10" => Self::Cifar10,
            _ if !is_word(prefix) || Path::new(spec).exists() => return Ok(Self::Mnist(PathBuf::from(spec))),
            _ => {
                return Err(QatError::invalid("--data", format!("unknown data source prefix {prefix:?} in {spec:?}; expected {FORMS}")));
            }
        };
        if dir.is_empty() {
            return Err(QatError::invalid("--data", format!("data source {spec:?} names no folder after the ':'; expected {FORMS}")));
        }
        Ok(make(PathBuf::from(dir)))
    }

    /// Loads the dataset; returns `(train, test)`.
    pub fn load(&self) -> Result<(Dataset, Dataset)> {
        match self {
            Self::Mnist(dir) => load_mnist(dir),
            Self::Cifar10(dir) => load_cifar10(dir),
        }
    }

    /// The data set's name for titles: the bundled subset by its name, other folders by their
    /// format and folder name.
    pub fn title(&self) -> String {
        let folder = |dir: &Path| dir.file_name().map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into_owned());
        match self {
            Self::Mnist(dir) if dir == &default_mnist_dir() => "MNIST (the bundled 10,000-digit subset)".to_string(),
            Self::Mnist(dir) => format!("MNIST-format data in {}", folder(dir)),
            Self::Cifar10(dir) => format!("CIFAR-10 in {}", folder(dir)),
        }
    }

    /// The folder the dataset is read from.
    pub fn dir(&self) -> &Path {
        match self {
            Self::Mnist(dir) | Self::Cifar10(dir) => dir,
        }
    }

    /// The prefix that names this format on the command line: `mnist` or `cifar10`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Mnist(_) => "mnist",
            Self::Cifar10(_) => "cifar10",
        }
    }
}

/// Letters, digits, `-` and `_` only: what a prefix looks like, and a path usually does not.
fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
}

/// The MNIST subset shipped with the crate ([`default_mnist_dir`]), so that a run without any
/// data argument works from a checkout.
impl Default for DataSource {
    fn default() -> Self {
        Self::Mnist(default_mnist_dir())
    }
}

/// Always with its prefix (`mnist:DIR`), so the text parses back to the same source.
impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name(), self.dir().display())
    }
}

/// The same as [`DataSource::parse`], so the type works as a command-line argument directly.
impl FromStr for DataSource {
    type Err = QatError;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
