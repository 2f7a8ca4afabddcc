//! ssh_config
