//! The masklab command line (src/cli/).
fn main() {
    masklab::cli::main();
}
