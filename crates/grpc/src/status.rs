//! The one place a [`perdure_runtime::Error`] becomes a gRPC [`Status`]: by its transport-neutral
//! kind, except an instance id that is taken (`ALREADY_EXISTS`, as the SDKs expect). The
//! runtime's machine-readable code travels in the `perdure-code` metadata.

use perdure_types::ErrorKind;
use tonic::{Code, Status};

/// The gRPC status of a runtime error.
pub fn from_runtime(e: &perdure_runtime::Error) -> Status {
    let code = match (e.kind(), e.code()) {
        (_, "instance_exists") => Code::AlreadyExists,
        (ErrorKind::InvalidArgument, _) => Code::InvalidArgument,
        (ErrorKind::NotFound, _) => Code::NotFound,
        (ErrorKind::FailedPrecondition, _) => Code::FailedPrecondition,
        (ErrorKind::OperationFailed, _) => Code::Aborted,
        (ErrorKind::Unavailable, _) => Code::Unavailable,
        (ErrorKind::Internal, _) => Code::Internal,
        (ErrorKind::DeadlineExceeded, _) => Code::DeadlineExceeded,
        (ErrorKind::ResourceExhausted, _) => Code::ResourceExhausted,
    };
    let mut status = Status::new(code, e.to_string());
    if let Ok(v) = e.code().parse() {
        status.metadata_mut().insert("perdure-code", v);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use perdure_runtime::Error;
    use perdure_types::orchestration::RuntimeStatus;
    use perdure_types::InstanceId;

    #[test]
    fn runtime_errors_map_by_kind_and_a_taken_id_is_already_exists() {
        let id = InstanceId::new("i").unwrap();
        let cases = [
            (Error::InstanceNotFound(id.clone()), Code::NotFound),
            (
                Error::InstanceExists {
                    instance: id.clone(),
                    status: RuntimeStatus::Running,
                },
                Code::AlreadyExists,
            ),
            (
                Error::Remote(
                    Error::InstanceExists {
                        instance: id.clone(),
                        status: RuntimeStatus::Running,
                    }
                    .to_failure(),
                ),
                Code::AlreadyExists,
            ),
            (
                Error::InstanceState {
                    instance: id,
                    status: RuntimeStatus::Running,
                    why: "x".into(),
                },
                Code::FailedPrecondition,
            ),
            (Error::BadRequest("bad".into()), Code::InvalidArgument),
            (Error::Unavailable("later".into()), Code::Unavailable),
            (
                Error::DeadlineExceeded {
                    partition: 1,
                    waited_ms: 5,
                    write: false,
                },
                Code::DeadlineExceeded,
            ),
        ];
        for (e, code) in cases {
            let s = from_runtime(&e);
            assert_eq!(s.code(), code, "{e}");
            assert_eq!(s.message(), e.to_string());
            assert_eq!(
                s.metadata().get("perdure-code").unwrap().to_str().unwrap(),
                e.code()
            );
        }
    }
}
