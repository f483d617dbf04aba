//! The four backend traits. All are object-safe and held as `Arc<dyn …>`.

pub(crate) mod authorizer;
pub(crate) mod key_manager;
pub(crate) mod key_store;
pub(crate) mod router;
