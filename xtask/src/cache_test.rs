//! cache_test (placeholder until its owner lands it; keeps the crate compiling).

#[derive(clap::Args, Clone, Debug)]
pub struct CacheArgs {
    #[command(flatten)]
    pub out: crate::OutputOpts,
}

pub fn run(_args: &CacheArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}

pub const INTEGRATION: &[crate::testkit::IntegrationCheck] = &[];
