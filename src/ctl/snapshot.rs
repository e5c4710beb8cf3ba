//! `steadctl snapshot save|status|restore` (etcdctl 3.4.23's `snapshot_command.go`).

use super::args::{GlobalArgs, SnapshotArgs};
use super::{CtlError, EXIT_BAD_FEATURE};

pub fn snapshot(_g: &GlobalArgs, _a: SnapshotArgs) -> Result<(), CtlError> {
    Err(CtlError::new(EXIT_BAD_FEATURE, "steadctl does not support the \"snapshot\" command yet"))
}
