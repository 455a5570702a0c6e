//! `burn-qat bench`: one JSON line per case (see bench/README.md).

use std::io::Write;

use super::args::BenchArgs;
use super::set_threads;

pub fn bench(args: BenchArgs) -> burn_qat::Result<()> {
    set_threads(args.threads)?;
    let options = burn_qat_cli::bench::BenchOptions { iters: args.iters, warmup: args.warmup, device: args.device };
    for case in burn_qat_cli::bench::select(&args.case)? {
        let result = burn_qat_cli::bench::run_case(case, options)?;
        println!("{}", result.json());
        let _ = std::io::stdout().flush();
    }
    Ok(())
}
