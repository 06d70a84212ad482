pub mod device;
pub mod forward;
pub mod import;
pub mod tokenize;
