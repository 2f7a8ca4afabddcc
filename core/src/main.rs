fn main() -> std::process::ExitCode {
    aws_hop::run()
}
