//! The `aws-hop` binary: everything is in the library; see `aws_hop::cli`.

fn main() -> std::process::ExitCode {
    aws_hop::run()
}
