//! The README's first command, `hop-lab demo`, run as a new user would: it must end with
//! `demo OK` and leave nothing behind.

use std::time::Duration;

use aws_hop_lab::lab::output_with_timeout;

use crate::hop_lab_bin;

#[test]
fn the_readme_demo_reaches_the_databases_through_the_bastion_and_ssm() {
    let mut cmd = std::process::Command::new(hop_lab_bin());
    cmd.arg("demo")
        .env("AWS_HOP_BIN", aws_hop_lab::fixture::aws_hop_bin());
    let out = output_with_timeout(&mut cmd, Duration::from_mins(3)).expect("hop-lab demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\ndemo OK in "),
        "hop-lab demo failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "vpc-lab private mariadb",
        "vpc-lab private postgres",
        "through SSM Session Manager",
        "over EC2 Instance Connect",
    ] {
        assert!(
            stdout.contains(needle),
            "the demo did not show {needle:?}:\n{stdout}"
        );
    }
}
