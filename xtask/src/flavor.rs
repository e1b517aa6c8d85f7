//! The two images we build and where their pieces live.

use std::path::PathBuf;

use clap::ValueEnum;

use crate::project;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Flavor {
    Cpu,
    Gpu,
}

/// `cpu`, `gpu` or `all` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FlavorChoice {
    Cpu,
    Gpu,
    All,
}

impl FlavorChoice {
    pub fn flavors(self) -> Vec<Flavor> {
        match self {
            FlavorChoice::Cpu => vec![Flavor::Cpu],
            FlavorChoice::Gpu => vec![Flavor::Gpu],
            FlavorChoice::All => vec![Flavor::Cpu, Flavor::Gpu],
        }
    }
}

pub const IMAGE_REPO: &str = "iopaint";

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Cpu => "cpu",
            Flavor::Gpu => "gpu",
        }
    }

    pub fn dockerfile(self) -> PathBuf {
        project::root().join(self.dockerfile_rel())
    }

    /// Relative to the repository root, as Docker and the docs name it.
    pub fn dockerfile_rel(self) -> &'static str {
        match self {
            Flavor::Cpu => "docker/CPUDockerfile.multistage",
            Flavor::Gpu => "docker/GPUDockerfile.multistage",
        }
    }

    /// `iopaint:cpu-latest`: what the checks run against by default.
    pub fn latest_tag(self) -> String {
        format!("{IMAGE_REPO}:{}-latest", self.name())
    }

    pub fn version_tag(self, version: &str) -> String {
        format!("{IMAGE_REPO}:{}-{version}", self.name())
    }

    /// Default image-size budget in bytes (decimal GB, as Docker reports sizes).
    pub fn default_budget(self) -> u64 {
        match self {
            Flavor::Cpu => 3_000_000_000,
            Flavor::Gpu => 5_000_000_000,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_flavor() {
        assert_eq!(Flavor::Cpu.latest_tag(), "iopaint:cpu-latest");
        assert_eq!(Flavor::Gpu.version_tag("1.2.3"), "iopaint:gpu-1.2.3");
        assert_eq!(FlavorChoice::All.flavors(), vec![Flavor::Cpu, Flavor::Gpu]);
    }
}
