//! The request path's errors: why a review was not answered with a decision. Each maps to an
//! outcome label (`admission::ReviewOutcome::from`).

/// Why a review was not decided.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a v1 AdmissionReview with a request and a uid: answered with HTTP 400 and this
    /// one-line reason (the API server never sends one).
    #[error("{0}")]
    BadReview(String),
    /// A review that cannot be evaluated: its object does not read, it is past a bound on work,
    /// or its time budget ran out. Answered per the policy's `onError`, with this reason.
    #[error("{0}")]
    NotEvaluated(String),
    /// The object is past one of stsguard's bounds on work ([`crate::bounds`]): denied at
    /// `/validate`, allowed unpatched with a warning at `/mutate`, whatever `onError` says.
    #[error("{0}")]
    PastBound(crate::bounds::PastBound),
    /// The mutation's result cannot be expressed as a patch that only adds to the user's values
    /// (a bug: the property tests look for it). Answered per `onError`.
    #[error("the patch would {0}")]
    Patch(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
