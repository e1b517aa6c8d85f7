//! `cargo xtask`: builds, checks and benchmarks the iopaint images.
//!
//! `main` only parses flags and dispatches; each task lives in its own module.

// Pure logic (unit-tested without Docker).
mod buildkit;
mod dockerfile;
mod dockerignore;
mod file_touch;
mod report;
mod sizes;
mod tarscan;
mod ui;

// Effects: the docker module is the only place that builds docker commands.
mod docker;
mod flavor;
mod project;
mod pyenv;
mod testkit;

// One module per task.
mod bench;
mod build;
mod cache_test;
mod ci;
mod compose;
mod dockerignore_check;
mod lint;
mod setup;
mod size_check;
mod smoke;
mod test_task;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};



#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", about = "Build, check and benchmark the iopaint Docker images")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

/// `--json` / `--json-out FILE`, shared by every task that reports.
#[derive(Args, Clone, Debug, Default)]
pub struct OutputOpts {
    /// Print the report as JSON on stdout (human lines go to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write the JSON report to FILE.
    #[arg(long, value_name = "FILE", global = true)]
    pub json_out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Task {
    /// Make this host able to build: docker client, engine, compose, base images, CA bundle.
    Setup {
        /// CA bundle passed to builds as a BuildKit secret (default: from SSL_CERT_FILE, PIP_CERT, ...).
        #[arg(long, value_name = "FILE")]
        ca_bundle: Option<PathBuf>,
        #[command(flatten)]
        out: OutputOpts,
    },
    /// Build the images: `cargo xtask build cpu|gpu|all`.
    Build(build::BuildArgs),
    /// Measure the build context with and without .dockerignore and check what it excludes.
    DockerignoreCheck(dockerignore_check::CheckArgs),
    /// Check image sizes against budgets, with a per-layer table.
    SizeCheck(size_check::SizeArgs),
    /// Prove that a one-line app or UI change re-runs only the app layers.
    CacheTest(cache_test::CacheArgs),
    /// Run an image and check it end to end over HTTP.
    Smoke(smoke::SmokeArgs),
    /// Bring the compose stack up, check it, bring it down.
    ComposeUp(compose::ComposeArgs),
    /// hadolint over both Dockerfiles.
    Lint(lint::LintArgs),
    /// The pre-merge pipeline: setup, lint, dockerignore-check, build, size-check, cache-test, smoke, compose-up.
    Ci(ci::CiArgs),
    /// Multistage vs the single-stage baseline, side by side.
    Bench(bench::BenchArgs),
    /// Every test: xtask unit tests, app tests, browser test, real Docker checks.
    Test(test_task::TestArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup { ca_bundle, out } => setup::run(&setup::SetupOptions { ca_bundle }, out.json),
        Task::Build(args) => build::run(&args),
        Task::DockerignoreCheck(args) => dockerignore_check::run(&args),
        Task::SizeCheck(args) => size_check::run(&args),
        Task::CacheTest(args) => cache_test::run(&args),
        Task::Smoke(args) => smoke::run(&args),
        Task::ComposeUp(args) => compose::run(&args),
        Task::Lint(args) => lint::run(&args),
        Task::Ci(args) => ci::run(&args),
        Task::Bench(args) => bench::run(&args),
        Task::Test(args) => test_task::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line for the reason, then its causes, each on its own line.
            ui::error(format!("{err}"));
            for cause in err.chain().skip(1) {
                ui::error(format!("  caused by: {cause}"));
            }
            ExitCode::FAILURE
        }
    }
}

