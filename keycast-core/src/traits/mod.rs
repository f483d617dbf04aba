//! The four backend traits. All are object-safe and held as `Arc<dyn …>`.

pub mod authorizer;
pub mod key_manager;
pub mod key_store;
pub mod router;
