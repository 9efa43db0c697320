//! Reading Kubernetes objects the way the contract says: annotation and label keys and their
//! accessors, label syntax and selectors, the role spec. Shared by mutation and validation.

pub mod annotations;
pub mod labels;
pub mod roles;
pub mod template;

pub use annotations::keys;
